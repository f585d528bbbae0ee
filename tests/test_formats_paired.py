"""Paired-dataset preparers on tiny fixtures in the real raw layouts: Cityscapes, pix2pix folders, NYU-Depth v2."""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from falcli.errors import FalError
from falcli.formats.cityscapes import TRAINID_COLORS, label_ids_to_trainids, prepare_cityscapes
from falcli.formats.nyu import prepare_nyu
from falcli.formats.pix2pix import prepare_pix2pix
from falcli.formats.store import load_names, load_split, read_meta

ID_COLORS = {0: (0, 0, 0), 7: (128, 64, 128), 8: (244, 35, 232), 26: (0, 0, 142)}
FRAMES = {"train": ("aachen", "aachen_000000_000019"), "val": ("frankfurt", "frankfurt_000000_000294")}


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _label_ids(seed: int) -> np.ndarray:
    """32x64 label ids from {7, 8, 26, 0} in 8x8 blocks."""
    blocks = np.random.default_rng(seed).choice([7, 8, 26, 0], size=(4, 8)).astype(np.uint8)
    return blocks.repeat(8, axis=0).repeat(8, axis=1)


def _cityscapes_members(bad_id: bool = False) -> tuple[dict[str, bytes], dict[str, bytes]]:
    left, gt = {"leftImg8bit/license.txt": b"x"}, {}
    for i, (split, (city, ident)) in enumerate(FRAMES.items()):
        photo = np.random.default_rng(i).integers(0, 255, (32, 64, 3), dtype=np.uint8)
        ids = _label_ids(i)
        if bad_id and split == "val":
            ids[0, 0] = 34
        color = np.zeros((32, 64, 4), np.uint8)
        color[..., 3] = 255  # the real colour PNGs are RGBA
        for label_id, rgb in ID_COLORS.items():
            color[ids == label_id, :3] = rgb
        left[f"leftImg8bit/{split}/{city}/{ident}_leftImg8bit.png"] = _png(photo)
        gt[f"gtFine/{split}/{city}/{ident}_gtFine_color.png"] = _png(color)
        gt[f"gtFine/{split}/{city}/{ident}_gtFine_labelIds.png"] = _png(ids)
        gt[f"gtFine/{split}/{city}/{ident}_gtFine_instanceIds.png"] = _png(ids)
    return left, gt


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _write_tree(root: Path, members: dict[str, bytes]) -> None:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _cityscapes_zips(raw: Path, bad_id: bool = False) -> Path:
    raw.mkdir()
    left, gt = _cityscapes_members(bad_id)
    _write_zip(raw / "leftImg8bit_trainvaltest.zip", left)
    _write_zip(raw / "gtFine_trainvaltest.zip", gt)
    return raw


def test_cityscapes_official_zips(tmp_path: Path) -> None:
    out = prepare_cityscapes(_cityscapes_zips(tmp_path / "raw"), tmp_path / "out", size=16)
    meta = read_meta(out)
    assert meta["kind"] == "paired" and meta["source"] == "cityscapes" and meta["size"] == 16
    assert meta["splits"] == {"train": 1, "val": 1}
    assert meta["directions"] == {"labels_to_photo": ["label_color", "photo"],
                                  "photo_to_labels": ["photo", "label_color"]}
    assert meta["default_direction"] == "labels_to_photo"
    assert meta["eval_fields"] == {"segmentation": "label_trainid"}
    assert meta["fields"]["label_trainid"] == {"dtype": "uint8", "shape": [16, 16]}
    for i, split in enumerate(("train", "val")):
        data = load_split(out, split)
        assert data["photo"].shape == (1, 16, 16, 3) and data["label_color"].shape == (1, 16, 16, 3)
        trainid, color = data["label_trainid"][0], data["label_color"][0]
        expected = np.asarray(Image.fromarray(_label_ids(i)).resize((16, 16), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(trainid, label_ids_to_trainids(expected, "x"))
        assert set(np.unique(trainid)) <= {0, 1, 13, 255}
        for t in (0, 1, 13):  # colour and train-id maps must agree pixel for pixel (both NEAREST)
            assert (color[trainid == t] == TRAINID_COLORS[t]).all()
        assert (color[trainid == 255] == 0).all()
        assert load_names(out, split) == [FRAMES[split][1]]


def test_cityscapes_unpacked_folders_match_zips(tmp_path: Path) -> None:
    left, gt = _cityscapes_members()
    _write_tree(tmp_path / "raw", {**left, **gt})
    folders = load_split(prepare_cityscapes(tmp_path / "raw", tmp_path / "a", size=16), "val")
    zips = load_split(prepare_cityscapes(_cityscapes_zips(tmp_path / "zraw"), tmp_path / "b", size=16), "val")
    for field in ("photo", "label_color", "label_trainid"):
        np.testing.assert_array_equal(folders[field], zips[field])


def test_cityscapes_photo_without_labels(tmp_path: Path) -> None:
    left, gt = _cityscapes_members()
    del gt["gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"]
    _write_tree(tmp_path / "raw", {**left, **gt})
    with pytest.raises(FalError, match="frankfurt_000000_000294_leftImg8bit.png: photo without its label"):
        prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_cityscapes_unknown_label_id_leaves_nothing(tmp_path: Path) -> None:
    raw = _cityscapes_zips(tmp_path / "raw", bad_id=True)
    with pytest.raises(FalError, match="frankfurt_000000_000294_gtFine_labelIds.png: unknown label id 34"):
        prepare_cityscapes(raw, tmp_path / "out", size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_cityscapes_mismatched_sizes_and_corrupt_files(tmp_path: Path) -> None:
    left, gt = _cityscapes_members()
    color = "gtFine/train/aachen/aachen_000000_000019_gtFine_color.png"
    _write_tree(tmp_path / "raw", {**left, **gt, color: _png(np.zeros((16, 32, 3), np.uint8))})
    with pytest.raises(FalError, match="aachen_000000_000019_gtFine_color.png: 32x16 but its photo"):
        prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)
    _write_tree(tmp_path / "raw", {color: b"\x89PNG\r\n\x1a\n garbage"})
    with pytest.raises(FalError, match="aachen_000000_000019_gtFine_color.png: corrupt"):
        prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)
    assert not (tmp_path / "out").exists()


def test_cityscapes_half_a_download(tmp_path: Path) -> None:
    left, _ = _cityscapes_members()
    (tmp_path / "raw").mkdir()
    _write_zip(tmp_path / "raw" / "leftImg8bit_trainvaltest.zip", left)
    with pytest.raises(FalError, match="no gtFine_trainvaltest.zip"):
        prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FalError, match="no Cityscapes found"):
        prepare_cityscapes(tmp_path / "empty", tmp_path / "out", size=16)


