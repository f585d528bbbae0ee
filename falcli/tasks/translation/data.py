"""Paired data for translation and for the segmenter judge: where the pairs come from (the built-in streets
or a folder made by `fal prepare`), which fields a direction reads, and pix2pix's jitter (resize to
load_size, random crop, flip; one draw per pair) done on the device.

Arrays stay as stored (uint8 images, float32 depth in metres) until `to_network`, which runs on the device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from falcli.data import streets
from falcli.errors import FalError
from falcli.formats import store
from falcli.core.runtime import rand_shard


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
        from falcli.commands.prepare import PREPARERS

        name = root.name if root.name in PREPARERS else "NAME"
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


class PairedDataset(torch.utils.data.Dataset):
    """Items {key: array} from item-first arrays; `__getitems__` stacks a whole batch in one call."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.length = len(next(iter(arrays.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.array(a[index])) for k, a in self.arrays.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices)
        return {k: torch.from_numpy(np.ascontiguousarray(a[index])) for k, a in self.arrays.items()}


# --- on the device ---

def is_depth(array: np.ndarray | torch.Tensor) -> bool:
    """Float fields are depth maps in metres (N, S, S); images are uint8 (N, S, S, 3) or (N, S, S)."""
    return array.dtype in (np.float32, np.float64, torch.float32, torch.float64)


def channels_of(array: np.ndarray) -> int:
    return array.shape[3] if array.ndim == 4 else 1


def resize_mode(field: str, meta: dict, depth: bool) -> str:
    """Depth and label maps keep their values (nearest); photos are resized bicubically, as prepared."""
    declared = meta.get("resize_filter", {}).get(field)
    if depth or declared == "nearest" or (declared is None and field.startswith("label")):
        return "nearest"
    return "bicubic"


def to_network(x: torch.Tensor, depth_range: tuple[float, float] | None) -> torch.Tensor:
    """Stored batch → (B, C, S, S) float in [-1, 1]: uint8 images /127.5 − 1; depth d ↦ 2(d−lo)/(hi−lo) − 1."""
    if x.dtype == torch.uint8:
        x = x.float().div(127.5).sub(1)
    else:
        lo, hi = depth_range
        x = x.float().sub(lo).mul(2 / (hi - lo)).sub(1).clamp(-1, 1)
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)


def depth_from_network(x: torch.Tensor, depth_range: tuple[float, float]) -> torch.Tensor:
    """Inverse of `to_network` for depth: [-1, 1] → metres."""
    lo, hi = depth_range
    return x.float().clamp(-1, 1).add(1).mul((hi - lo) / 2).add(lo)


def resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(B, C, H, W) → (B, C, size, size); bicubic overshoot is clipped back into [-1, 1]."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def jitter(images: list[torch.Tensor], modes: list[str], image_size: int, load_size: int | None,
           flip: bool) -> list[torch.Tensor]:
    """pix2pix's training augmentation, the same draw for every tensor of a pair: resize (B, C, H, W) to
    load_size, crop a random image_size square, mirror half of the pairs.

    Offsets come from the global RNG on the device (no host sync, fixed shapes); the crop and the flip are
    one gather with per-item row/column indices.
    """
    images = [resize(x, load_size or x.shape[-1], m) for x, m in zip(images, modes)]
    size, batch, device = images[0].shape[-1], images[0].shape[0], images[0].device
    if size == image_size and not flip:
        return images
    draw = rand_shard(batch, 3, device=device)  # (B, 3): row offset, column offset, flip
    span = size - image_size + 1
    base = torch.arange(image_size, device=device)
    rows = (draw[:, 0] * span).long().clamp_max(span - 1)[:, None] + base   # (B, S)
    cols = (draw[:, 1] * span).long().clamp_max(span - 1)[:, None] + base   # (B, S)
    if flip:
        cols = torch.where(draw[:, 2:3] < 0.5, cols.flip(1), cols)
    item = torch.arange(batch, device=device)[:, None, None]
    # x[item, :, rows, cols] puts the indexed axes first: (B, S, S, C) → back to (B, C, S, S).
    return [x[item, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous() for x in images]
