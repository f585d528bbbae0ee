"""Image and voxel preparers (CelebA, image folders, ShapeNet) and the `prepare()` entry point."""
from __future__ import annotations

import io
import zipfile
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from PIL import Image

from falcli.errors import FalError
from falcli.formats.binvox import downsample, encode_binvox, y_up_to_z_up
from falcli.formats.celeba import prepare_celeba, prepare_image_folder
from falcli.formats.shapenet import prepare_shapenet
from falcli.formats.store import load_names, load_split, read_meta
from falcli.commands.prepare import PREPARERS, prepare


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _face(value: int, width: int = 178, height: int = 218) -> np.ndarray:
    """Grey `value` inside the centred 108x108 crop box, white outside."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, top = (width - 108) // 2, (height - 108) // 2
    image[top:top + 108, left:left + 108] = value
    return image


def _celeba_zip(folder: Path, partition: str | None = "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n",
                faces: dict[str, bytes] | None = None) -> Path:
    folder.mkdir()
    faces = faces or {f"00000{i}.jpg": _jpeg(_face(40 * i)) for i in (1, 2, 3)}
    with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
        for name, data in faces.items():
            zf.writestr(f"img_align_celeba/{name}", data)
    if partition is not None:
        (folder / "list_eval_partition.txt").write_text(partition)
    return folder / "img_align_celeba.zip"


def test_celeba_zip_with_partition(tmp_path: Path) -> None:
    out = prepare_celeba(_celeba_zip(tmp_path / "raw"), tmp_path / "out", size=16)
    meta = read_meta(out)
    assert meta["kind"] == "images" and meta["source"] == "celeba" and meta["size"] == 16
    assert meta["splits"] == {"train": 1, "val": 1, "test": 1}
    assert meta["crop"].startswith("center 108x108 at (35,55) of 178x218") and meta["crop_box"] == [35, 55, 143, 163]
    assert meta["resize_filter"] == "bicubic"
    for i, split in enumerate(("train", "val", "test"), 1):
        images = load_split(out, split)["images"]
        assert images.shape == (1, 16, 16, 3)
        assert abs(images.astype(int) - 40 * i).max() <= 3  # only the crop box survives, no white border
        assert load_names(out, split) == [f"00000{i}"]


def test_celeba_folder_without_partition(tmp_path: Path) -> None:
    folder = tmp_path / "raw" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in (2, 1):
        (folder / f"00000{i}.jpg").write_bytes(_jpeg(_face(50)))
    out = prepare_celeba(tmp_path / "raw", tmp_path / "out", size=8)
    assert read_meta(out)["splits"] == {"train": 2} and load_names(out, "train") == ["000001", "000002"]


@pytest.mark.parametrize("layout", ["drive", "kaggle"])
def test_celeba_download_layouts_find_their_partition_file(tmp_path: Path, layout: str) -> None:
    partition = "000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n"
    if layout == "drive":  # CelebA/Img/img_align_celeba.zip and CelebA/Eval/list_eval_partition.txt
        (tmp_path / "CelebA").mkdir()
        zipped = _celeba_zip(tmp_path / "CelebA" / "Img", partition=None)
        (tmp_path / "CelebA" / "Eval").mkdir()
        (tmp_path / "CelebA" / "Eval" / "list_eval_partition.txt").write_text(partition)
        given = [zipped, tmp_path / "CelebA"]
    else:  # archive/img_align_celeba/img_align_celeba/*.jpg and archive/list_eval_partition.csv
        images = tmp_path / "archive" / "img_align_celeba" / "img_align_celeba"
        images.mkdir(parents=True)
        for i in (1, 2, 3):
            (images / f"00000{i}.jpg").write_bytes(_jpeg(_face(40 * i)))
        (tmp_path / "archive" / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + partition.replace(" ", ","))
        given = [tmp_path / "archive", images.parent]
    for n, raw in enumerate(given):
        out = prepare_celeba(raw, tmp_path / f"out{n}", size=8)
        assert read_meta(out)["splits"] == {"train": 1, "val": 1, "test": 1}, raw


def test_celeba_without_partition_says_so(tmp_path: Path) -> None:
    from falcli.cli import app

    _celeba_zip(tmp_path / "raw", partition=None)
    result = CliRunner().invoke(app, ["prepare", "celeba", str(tmp_path / "raw"), "--out", str(tmp_path / "out"),
                                      "--size", "8"])
    assert result.exit_code == 0, result.output
    assert "every image went to train" in " ".join(result.output.split())
    assert read_meta(tmp_path / "out")["splits"] == {"train": 3}


def test_celeba_errors(tmp_path: Path) -> None:
    raw = _celeba_zip(tmp_path / "a", partition="000001.jpg 0\n000002.jpg 0\n")
    with pytest.raises(FalError, match="000003.jpg: not listed in .*list_eval_partition.txt"):
        prepare_celeba(raw, tmp_path / "out", size=8)
    raw = _celeba_zip(tmp_path / "b", partition="000001.jpg 7\n")
    with pytest.raises(FalError, match="list_eval_partition.txt:1: expected"):
        prepare_celeba(raw, tmp_path / "out", size=8)
    raw = _celeba_zip(tmp_path / "c", None, {"000001.jpg": _jpeg(_face(1)), "000002.jpg": b"\xff\xd8 broken"})
    with pytest.raises(FalError, match="img_align_celeba.zip:img_align_celeba/000002.jpg: corrupt"):
        prepare_celeba(raw, tmp_path / "out", size=8)
    raw = _celeba_zip(tmp_path / "d", None, {"000001.jpg": _jpeg(_face(1)), "000002.jpg": _jpeg(_face(1, 180))})
    with pytest.raises(FalError, match="000002.jpg: 180x218 but the other images are 178x218"):
        prepare_celeba(raw, tmp_path / "out", size=8)
    raw = _celeba_zip(tmp_path / "e", None, {"000001.jpg": _jpeg(np.zeros((90, 80, 3), np.uint8))})
    with pytest.raises(FalError, match="000001.jpg: 80x90 is smaller than the 108x108 crop"):
        prepare_celeba(raw, tmp_path / "out", size=8)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_image_folder(tmp_path: Path) -> None:
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    Image.new("RGB", (30, 20), (200, 10, 10)).save(tmp_path / "pics" / "wide.png")
    Image.new("RGB", (20, 40), (10, 200, 10)).save(tmp_path / "pics" / "sub" / "tall.jpg")
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    out = prepare_image_folder(tmp_path / "pics", tmp_path / "out", size=8)
    assert read_meta(out)["splits"] == {"train": 2}
    assert load_names(out, "train") == ["sub/tall", "wide"]
    images = load_split(out, "train")["images"]
    assert images.shape == (2, 8, 8, 3) and images[0, ..., 1].min() > 190 and images[1, ..., 0].min() > 190
    (tmp_path / "empty").mkdir()
    with pytest.raises(FalError, match="no images"):
        prepare_image_folder(tmp_path / "empty", tmp_path / "out2", size=8)
    Image.new("RGB", (20, 20)).save(tmp_path / "pics" / "wide.jpg")  # a second "wide": names keep suffixes
    out = prepare_image_folder(tmp_path / "pics", tmp_path / "out3", size=8)
    assert load_names(out, "train") == ["sub/tall.jpg", "wide.jpg", "wide.png"]


# --- ShapeNet ----------------------------------------------------------------------------------------------

def _model(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((8, 8, 8)) < 0.05


def _shapenet(raw: Path) -> dict[str, np.ndarray]:
    """Airplanes in the ShapeNetVox32 layout, cars in the ShapeNetCore v2 layout; returns name -> grid."""
    grids = {}
    for i, (synset, model, member) in enumerate([
            ("02691156", "a1", "model.binvox"), ("02691156", "a2", "model.binvox"),
            ("02691156", "a3", "model.binvox"), ("02958343", "c1", "models/model_normalized.solid.binvox"),
            ("02958343", "c2", "models/model_normalized.solid.binvox")]):
        path = raw / synset / model / member
        path.parent.mkdir(parents=True)
        grids[f"{synset}/{model}"] = _model(i)
        path.write_bytes(encode_binvox(grids[f"{synset}/{model}"]))
    (raw / "02691156" / "a1" / "model.obj").write_text("v 0 0 0\n")
    return grids


def test_shapenet_both_layouts(tmp_path: Path) -> None:
    grids = _shapenet(tmp_path / "raw")
    out = prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=4, classes=["airplane", "car"])
    meta = read_meta(out)
    assert meta["kind"] == "voxels" and meta["classes"] == ["airplane", "car"] and meta["downsample"] == "max-pool"
    assert meta["splits"] == {"train": 3, "val": 2}
    assert meta["fields"] == {"voxels": {"dtype": "uint8", "shape": [4, 4, 4]},
                              "labels": {"dtype": "int64", "shape": []}}
    seen = []
    for split in ("train", "val"):
        data, names = load_split(out, split), load_names(out, split)
        assert sorted(data["labels"].tolist()) == data["labels"].tolist()
        for name, voxels, label in zip(names, data["voxels"], data["labels"]):
            np.testing.assert_array_equal(voxels, y_up_to_z_up(downsample(grids[name], 4)).astype(np.uint8))
            assert label == (0 if name.startswith("02691156") else 1)
        seen += names
    assert sorted(seen) == sorted(grids)
    again = prepare_shapenet(tmp_path / "raw", tmp_path / "again", size=4, classes=["airplane", "car"])
    assert load_names(again, "val") == load_names(out, "val")


def test_shapenet_default_classes_and_errors(tmp_path: Path) -> None:
    _shapenet(tmp_path / "raw")
    assert read_meta(prepare_shapenet(tmp_path / "raw", tmp_path / "all", size=8))["classes"] == ["airplane", "car"]
    with pytest.raises(FalError, match="unknown ShapeNet class 'plane'; valid classes: airplane, car, vessel"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=4, classes=["plane"])
    with pytest.raises(FalError, match=r"raw/04530566: no .* for class vessel"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=4, classes=["vessel"])
    with pytest.raises(FalError, match="power of two"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=6, classes=["car"])
    with pytest.raises(FalError, match="smaller than the requested resolution 16"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=16, classes=["car"])
    (tmp_path / "raw" / "02958343" / "c2" / "models" / "model_normalized.solid.binvox").write_bytes(
        b"#binvox 1\ndim 8 8 8\ntranslate 0 0 0\nscale 1\ndata\n" + bytes([0, 255]))
    with pytest.raises(FalError, match="c2/models/model_normalized.solid.binvox: binvox data truncated"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=4, classes=["car"])
    shutil.rmtree(tmp_path / "raw" / "02958343" / "c2")
    with pytest.raises(FalError, match="only one car model; a class needs at least two"):
        prepare_shapenet(tmp_path / "raw", tmp_path / "out", size=4, classes=["car"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all", "raw"]


# --- prepare() ---------------------------------------------------------------------------------------------

def test_prepare_entry_point(tmp_path: Path) -> None:
    assert set(PREPARERS) >= {"cityscapes", "nyu", "celeba", "images", "pix2pix", "shapenet"}
    raw = _celeba_zip(tmp_path / "raw")
    calls = []
    out = prepare("celeba", raw, tmp_path / "out", size=8, progress=lambda d, n, t: calls.append((d, n, t)))
    assert out == tmp_path / "out" and read_meta(out)["created_by"].startswith("fal prepare celeba --size 8")
    assert calls[0] == ("celeba", 0, 3) and calls[-1] == ("celeba", 3, 3)


def test_prepare_validation(tmp_path: Path) -> None:
    with pytest.raises(FalError, match="unknown dataset 'mnist'; choose one of: cityscapes, nyu, celeba"):
        prepare("mnist", tmp_path, tmp_path / "out")
    with pytest.raises(FalError, match="nope: no such file or folder"):
        prepare("celeba", tmp_path / "nope", tmp_path / "out")
    with pytest.raises(FalError, match="needs --raw"):
        prepare("shapenet", None, tmp_path / "out")
    with pytest.raises(FalError, match="--classes does not apply to celeba"):
        prepare("celeba", tmp_path, tmp_path / "out", classes=["car"])
    with pytest.raises(FalError, match="--size 0"):
        prepare("celeba", tmp_path, tmp_path / "out", size=0)
    assert list(tmp_path.iterdir()) == []


def test_prepare_never_overwrites_and_cleans_up(tmp_path: Path) -> None:
    raw = _celeba_zip(tmp_path / "raw")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.npy").write_bytes(b"keep")
    with pytest.raises(FalError, match="out: already exists; pass another --out or delete it"):
        prepare("celeba", raw, tmp_path / "out", size=8)
    assert (tmp_path / "out" / "precious.npy").read_bytes() == b"keep"
    with zipfile.ZipFile(raw, "a") as zf:
        zf.writestr("img_align_celeba/000004.jpg", b"not a jpeg")
    with (tmp_path / "raw" / "list_eval_partition.txt").open("a") as partition:
        partition.write("000004.jpg 0\n")
    with pytest.raises(FalError, match="000004.jpg: corrupt"):  # fails halfway through writing
        prepare("celeba", raw, tmp_path / "new", size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