def _pix2pix_cityscapes(root: Path, width: int = 64) -> None:
    """cityscapes/{train,val}/<n>.jpg: photo | colour label (road top half, car bottom left, sky bottom right)."""
    h = width // 2
    label = np.zeros((h, h, 3), np.uint8)
    label[: h // 2] = TRAINID_COLORS[0]
    label[h // 2:, : h // 2] = TRAINID_COLORS[13]
    label[h // 2:, h // 2:] = TRAINID_COLORS[10]
    photo = np.full((h, h, 3), 90, np.uint8)
    for split, count in (("train", 3), ("val", 1)):
        for n in range(1, count + 1):
            _write_tree(root, {f"cityscapes/{split}/{n}.jpg": _png(np.concatenate([photo, label], 1), "JPEG")})


def test_cityscapes_pix2pix_prebuilt(tmp_path: Path) -> None:
    _pix2pix_cityscapes(tmp_path / "raw")
    out = prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)
    meta = read_meta(out)
    assert meta["layout"] == "pix2pix" and meta["approximate_labels"] is True and "approximate" in meta["note"]
    assert meta["splits"] == {"train": 3, "val": 1}
    assert load_names(out, "train") == ["1", "2", "3"]
    trainid = load_split(out, "train")["label_trainid"][0]
    assert (trainid[1:7, 1:15] == 0).all() and (trainid[9:15, 1:7] == 13).all() and (trainid[9:15, 9:15] == 10).all()
    assert abs(int(load_split(out, "val")["photo"][0].mean()) - 90) <= 2


def test_cityscapes_pix2pix_wrong_aspect(tmp_path: Path) -> None:
    _write_tree(tmp_path / "raw", {"cityscapes/train/1.jpg": _png(np.zeros((32, 48, 3), np.uint8), "JPEG"),
                                   "cityscapes/val/1.jpg": _png(np.zeros((32, 64, 3), np.uint8), "JPEG")})
    with pytest.raises(FalError, match="1.jpg: 48x32"):
        prepare_cityscapes(tmp_path / "raw", tmp_path / "out", size=16)


# --- generic pix2pix ---------------------------------------------------------------------------------------

def _halves(width: int = 32, height: int = 16) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    image[:, width // 2:] = (0, 0, 255)
    return image


def test_pix2pix_aligned_folder(tmp_path: Path) -> None:
    _write_tree(tmp_path / "facades", {f"{s}/{n}.png": _png(_halves()) for s, n in
                                       (("train", 1), ("train", 10), ("train", 2), ("val", 1))})
    out = prepare_pix2pix(tmp_path / "facades", tmp_path / "out", size=8)
    meta = read_meta(out)
    assert meta["directions"] == {"a_to_b": ["a", "b"], "b_to_a": ["b", "a"]}
    assert meta["splits"] == {"train": 3, "val": 1}
    train = load_split(out, "train")
    assert train["a"].shape == (3, 8, 8, 3)
    assert (train["a"][..., 0] > 250).all() and (train["b"][..., 2] > 250).all()
    assert load_names(out, "train") == ["1", "2", "10"]


def test_pix2pix_archive_with_top_folder(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "facades.tar.gz", "w:gz") as tar:
        data = _png(_halves())
        info = tarfile.TarInfo("facades/test/7.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    out = prepare_pix2pix(tmp_path / "facades.tar.gz", tmp_path / "out", size=8)
    assert read_meta(out)["splits"] == {"test": 1} and load_names(out, "test") == ["7"]


def test_pix2pix_odd_width(tmp_path: Path) -> None:
    _write_tree(tmp_path / "raw", {"train/1.png": _png(_halves(width=33)), "val/2.png": _png(_halves())})
    with pytest.raises(FalError, match="1.png: width 33 is odd"):
        prepare_pix2pix(tmp_path / "raw", tmp_path / "out", size=8)


def test_pix2pix_without_a_val_or_test_split(tmp_path: Path) -> None:
    _write_tree(tmp_path / "raw", {"train/1.png": _png(_halves())})
    with pytest.raises(FalError, match="only a train split; .* add one with a few pairs"):
        prepare_pix2pix(tmp_path / "raw", tmp_path / "out", size=8)
    assert not (tmp_path / "out").exists()


def test_pix2pix_a_b_folders(tmp_path: Path) -> None:
    red, blue = np.full((12, 12, 3), (255, 0, 0), np.uint8), np.full((12, 12, 3), (0, 0, 255), np.uint8)
    _write_tree(tmp_path / "raw", {"A/train/x.png": _png(red), "B/train/x.jpg": _png(blue, "JPEG"),
                                   "A/val/y.png": _png(red), "B/val/y.png": _png(blue)})
    out = prepare_pix2pix(tmp_path / "raw", tmp_path / "out", size=8)
    assert read_meta(out)["layout"] == "A/ and B/ folders" and load_names(out, "val") == ["y"]
    assert (load_split(out, "train")["b"][..., 2] > 240).all()
    _write_tree(tmp_path / "raw", {"A/val/z.png": _png(red)})
    with pytest.raises(FalError, match="z.png: no B/val/z"):
        prepare_pix2pix(tmp_path / "raw", tmp_path / "out2", size=8)
    (tmp_path / "raw" / "A" / "val" / "z.png").unlink()
    _write_tree(tmp_path / "raw", {"B/val/y.png": _png(np.zeros((10, 12, 3), np.uint8))})
    with pytest.raises(FalError, match=r"A/val/y.png is 12x12 but .*B/val/y.png is 12x10"):
        prepare_pix2pix(tmp_path / "raw", tmp_path / "out2", size=8)
    assert not (tmp_path / "out2").exists()


def test_pix2pix_nothing_found(tmp_path: Path) -> None:
    _write_tree(tmp_path / "raw", {"readme.txt": b"hi"})
    with pytest.raises(FalError, match="no pix2pix images"):
        prepare_pix2pix(tmp_path / "raw", tmp_path / "out", size=8)


# --- NYU-Depth v2 ------------------------------------------------------------------------------------------

def _nyu(folder: Path, frames: int = 4, keys: tuple[str, str] = ("images", "depths"), splits: bool = True) -> Path:
    """A labelled .mat like MATLAB writes it (axes reversed): images (N, 3, W, H), depths (N, W, H)."""
    folder.mkdir(exist_ok=True)
    height, width = 48, 64
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.zeros((frames, height, width, 3), np.uint8)
    rgb[..., 0] = cols * 4  # red grows to the right
    depth = (rows[None] * 0.1 + np.arange(frames)[:, None, None]).astype(np.float32)  # deeper downwards
    with h5py.File(folder / "nyu_depth_v2_labeled.mat", "w") as f:
        f[keys[0]] = rgb.transpose(0, 3, 2, 1)
        f[keys[1]] = depth.transpose(0, 2, 1)
        f["labels"] = np.zeros((frames, width, height), np.uint16)
    if splits:
        scipy.io.savemat(folder / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2], [4]])})
    return folder


