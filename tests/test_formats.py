"""Tests for the format building blocks: dataset store, archive reading, image helpers and binvox."""
from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falcli.errors import FalError
from falcli.formats.archive import open_source
from falcli.formats.binvox import (downsample, encode_binvox, read_binvox, write_binvox, y_up_to_z_up,
                                   z_up_to_y_up)
from falcli.formats.images import center_box, decode_image, resize, square_box, to_array
from falcli.formats.store import DatasetWriter, load_names, load_split, read_meta, write_dataset

HEADER4 = b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\ndata\n"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- store -------------------------------------------------------------------------------------------------

def test_write_dataset_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (3, 8, 8), dtype=np.uint8)
    out = write_dataset(tmp_path / "ds", "paired", "test", {
        "train": {"photo": photo, "label": labels},
        "val": {"photo": photo[:1], "label": labels[:1]},
    }, {"directions": {"x": ["label", "photo"]}, "created_by": "pytest"}, names={"train": ["a", "b", "c"]})
    meta = read_meta(out)
    assert meta["format"] == "fal-dataset" and meta["version"] == 1 and meta["kind"] == "paired"
    assert meta["source"] == "test" and meta["created_by"] == "pytest" and meta["size"] == 8
    assert meta["splits"] == {"train": 3, "val": 1}
    assert meta["fields"] == {"photo": {"dtype": "uint8", "shape": [8, 8, 3]},
                              "label": {"dtype": "uint8", "shape": [8, 8]}}
    assert meta["directions"] == {"x": ["label", "photo"]}
    train = load_split(out, "train")
    assert isinstance(train["photo"], np.memmap)
    np.testing.assert_array_equal(train["photo"], photo)
    np.testing.assert_array_equal(load_split(out, "val", mmap=False)["label"], labels[:1])
    assert load_names(out, "train") == ["a", "b", "c"]
    assert load_names(out, "val") == ["000000"]
    assert np.load(out / "train" / "label.npy", mmap_mode="r").shape == (3, 8, 8)
    assert _leftovers(tmp_path) == ["ds"]


def test_writer_streams_into_memmaps_and_renames_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "ds"
    with DatasetWriter(out, "images", "test", {"size": 4}) as writer:
        images = writer.create("train", "images", (2, 4, 4, 3), np.uint8)
        assert isinstance(images, np.memmap)
        images[0], images[1] = 10, 20
        writer.set_names("train", ["x", "y"])
        assert not out.exists()
    assert load_split(out, "train")["images"][:, 0, 0, 0].tolist() == [10, 20]
    assert _leftovers(out.parent) == ["ds"]


def test_writer_cleans_up_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "ds", "images", "test", {}) as writer:
            writer.create("train", "images", (2, 4, 4, 3), np.uint8)
            raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []


