"""Cityscapes (gtFine) as a paired dataset: photo, colour label and train-id label at size x size.

Reads the official `leftImg8bit_trainvaltest.zip` + `gtFine_trainvaltest.zip` (or their unpacked folders),
or the pix2pix prebuilt `cityscapes/{train,val}/<n>.jpg` (photo | colour label side by side).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from falcli.errors import FalError
from falcli.formats.archive import DirSource, Source, is_archive, open_source
from falcli.formats.images import decode_image, resize, resize_array, to_array
from falcli.formats.store import DatasetWriter, Progress, created_by, write_split
from falcli.metrics.segmentation import (CITYSCAPES_COLORS, CITYSCAPES_TRAIN_CLASSES, IGNORE, LABEL_ID_TO_TRAIN_ID,
                                        colors_to_train_ids)

NUM_LABEL_IDS = 34
TRAINID_NAMES = CITYSCAPES_TRAIN_CLASSES
TRAINID_COLORS = tuple(tuple(int(v) for v in c) for c in CITYSCAPES_COLORS)

SPLITS = ("train", "val")
DIRECTIONS = {"labels_to_photo": ["label_color", "photo"], "photo_to_labels": ["photo", "label_color"]}
FIELD_CHANNELS = {"photo": 3, "label_color": 3, "label_trainid": 1}  # what translation sizes its networks by
                                                                     # before the data is prepared
DOWNLOAD_HINT = ("get leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
                 "https://www.cityscapes-dataset.com/downloads/ into one folder and pass it as --raw")

# cityscapesScripts labels.py: label id -> train id (every other id in 0..33 is ignored = 255).
_LUT = LABEL_ID_TO_TRAIN_ID
_PHOTO = re.compile(r"^leftImg8bit/(?P<split>train|val)/(?P<city>[^/]+)/(?P<id>[^/]+)_leftImg8bit\.png$")
_PIX2PIX = re.compile(r"^(?:cityscapes/)?(?P<split>train|val)/(?P<id>[^/]+)\.jpg$")


def label_ids_to_trainids(ids: np.ndarray, name: str) -> np.ndarray:
    """Map a label-id image (values 0..33) to train ids (0..18, 255 = ignore)."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= NUM_LABEL_IDS):
        bad = int(ids.max()) if int(ids.max()) >= NUM_LABEL_IDS else int(ids.min())
        raise FalError(f"{name}: unknown label id {bad} (Cityscapes label ids are 0..33); "
                       "is this really a *_gtFine_labelIds.png?")
    return _LUT[ids.astype(np.intp)]


def colors_to_trainids(rgb: np.ndarray) -> np.ndarray:
    """Train ids of an (H, W, 3) colour label by nearest palette colour (void colours give 255)."""
    return colors_to_train_ids(rgb, void=True)


def _meta(size: int, layout: str) -> dict:
    return {
        "size": size,
        "created_by": created_by("cityscapes", size=size),
        "layout": layout,
        "directions": DIRECTIONS,
        "default_direction": "labels_to_photo",
        "eval_fields": {"segmentation": "label_trainid"},
        "trainid_classes": list(TRAINID_NAMES),
        "ignore_index": IGNORE,
        "resize_filter": {"photo": "bicubic", "label_color": "nearest", "label_trainid": "nearest"},
    }


def _fields(size: int) -> dict[str, tuple[tuple[int, ...], str]]:
    return {"photo": ((size, size, 3), "uint8"), "label_color": ((size, size, 3), "uint8"),
            "label_trainid": ((size, size), "uint8")}


def _official_part(raw: Path, part: str) -> Source | None:
    archive = raw / f"{part}_trainvaltest.zip"
    if archive.is_file():
        return open_source(archive)
    if (raw / part).is_dir():
        return DirSource(raw / part, prefix=part)
    return None


def _official_frames(left: Source, gt: Source) -> dict[str, list[tuple[str, str, str, str]]]:
    """Per split: (identifier, photo, colour label, label ids) member names, sorted by identifier."""
    frames: dict[str, list[tuple[str, str, str, str]]] = {split: [] for split in SPLITS}
    for name in left.names():
        match = _PHOTO.match(name)
        if not match:
            continue
        split, city, ident = match["split"], match["city"], match["id"]
        stem = f"gtFine/{split}/{city}/{ident}_gtFine_"
        color, ids = stem + "color.png", stem + "labelIds.png"
        for label in (color, ids):
            if not gt.has(label):
                raise FalError(f"{left.where(name)}: photo without its label {gt.where(label)}; "
                               "is gtFine_trainvaltest complete?")
        frames[split].append((ident, name, color, ids))
    for split, items in frames.items():
        if not items:
            raise FalError(f"{left.label}: no leftImg8bit/{split}/<city>/*_leftImg8bit.png photos; {DOWNLOAD_HINT}")
        items.sort()
    return frames


