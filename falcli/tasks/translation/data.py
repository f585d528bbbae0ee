"""Paired data for translation and for the segmenter judge: where the pairs come from (the built-in streets
or a folder made by `fal prepare`), which fields a direction reads, and pix2pix's jitter (resize to
load_size, random crop, flip; one draw per pair) done on the device.

Arrays stay as stored (uint8 images, float32 depth in metres) until `to_network`, which runs on the device.
"""
from __future__ import annotations

import numpy as np
import torch

from falcli.core.batch import Batch
# Stored arrays ↔ network tensors, part of this module's API:
from falcli.core.encoding import depth_from_network, is_depth, resize, to_network  # noqa: F401
from falcli.core.runtime import rand_shard
# Where the pairs come from (torch-free, for --dry-run), part of this module's API:
from falcli.tasks.translation.source import SourceConfig, load_fields, resize_mode, source_meta, source_name, \
    split_name, streets_size  # noqa: F401


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


def make_pairs(recipe, pairing, split: str, extras: bool, count: int | None = None) -> PairedDataset:
    """Items {input, target} plus, for evaluation, {labels (train ids), depth (metres)} where stored."""
    fields = load_fields(recipe.data, split, count)
    arrays = {"input": fields[pairing.input_field], "target": fields[pairing.target_field]}
    if extras:
        eval_fields = pairing.meta.get("eval_fields", {})
        for key, kind in (("labels", "segmentation"), ("depth", "depth")):
            if eval_fields.get(kind) in fields:
                arrays[key] = fields[eval_fields[kind]]
    return PairedDataset(arrays)


# --- on the device ---

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


def make_batch(raw: dict[str, torch.Tensor], recipe, pairing, training: bool) -> Batch:
    """A collated dict of stored pairs on the device → a Batch in [-1, 1] (jittered when training)."""
    data = recipe.data
    modes = [resize_mode(f, pairing.meta, is_depth(raw[k]))
             for f, k in ((pairing.input_field, "input"), (pairing.target_field, "target"))]
    images = [to_network(raw[k], pairing.depth_range) for k in ("input", "target")]
    if training:
        source, target = jitter(images, modes, data.image_size, data.load_size, data.flip)
    else:
        source, target = (resize(x, data.image_size, m) for x, m in zip(images, modes))
    extras = {}
    if "labels" in raw:  # train ids (B, S, S) for the FCN-score; nearest keeps them ids
        labels = raw["labels"][:, None].float()
        extras["labels"] = resize(labels, data.image_size, "nearest")[:, 0].long()
    if "depth" in raw:  # metres (B, S, S) for the depth errors
        extras["depth"] = resize(raw["depth"][:, None].float(), data.image_size, "nearest")[:, 0]
    return Batch(real=target, gen_input=source, condition=source, extras=extras)


def discriminator_input(sample: torch.Tensor, batch: Batch) -> torch.Tensor:
    return torch.cat([batch.condition.to(sample.dtype), sample], dim=1)  # D judges the pair (pix2pix)
