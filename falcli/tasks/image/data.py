"""The image task's data (shared with the shapes-classifier judge): a `fal prepare` folder or the built-in shapes,
as uint8 images, and their batches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from falcli.data.shapes import make_shapes
from falcli.errors import FalError
from falcli.formats.store import load_split, read_meta
from falcli.tasks.image.config import IMAGE_SIZES, ImageSource

SHAPES_SEEDS = {"train": 0, "val": 1, "test": 2}  # fixed: every run and the judge see the same shapes


def load_images(data: ImageSource, split: str) -> dict[str, np.ndarray]:
    """A split's fields: images (N, S, S, 3) uint8 (a memmap for prepared data) and labels (N,) if present.

    Prepared folders without a val split (`fal prepare images` writes train only) fall back to train when
    val is asked for; the evaluation then compares with training images.
    """
    if data.source == "shapes":
        count = data.shapes_train if split == "train" else data.shapes_val
        return make_shapes(count, data.image_size, SHAPES_SEEDS.get(split, SHAPES_SEEDS["test"]))
    root = Path(data.root)
    if not (root / "meta.json").is_file():
        raise FalError(f"data.root {root}: no prepared dataset there; make it with `fal prepare celeba --raw PATH "
                       f"--out {root}` (or `fal prepare images`), or set data.root")
    meta = read_meta(root)
    if meta["kind"] != "images" or "images" not in meta["fields"]:
        raise FalError(f"data.root {root}: a {meta['kind']!r} dataset, but the image task needs an images dataset "
                       f"(`fal prepare celeba` or `fal prepare images`)")
    if split not in meta["splits"] and split == "val":
        split = "train"
    arrays = load_split(root, split)
    size = arrays["images"].shape[1]
    if size != data.image_size:
        fix = (f"set data.image_size: {size}, or prepare again with --size {data.image_size}" if size in IMAGE_SIZES
               else f"prepare again with --size {data.image_size} (the image task trains at 32, 64 or 128)")
        raise FalError(f"data.image_size is {data.image_size} but {root} holds {size}×{size} images; {fix}")
    return arrays


class ImageDataset(torch.utils.data.Dataset):
    """uint8 images (N, S, S, 3), in memory or memmapped; `__getitems__` stacks a whole batch at once."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"images": torch.from_numpy(np.array(self.images[index]))}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {"images": torch.from_numpy(np.ascontiguousarray(self.images[np.sort(indices)]))}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, S, S, 3) → float (B, 3, S, S) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1)