def test_nyu_round_trip_and_orientation(tmp_path: Path) -> None:
    out = prepare_nyu(_nyu(tmp_path / "raw"), tmp_path / "out", size=16)
    meta = read_meta(out)
    assert meta["splits"] == {"train": 2, "test": 2} and meta["depth_range"] == [0.0, 10.0]
    assert meta["directions"] == {"rgb_to_depth": ["rgb", "depth"]}
    assert meta["eval_fields"] == {"depth": "depth"}  # metres, which the depth errors read
    assert meta["fields"]["depth"] == {"dtype": "float32", "shape": [16, 16]}
    assert load_names(out, "train") == ["1", "3"] and load_names(out, "test") == ["2", "4"]
    test = load_split(out, "test")
    depth, rgb = test["depth"][1], test["rgb"][1]  # frame 4 (index 3)
    assert (np.diff(depth[:, 0]) > 0).all() and (depth == depth[:, :1]).all()  # rows vary, columns do not
    # NEAREST keeps measured values, all from rows inside the crop (rows 1:47 of 48)
    measured = (np.arange(48)[:, None] * 0.1 + 3).astype(np.float32)[1:47, 0]
    assert np.isin(depth, measured).all()
    assert (np.diff(rgb[0, :, 0].astype(int)) > 0).all()