def test_writer_refuses_existing_output(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    with pytest.raises(FalError, match="already exists.*--out"):
        write_dataset(tmp_path / "ds", "images", "t", {"train": {"images": np.zeros((1, 2, 2, 3), np.uint8)}}, {})
    assert (tmp_path / "ds" / "keep.txt").read_text() == "mine"
    assert _leftovers(tmp_path) == ["ds"]


def test_writer_rejects_inconsistent_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_dataset(tmp_path / "ds", "paired", "t", {"train": {"a": np.zeros((2, 2)), "b": np.zeros((3, 2))}}, {})
    images = {"train": {"images": np.zeros((1, 2, 2, 3), np.uint8)}}
    with pytest.raises(ValueError, match="kind"):
        write_dataset(tmp_path / "ds", "images", "t", images, {"kind": "paired"})
    assert _leftovers(tmp_path) == []
    assert read_meta(write_dataset(tmp_path / "ok", "images", "t", images, {"kind": "images"}))["kind"] == "images"


@pytest.mark.parametrize("content, match", [
    (None, "not a prepared dataset"),
    ("{not json", "not a prepared dataset"),
    (json.dumps({"format": "other", "version": 1}), "not a prepared dataset"),
    (json.dumps({"format": "fal-dataset", "version": 2, "kind": "images", "splits": {}, "fields": {}}), "version 2"),
])
def test_read_meta_rejects_non_datasets(tmp_path: Path, content: str | None, match: str) -> None:
    if content is not None:
        (tmp_path / "meta.json").write_text(content)
    with pytest.raises(FalError, match=match) as error:
        read_meta(tmp_path)
    assert "fal prepare" in str(error.value)


def test_load_split_names_the_available_splits(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "ds", "images", "t", {"train": {"images": np.zeros((1, 2, 2, 3), np.uint8)}}, {})
    with pytest.raises(FalError, match="'test'.*available: train"):
        load_split(out, "test")
    with pytest.raises(FalError, match="'val'"):
        load_names(out, "val")
    (out / "train" / "images.npy").unlink()
    with pytest.raises(FalError, match="images.npy"):
        load_split(out, "train")


# --- archives ----------------------------------------------------------------------------------------------

def _tar_bytes(members: dict[str, bytes], path: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_folder_zip_and_tar_read_the_same(tmp_path: Path) -> None:
    files = {"top/a.txt": b"alpha", "top/sub/b.bin": b"\x00\x01"}
    folder = tmp_path / "folder"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("__MACOSX/top/._a.txt", b"junk")
    _tar_bytes(files, tmp_path / "x.tar.gz")
    for path in (folder, tmp_path / "x.zip", tmp_path / "x.tar.gz"):
        with open_source(path) as source:
            assert source.names() == sorted(files)
            assert all(source.read(n) == d for n, d in files.items())
            assert source.has("top/a.txt") and not source.has("top/zzz")
            assert dict(source.iter_read(["top/sub/b.bin", "top/a.txt"])) == files
            with pytest.raises(FalError, match="top/missing.txt"):
                source.read("top/missing.txt")


def test_folder_prefix_mimics_the_archive_top_folder(tmp_path: Path) -> None:
    (tmp_path / "gtFine").mkdir()
    (tmp_path / "gtFine" / "x.png").write_bytes(b"1")
    with open_source(tmp_path / "gtFine", prefix="gtFine") as source:
        assert source.names() == ["gtFine/x.png"] and source.read("gtFine/x.png") == b"1"
        assert source.where("gtFine/x.png") == str(tmp_path / "gtFine" / "x.png")


@pytest.mark.parametrize("member", ["../evil", "a/../../evil", "/etc/evil"])
def test_tar_slip_is_refused(tmp_path: Path, member: str) -> None:
    archive = _tar_bytes({"ok.txt": b"x", member: b"pwned"}, tmp_path / "bad.tar.gz")
    with pytest.raises(FalError, match="evil"):
        open_source(archive)
    assert not (tmp_path.parent / "evil").exists()


def test_tar_links_are_refused(tmp_path: Path) -> None:
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        path = tmp_path / f"link{kind!r}.tar"
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("data/link")
            info.type, info.linkname = kind, "/etc/passwd"
            tar.addfile(info)
        with pytest.raises(FalError, match="data/link.*link"):
            open_source(path)


def test_zip_slip_and_zip_symlinks_are_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "slip.zip", "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(FalError, match=r"\.\./evil\.txt"):
        open_source(tmp_path / "slip.zip")
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        info = zipfile.ZipInfo("data/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(FalError, match="data/link.*symbolic link"):
        open_source(tmp_path / "link.zip")


def test_unreadable_archives(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FalError, match="junk.zip"):
        open_source(tmp_path / "junk.zip")
    with pytest.raises(FalError, match="no such file"):
        open_source(tmp_path / "absent.zip")


# --- images ------------------------------------------------------------------------------------------------

def test_decode_image_names_corrupt_files(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
    assert to_array(decode_image(buffer.getvalue(), "ok.png")).shape == (8, 8, 3)
    with pytest.raises(FalError, match="broken.png: corrupt"):
        decode_image(buffer.getvalue()[:30], "broken.png")
    with pytest.raises(FalError, match=r"noise.jpg: corrupt or unreadable image \(not an image format") as error:
        decode_image(b"\x00" * 100, "noise.jpg")
    assert "BytesIO" not in str(error.value)
    with pytest.raises(FalError, match="missing.png"):
        decode_image(tmp_path / "missing.png")


def test_sixteen_bit_png_keeps_its_grey_levels() -> None:
    levels = np.array([[0, 257 * 100], [257 * 200, 65535]], np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, "PNG")
    rgb = to_array(decode_image(buffer.getvalue(), "deep.png"))
    assert rgb.shape == (2, 2, 3) and rgb[..., 0].tolist() == [[0, 100], [200, 255]]


def test_crop_boxes_and_nearest_resize() -> None:
    assert center_box(178, 218, 108, 108) == (35, 55, 143, 163)
    assert square_box(10, 6) == (2, 0, 8, 6)
    with pytest.raises(FalError, match="smaller"):
        center_box(50, 50, 108, 108, "tiny.jpg")
    labels = Image.fromarray(np.repeat(np.array([[7, 26]], np.uint8), 8, axis=1).repeat(4, axis=0))
    assert set(np.unique(to_array(resize(labels, 5, "nearest")))) == {7, 26}


# --- binvox ------------------------------------------------------------------------------------------------

def test_binvox_hand_written_voxel_order(tmp_path: Path) -> None:
    grid, meta = read_binvox(HEADER4 + bytes([0, 60, 1, 4]), "hand.binvox")
    assert grid.shape == (4, 4, 4) and grid.dtype == bool and meta["dim"] == 4
    # the last 4 voxels in file order are index 60..63 = x*16 + z*4 + y with x=3, z=3, y=0..3
    assert sorted(map(tuple, np.argwhere(grid).tolist())) == [(3, y, 3) for y in range(4)]
    # one voxel at file index 1 is (x=0, z=0, y=1)
    grid, _ = read_binvox(HEADER4 + bytes([0, 1, 1, 1, 0, 62]))
    assert np.argwhere(grid).tolist() == [[0, 1, 0]]
    path = tmp_path / "hand.binvox"
    path.write_bytes(HEADER4 + bytes([0, 60, 1, 4]))
    assert read_binvox(path)[0].sum() == 4


def test_binvox_round_trip_and_long_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grid = rng.random((8, 8, 8)) < 0.3
    write_binvox(tmp_path / "r.binvox", grid, translate=(-0.5, 0.25, 1.0), scale=0.75)
    back, meta = read_binvox(tmp_path / "r.binvox")
    np.testing.assert_array_equal(back, grid)
    assert meta["translate"] == (-0.5, 0.25, 1.0) and meta["scale"] == 0.75
    full = encode_binvox(np.ones((8, 8, 8), bool))
    assert full.endswith(b"data\n" + bytes([1, 255, 1, 255, 1, 2]))
    assert read_binvox(full)[0].all()
    assert encode_binvox(np.zeros((4, 4, 4))) == HEADER4.replace(b"translate 0 0 0", b"translate 0.0 0.0 0.0") \
        .replace(b"scale 1\n", b"scale 1.0\n") + bytes([0, 64])


@pytest.mark.parametrize("data, match", [
    (b"hello\n", "not a binvox file"),
    (b"", "header ends early"),
    (b"#binvox 2\ndim 4 4 4\ndata\n" + bytes([0, 64]), "version '2'"),
    (b"#binvox 1\ndim 4 4 2\ndata\n" + bytes([0, 32]), "not a positive cube"),
    (b"#binvox 1\ntranslate 0 0 0\ndata\n" + bytes([0, 64]), "invalid binvox header"),
    (b"#binvox 1\ndim 4 4 4\ntranslate 0 0 0\nscale 1\n", "header ends early"),
    (HEADER4 + bytes([0, 60, 1, 0, 1, 4]), "count 0"),
    (HEADER4 + bytes([0, 60]), "truncated"),
    (HEADER4 + bytes([0, 60, 1, 5]), "extra data"),
    (HEADER4 + bytes([0, 60, 1, 4, 1]), "odd number"),
])
def test_binvox_errors(data: bytes, match: str) -> None:
    with pytest.raises(FalError, match=match) as error:
        read_binvox(data, "model.binvox")
    assert str(error.value).startswith("model.binvox: ")


def test_downsample_is_max_pooling() -> None:
    grid = np.zeros((8, 8, 8), bool)
    grid[0, 0, 0] = grid[7, 6, 5] = True
    small = downsample(grid, 4)
    assert small.shape == (4, 4, 4) and sorted(map(tuple, np.argwhere(small).tolist())) == [(0, 0, 0), (3, 3, 2)]
    assert downsample(grid, 8) is not None and downsample(grid, 1).all()
    with pytest.raises(FalError, match="power of two"):
        downsample(np.zeros((6, 6, 6), bool), 2, "six.binvox")
    with pytest.raises(FalError, match="power of two"):
        downsample(grid, 3)
    with pytest.raises(FalError, match="smaller"):
        downsample(grid, 16)


def test_sigterm_during_a_prepare_removes_its_temporary_folder(tmp_path):
    # What `timeout`, Slurm or torchrun send: `fal` unwinds as on Ctrl-C, so no hidden partial folder stays.
    script = f"""
import os, signal, time
from falcli.cli import main
from falcli.formats.store import DatasetWriter
main()  # the CLI's setup, as before any command
with DatasetWriter({str(tmp_path / 'out')!r}, "paired", "test") as writer:
    writer.create("train", "photo", (4, 8, 8, 3), "uint8")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_finished_dataset_is_as_readable_as_a_new_folder(tmp_path):
    out = write_dataset(tmp_path / "out", "paired", "test", {"train": {"a": np.zeros((1, 2))}}, {})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask


def test_binvox_frames_turn_y_up_into_z_up_and_back() -> None:
    mast = np.zeros((4, 4, 4), bool)
    mast[1, :, 2] = True          # standing along y, as ShapeNet's binvox files stand
    mast[1, 3, 3] = True          # a flag at the top, pointing to +z
    standing = y_up_to_z_up(mast)
    assert standing[1, :, :].any(axis=0).all() and standing[:, :, 3].sum() == 2  # along z now, flag on top
    assert np.array_equal(z_up_to_y_up(standing), mast)
    assert np.array_equal(y_up_to_z_up(z_up_to_y_up(standing)), standing)
