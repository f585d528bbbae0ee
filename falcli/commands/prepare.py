"""`fal prepare NAME --raw PATH --out DIR`: convert a raw download into the prepared-dataset format.

PREPARERS maps each dataset name to a function `(raw, out, options) -> out`; the format is in formats/store.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from falcli.errors import FalError
from falcli.formats.archive import reading
from falcli.formats.celeba import prepare_celeba, prepare_image_folder
from falcli.formats.cityscapes import prepare_cityscapes
from falcli.formats.nyu import prepare_nyu
from falcli.formats.pix2pix import prepare_pix2pix
from falcli.formats.shapenet import prepare_shapenet
from falcli.data.primitives import make_primitives, meta as primitives_meta
from falcli.data.shapes import make_shapes, meta as shapes_meta
from falcli.data.streets import make_streets, meta as streets_meta
from falcli.formats.store import DATASET_NAMES, Progress, check_new_output, read_meta, write_dataset


# The largest --size: 2048 pixels is Cityscapes' full width (an item is 12 MB as RGB); 256 voxels per side is
# 16 MB per item. Beyond these one item alone would not fit in memory, let alone a dataset on disk.
MAX_SIZE = {"shapenet": 256, "primitives": 256}
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class PrepareOptions:
    """Options of `fal prepare`; None means the dataset's default (or "not given")."""

    size: int | None = None
    classes: list[str] | None = None
    splits_file: Path | None = None
    progress: Progress | None = None
    count: int | None = None            # built-in datasets: training items (validation gets a tenth)
    warn: Callable[[str], None] = print  # one line about a surprising but valid input


Preparer = Callable[[Path | None, Path, PrepareOptions], Path]


def _raw(dataset: str, raw: Path | None, what: str) -> Path:
    if raw is None:
        raise FalError(f"fal prepare {dataset} needs --raw PATH: {what}")
    return raw


def _only(dataset: str, options: PrepareOptions, classes: bool = False, splits: bool = False) -> None:
    """Refuse options that this dataset would silently ignore."""
    if options.classes is not None and not classes:
        raise FalError(f"--classes does not apply to {dataset} (only to shapenet and primitives); drop it")
    if options.splits_file is not None and not splits:
        raise FalError(f"--splits does not apply to {dataset} (only to nyu); drop it")


def _cityscapes(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("cityscapes", o)
    where = "a folder with leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, or pix2pix's cityscapes/"
    return prepare_cityscapes(_raw("cityscapes", raw, where), out, o.size or 256, o.progress)


def _nyu(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("nyu", o, splits=True)
    where = "nyu_depth_v2_labeled.mat or its folder (with splits.mat)"
    return prepare_nyu(_raw("nyu", raw, where), out, o.size or 256, o.splits_file, o.progress)


def _celeba(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("celeba", o)
    where = "img_align_celeba.zip, its unpacked folder, or the folder holding either"
    path = prepare_celeba(_raw("celeba", raw, where), out, o.size or 64, o.progress)
    if read_meta(path)["partition"].startswith("none"):
        o.warn(f"no list_eval_partition.txt (or Kaggle's .csv) near {raw}: every image went to train. Put the "
               f"file from CelebA's Eval/ folder next to the images for the official train/val/test split")
    return path


def _images(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("images", o)
    return prepare_image_folder(_raw("images", raw, "a folder (or archive) of images"), out, o.size or 64, o.progress)


def _pix2pix(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("pix2pix", o)
    where = "a folder with <split>/*.jpg (A | B side by side) or A/<split>/ and B/<split>/"
    return prepare_pix2pix(_raw("pix2pix", raw, where), out, o.size or 256, o.progress)


def _shapenet(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
    _only("shapenet", o, classes=True)
    where = "ShapeNetVox32 (<synset>/<model>/model.binvox) or ShapeNetCore v2"
    return prepare_shapenet(_raw("shapenet", raw, where), out, o.size or 32, o.classes, o.progress)


def _builtin(name: str, make: Callable, meta: Callable, default_size: int, classes: bool = False) -> Preparer:
    """A preparer that writes a built-in procedural dataset to disk (train seed 0, val seed 1)."""
    def preparer(raw: Path | None, out: Path, o: PrepareOptions) -> Path:
        if raw is not None:
            raise FalError(f"{name} is built in (generated, nothing to convert); drop --raw")
        _only(name, o, classes=classes)
        count = o.count or 2000
        extra = {"classes": o.classes} if classes and o.classes else {}
        splits = {}
        for split, n, seed in (("train", count, 0), ("val", max(1, count // 10), 1)):
            if o.progress:
                o.progress(f"{name} {split}", 0, n)
            splits[split] = make(n, o.size or default_size, seed=seed, **extra)
            if o.progress:
                o.progress(f"{name} {split}", n, n)
        if classes and o.classes:
            meta(o.classes)  # validates the names
        info = meta()  # labels index the full class list, even when only some classes were generated
        return write_dataset(out, info["kind"], name, splits, {**info, "size": o.size or default_size},
                             names={s: [f"{name}-{i:06d}" for i in range(len(next(iter(a.values()))))]
                                    for s, a in splits.items()})
    return preparer


PREPARERS: dict[str, Preparer] = {
    "cityscapes": _cityscapes,
    "nyu": _nyu,
    "celeba": _celeba,
    "images": _images,
    "pix2pix": _pix2pix,
    "shapenet": _shapenet,
    "streets": _builtin("streets", make_streets, streets_meta, 64),
    "shapes": _builtin("shapes", make_shapes, shapes_meta, 32),
    "primitives": _builtin("primitives", make_primitives, primitives_meta, 32, classes=True),
}
assert tuple(PREPARERS) == DATASET_NAMES, "formats/store.py's DATASET_NAMES lists every preparer, in this order"


def prepare(dataset: str, raw: Path | None, out: Path, *, size: int | None = None,
            classes: list[str] | None = None, splits_file: Path | None = None,
            progress: Progress | None = None, count: int | None = None,
            warn: Callable[[str], None] = print, follow_links: bool = False) -> Path:
    """Prepare `dataset` from `raw` into `out` (never overwritten, written atomically); returns `out`.

    Symbolic links inside a raw folder are skipped unless `follow_links` (to regular files and folders only).
    """
    if dataset not in PREPARERS:
        raise FalError(f"unknown dataset {dataset!r}; choose one of: {', '.join(PREPARERS)}")
    if raw is not None and not Path(raw).exists():
        raise FalError(f"{raw}: no such file or folder (--raw)")
    if size is not None and size < 1:
        raise FalError(f"--size {size}: must be a positive number of pixels (or voxels)")
    largest = MAX_SIZE.get(dataset, MAX_IMAGE_SIZE)
    if size is not None and size > largest:
        raise FalError(f"--size {size}: over the largest {dataset} size, {largest} (one item would not fit in "
                       f"memory); pick a size up to {largest}")
    if splits_file is not None and not Path(splits_file).is_file():
        raise FalError(f"{splits_file}: no such file (--splits)")
    out = Path(out)
    check_new_output(out)
    if count is not None and (count < 1 or dataset not in ("streets", "shapes", "primitives")):
        raise FalError("--count applies to the built-in datasets (streets, shapes, primitives) and must be >= 1")
    options = PrepareOptions(size=size, classes=classes, splits_file=splits_file, progress=progress, count=count,
                             warn=warn)
    with reading(follow_links=follow_links, warn=warn):
        return PREPARERS[dataset](Path(raw) if raw is not None else None, out, options)