def test_nyu_splits_file_option_and_errors(tmp_path: Path) -> None:
    raw = _nyu(tmp_path / "raw", splits=False)
    with pytest.raises(FalError, match="splits.mat.*--splits"):
        prepare_nyu(raw, tmp_path / "out", size=16)
    scipy.io.savemat(tmp_path / "mine.mat", {"trainNdxs": np.array([[4]]), "testNdxs": np.array([[1], [2]])})
    out = prepare_nyu(raw / "nyu_depth_v2_labeled.mat", tmp_path / "out", size=8, splits_file=tmp_path / "mine.mat")
    assert read_meta(out)["splits"] == {"train": 1, "test": 2}
    scipy.io.savemat(tmp_path / "keys.mat", {"train": np.array([[1]])})
    with pytest.raises(FalError, match="keys.mat: expected keys trainNdxs and testNdxs, found \\['train'\\]"):
        prepare_nyu(raw, tmp_path / "o2", size=8, splits_file=tmp_path / "keys.mat")
    scipy.io.savemat(tmp_path / "range.mat", {"trainNdxs": np.array([[5]]), "testNdxs": np.array([[1]])})
    with pytest.raises(FalError, match="outside 1..4"):
        prepare_nyu(raw, tmp_path / "o2", size=8, splits_file=tmp_path / "range.mat")
    scipy.io.savemat(tmp_path / "twice.mat", {"trainNdxs": np.array([[1], [1]]), "testNdxs": np.array([[2]])})
    with pytest.raises(FalError, match="trainNdxs holds repeated or non-integer"):
        prepare_nyu(raw, tmp_path / "o2", size=8, splits_file=tmp_path / "twice.mat")
    scipy.io.savemat(tmp_path / "half.mat", {"trainNdxs": np.array([[1.5]]), "testNdxs": np.array([[2]])})
    with pytest.raises(FalError, match="trainNdxs holds repeated or non-integer"):
        prepare_nyu(raw, tmp_path / "o2", size=8, splits_file=tmp_path / "half.mat")
    scipy.io.savemat(tmp_path / "shared.mat", {"trainNdxs": np.array([[1], [2]]), "testNdxs": np.array([[2]])})
    with pytest.raises(FalError, match="share frames"):
        prepare_nyu(raw, tmp_path / "o2", size=8, splits_file=tmp_path / "shared.mat")
    assert not (tmp_path / "o2").exists()


def test_nyu_bad_mat_files(tmp_path: Path) -> None:
    raw = _nyu(tmp_path / "raw", keys=("rgb", "depth"))
    found = r"found \['depth', 'labels', 'rgb'\]"
    with pytest.raises(FalError, match=rf"nyu_depth_v2_labeled.mat: expected keys 'images' and 'depths', {found}"):
        prepare_nyu(raw, tmp_path / "out", size=16)
    (raw / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(FalError, match="not a MATLAB v7.3"):
        prepare_nyu(raw, tmp_path / "out", size=16)
    with pytest.raises(FalError, match="no such file"):
        prepare_nyu(tmp_path, tmp_path / "out", size=16)


@pytest.mark.parametrize("layout", ["not reversed", "a group", "millimetres"])
def test_nyu_mat_with_the_keys_but_not_the_layout(tmp_path: Path, layout: str) -> None:
    raw = _nyu(tmp_path / "raw")
    with h5py.File(raw / "nyu_depth_v2_labeled.mat", "r+") as f:
        images, depths = f["images"][()], f["depths"][()]
        del f["images"], f["depths"]
        if layout == "not reversed":  # (H, W, 3, N) and (H, W, N), as MATLAB shows them
            f["images"], f["depths"] = images.transpose(3, 2, 1, 0), depths.transpose(2, 1, 0)
        elif layout == "a group":
            f.create_group("images")
            f["depths"] = depths
        else:
            f["images"], f["depths"] = images, (depths * 1000).astype(np.uint16)
    message = "depths are uint16, not floating-point metres" if layout == "millimetres" else "do not match"
    with pytest.raises(FalError, match=message):
        prepare_nyu(raw, tmp_path / "out", size=16)
    assert not (tmp_path / "out").exists()
