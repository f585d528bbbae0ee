"""Where translation pairs come from, read without torch (`fal train --dry-run` resolves a direction from this
alone): the built-in streets or a folder made by `fal prepare`, and how a stored field is resized."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from falcli.data import streets
from falcli.errors import FalError
from falcli.formats import store


@dataclass(frozen=True)
class SourceConfig:
    """Where paired items come from; shared by the translation task and the segmenter judge."""

    dataset: Literal["streets", "prepared"] = "streets"  # built-in generated street scenes, or a prepared folder
    root: Path | None = None            # the prepared folder (`fal prepare … --out ROOT`); dataset: prepared only
    image_size: int = 64                # side of the images the networks see (pixels, square)
    train_count: int = 2000             # streets only: generated training pairs
    val_count: int = 200                # streets only: generated validation pairs
    seed: int = 0                       # streets only: scene seed; fixed across training seeds, so every run
                                        # of a comparison sees the same scenes

    def __post_init__(self) -> None:
        if self.dataset == "prepared" and self.root is None:
            raise FalError("data.root: dataset: prepared needs the folder written by `fal prepare`")
        if self.dataset == "streets" and self.root is not None:
            raise FalError("data.root: the built-in streets are generated, not read; remove data.root or set "
                           "data.dataset: prepared")
        if self.image_size < 8:
            raise FalError(f"data.image_size must be >= 8 pixels (got {self.image_size})")
        if self.dataset == "streets" and self.image_size > max(streets.SIZES):
            raise FalError(f"data.image_size: the streets are generated at most {max(streets.SIZES)} pixels")
        if self.train_count < 1 or self.val_count < 1:
            raise FalError("data.train_count and data.val_count must be >= 1")


def source_meta(data: SourceConfig) -> dict:
    """The dataset's description (meta.json, or the streets' own); FalError pointing to `fal prepare`."""
    if data.dataset == "streets":
        return {**streets.meta(), "source": "streets"}
    root = Path(data.root)
    if not (root / "meta.json").is_file():
        name = root.name if root.name in store.DATASET_NAMES else "NAME"
        raise FalError(f"data.root {root}: no prepared dataset there; make it with "
                       f"`fal prepare {name} --raw PATH --out {root}`")
    meta = store.read_meta(root)
    if meta["kind"] != "paired":
        raise FalError(f"data.root {root}: holds a {meta['kind']!r} dataset; translation needs paired data "
                       f"(fal prepare cityscapes, nyu or pix2pix)")
    return meta


def source_name(data: SourceConfig, meta: dict) -> str:
    """'streets', or the prepared dataset's source ('cityscapes', 'nyu', …): names its segmenter judge."""
    return "streets" if data.dataset == "streets" else str(meta.get("source", Path(data.root).name))


def split_name(meta: dict, split: str) -> str:
    """NYU ships train/test only: its test split stands in for val."""
    if split == "val" and "val" not in meta["splits"] and "test" in meta["splits"]:
        return "test"
    return split


def load_fields(data: SourceConfig, split: str, count: int | None = None) -> dict[str, np.ndarray]:
    """Item-first arrays of one split (memmaps for prepared data); `count` keeps only the first items."""
    if data.dataset == "streets":
        total = data.train_count if split == "train" else data.val_count
        n = total if count is None else min(count, total)
        # Distinct streams for train and val, for any data.seed (items depend on (stream seed, index) only).
        fields = _streets(n, streets_size(data.image_size), 2 * data.seed + (split != "train"))
        return dict(fields)
    meta = source_meta(data)
    fields = store.load_split(Path(data.root), split_name(meta, split))
    return {k: v[:count] for k, v in fields.items()} if count is not None else fields


def streets_size(image_size: int) -> int:
    """The smallest generated size that is at least `image_size` (the rest is resized on the device)."""
    return min(s for s in streets.SIZES if s >= image_size)


@functools.lru_cache(maxsize=8)
def _streets(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    fields = streets.make_streets(n, size, seed)
    for array in fields.values():
        array.flags.writeable = False  # shared by every caller of the cache
    return fields


def resize_mode(field: str, meta: dict, depth: bool) -> str:
    """Depth and label maps keep their values (nearest); photos are resized bicubically, as prepared."""
    declared = meta.get("resize_filter", {}).get(field)
    if depth or declared == "nearest" or (declared is None and field.startswith("label")):
        return "nearest"
    return "bicubic"