def _official_item(left: Source, gt: Source, frame: tuple[str, str, str, str], size: int) -> dict[str, np.ndarray]:
    _, photo_name, color_name, ids_name = frame
    photo = decode_image(left.read(photo_name), left.where(photo_name))
    color = decode_image(gt.read(color_name), gt.where(color_name))
    ids = decode_image(gt.read(ids_name), gt.where(ids_name), mode=None)
    for image, name in ((color, color_name), (ids, ids_name)):
        if image.size != photo.size:
            raise FalError(f"{gt.where(name)}: {image.size[0]}x{image.size[1]} but its photo "
                           f"{left.where(photo_name)} is {photo.size[0]}x{photo.size[1]}; the pair does not match")
    id_array = np.asarray(ids)
    if id_array.ndim != 2:
        raise FalError(f"{gt.where(ids_name)}: not a single-channel label-id image (mode {ids.mode}); "
                       "expected the *_gtFine_labelIds.png of gtFine_trainvaltest")
    trainids = label_ids_to_trainids(id_array, gt.where(ids_name))
    return {"photo": to_array(resize(photo, size, "bicubic")),
            "label_color": to_array(resize(color, size, "nearest")),
            "label_trainid": resize_array(trainids, size, "nearest")}


def _prepare_official(left: Source, gt: Source, out: Path, size: int, progress: Progress | None) -> Path:
    frames = _official_frames(left, gt)
    with DatasetWriter(out, "paired", "cityscapes", _meta(size, "official")) as writer:
        for split, items in frames.items():
            write_split(writer, split, _fields(size), items, lambda f: _official_item(left, gt, f, size),
                        [f[0] for f in items], progress, f"cityscapes {split}")
    return out


def _natural(name: str) -> tuple[int, str]:
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return (int(stem) if stem.isdigit() else -1, stem)


def _pix2pix_items(source: Source) -> dict[str, list[str]]:
    items: dict[str, list[str]] = {split: [] for split in SPLITS}
    for name in source.names():
        match = _PIX2PIX.match(name)
        if match:
            items[match["split"]].append(name)
    return {split: sorted(names, key=_natural) for split, names in items.items()}


def _pix2pix_item(source: Source, name: str, size: int) -> dict[str, np.ndarray]:
    image = decode_image(source.read(name), source.where(name))
    width, height = image.size
    if width != 2 * height:
        raise FalError(f"{source.where(name)}: {width}x{height}; pix2pix Cityscapes images are photo | colour "
                       "label side by side, twice as wide as high (512x256)")
    photo = image.crop((0, 0, height, height))
    color = to_array(resize(image.crop((height, 0, width, height)), size, "nearest"))
    return {"photo": to_array(resize(photo, size, "bicubic")), "label_color": color,
            "label_trainid": colors_to_trainids(color)}


def _prepare_pix2pix(source: Source, items: dict[str, list[str]], out: Path, size: int,
                     progress: Progress | None) -> Path:
    for split, names in items.items():
        if not names:
            raise FalError(f"{source.label}: no cityscapes/{split}/<n>.jpg images; the pix2pix download "
                           "has both train/ and val/")
    meta = _meta(size, "pix2pix")
    meta["approximate_labels"] = True
    meta["note"] = ("label_trainid was recovered from JPEG-compressed colour labels by nearest-colour lookup; "
                    "FCN-scores computed from it are approximate")
    with DatasetWriter(out, "paired", "cityscapes", meta) as writer:
        for split, names in items.items():
            write_split(writer, split, _fields(size), names, lambda n: _pix2pix_item(source, n, size),
                        [_natural(n)[1] for n in names], progress, f"cityscapes {split}")
    return out


def _pix2pix_candidates(raw: Path) -> list[Path]:
    if is_archive(raw):
        return [raw]
    if not raw.is_dir():
        return []
    return [p for p in (raw / "cityscapes.tar.gz", raw / "cityscapes.zip", raw / "cityscapes", raw) if p.exists()]


def prepare_cityscapes(raw: Path, out: Path, size: int = 256, progress: Progress | None = None) -> Path:
    """Prepare Cityscapes from `raw` (official zips/folders, or the pix2pix prebuilt folder) into `out`."""
    raw = Path(raw)
    left = _official_part(raw, "leftImg8bit") if raw.is_dir() else None
    gt = _official_part(raw, "gtFine") if raw.is_dir() else None
    if left and gt:
        with left, gt:
            return _prepare_official(left, gt, out, size, progress)
    if left or gt:
        missing = "gtFine" if left else "leftImg8bit"
        raise FalError(f"{raw}: found {'leftImg8bit' if left else 'gtFine'} but no {missing}_trainvaltest.zip "
                       f"or {missing}/ folder; {DOWNLOAD_HINT}")
    for candidate in _pix2pix_candidates(raw):
        with open_source(candidate) as source:
            items = _pix2pix_items(source)
            if any(items.values()):
                return _prepare_pix2pix(source, items, out, size, progress)
    raise FalError(f"{raw}: no Cityscapes found (expected leftImg8bit_trainvaltest.zip + gtFine_trainvaltest.zip, "
                   f"their unpacked folders, or the pix2pix cityscapes/ train/ and val/ folders); {DOWNLOAD_HINT}")
