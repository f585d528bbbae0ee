"""A segmenter judge for the FCN-score (pix2pix §4.2): photos → Cityscapes train ids, trained on real photos.

pix2pix scores labels→photo by segmenting the generated photos with an FCN trained on real ones; its Caffe
FCN-8s is gone from modern stacks, so `fal` trains its own small U-Net (`fal train
recipes/cityscapes_segmenter.yaml`, or streets_segmenter.yaml for the built-in data). Scores made with it are
comparable between fal runs, not with published FCN-scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from falcli.errors import FalError
from falcli.nn.dims import conv_nd, conv_transpose_nd, norm_nd
from falcli.tasks.translation import data as paired


@dataclass(frozen=True)
class DataConfig(paired.SourceConfig):
    photo_field: str = "photo"          # the images to segment; the labels are meta.json's eval_fields.segmentation


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 32                  # width of the first level, doubled per level
    depth: int = 3                      # halvings (data.image_size must be a multiple of 2^depth)
    classes: int = 19                   # output classes: the 19 Cityscapes train ids

    def __post_init__(self) -> None:
        if min(self.channels, self.depth, self.classes) < 1:
            raise FalError("model.channels, model.depth and model.classes must be >= 1")


def _block(dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(conv_nd(dims, in_channels, out_channels, 3), norm_nd(dims, "batch", out_channels),
                         nn.ReLU(), conv_nd(dims, out_channels, out_channels, 3),
                         norm_nd(dims, "batch", out_channels), nn.ReLU())


class UNetSegmenter(nn.Module):
    """photos (B, 3, S, S) in [-1, 1] → logits (B, K, S, S): a small U-Net (two conv-BN-ReLU per level,
    max-pool down, transposed conv up, skip concatenation)."""

    def __init__(self, in_channels: int, classes: int, channels: int, depth: int):
        super().__init__()
        widths = [channels * 2 ** j for j in range(depth + 1)]
        self.encoder = nn.ModuleList(_block(2, in_channels if j == 0 else widths[j - 1], widths[j])
                                     for j in range(depth + 1))
        self.upsample = nn.ModuleList(conv_transpose_nd(2, widths[j + 1], widths[j], 2, stride=2)
                                      for j in range(depth))
        self.decoder = nn.ModuleList(_block(2, 2 * widths[j], widths[j]) for j in range(depth))
        self.head = conv_nd(2, widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.head.weight.dtype)  # the training set is held in float16 to halve its memory
        skips = []
        for j, block in enumerate(self.encoder):
            x = block(x if j == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for j in reversed(range(len(self.decoder))):
            x = self.decoder[j](torch.cat([skips[j], self.upsample[j](x)], dim=1))
        return self.head(x)


class SegmenterJudge:
    name = "segmenter"
    DataConfig = DataConfig
    ModelConfig = ModelConfig

    def make_net(self, recipe) -> nn.Module:
        if recipe.data.image_size % 2 ** recipe.model.depth:
            raise FalError(f"data.image_size ({recipe.data.image_size}) must be a multiple of 2^model.depth = "
                           f"{2 ** recipe.model.depth}")
        m = recipe.model
        return UNetSegmenter(3, m.classes, m.channels, m.depth)

    def data_folder(self, recipe) -> Path | None:
        return Path(recipe.data.root) if recipe.data.dataset == "prepared" else None

    def load_data(self, recipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Photos (N, 3, S, S) float16 in [-1, 1] and train ids (N, S, S) int64 (255 = ignore)."""
        data = recipe.data
        meta = paired.source_meta(data)
        label_field = meta.get("eval_fields", {}).get("segmentation")
        if label_field is None:
            raise FalError(f"data: this dataset has no segmentation labels (meta.json eval_fields.segmentation); "
                           f"a segmenter judge needs Cityscapes-style train ids")
        fields = paired.load_fields(data, split)
        if data.photo_field not in fields:
            raise FalError(f"data.photo_field: no field {data.photo_field!r} (the dataset has "
                           f"{', '.join(fields)})")
        photos, labels = [], []
        for start in range(0, len(fields[label_field]), 256):  # in chunks: a prepared split may be a memmap
            part = slice(start, start + 256)
            photo = paired.to_network(torch.from_numpy(np.array(fields[data.photo_field][part])), None)
            photos.append(paired.resize(photo, data.image_size, "bicubic").half())
            label = torch.from_numpy(np.array(fields[label_field][part]))[:, None].float()
            labels.append(paired.resize(label, data.image_size, "nearest")[:, 0].long())
        targets = torch.cat(labels)
        valid = targets[targets != 255]
        if valid.numel() and int(valid.max()) >= recipe.model.classes:
            raise FalError(f"{label_field}: labels above model.classes - 1 = {recipe.model.classes - 1}")
        return torch.cat(photos), targets


JUDGE = SegmenterJudge()
