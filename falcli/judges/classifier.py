"""An image-classifier judge whose penultimate features give an offline FID (no pretrained weights needed).

`fal train recipes/shapes_classifier.yaml` fits a small CNN on the labels of the built-in shapes (the class
of the largest shape); `fal evaluate` trains it on first use (falcli/judges/provision.py). Its `features` —
the layer before the classifier head — are the feature space of `fid_judge`, an FID that needs no download.
The network takes `dims`, so the same layers classify voxels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from falcli.data.shapes import SHAPE_CLASSES
from falcli.errors import FalError
from falcli.judges.base import load
from falcli.nn.dims import conv_nd, norm_nd
from falcli.tasks.image.config import ImageSource
from falcli.tasks.image.data import load_images, to_unit_range


@dataclass(frozen=True)
class DataConfig(ImageSource):
    source: Literal["prepared", "shapes"] = "shapes"  # built-in shapes (labelled), or a labelled prepared folder
    image_size: int = 32                # 32, 64 or 128 px; the judge scores images of this size only


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 16                  # width of the first convolution, doubled at each downsampling (max 256)
    depth: int = 3                      # stride-2 stages (32² → 4² before global average pooling)
    features: int = 128                 # size of the penultimate layer: the FID feature space

    def __post_init__(self) -> None:
        if min(self.channels, self.depth, self.features) < 1:
            raise FalError("model.channels, model.depth and model.features must be >= 1")


class ConvClassifier(nn.Module):
    """inputs (B, C, *S) in [-1, 1] → logits (B, K); `features` gives the penultimate (B, F) activations.

    conv-BN-ReLU, then `depth` stages of (stride-2 conv, conv), global average pooling, a linear embedding
    (the features, taken before their ReLU so they spread like a Gaussian) and the linear head.
    """

    def __init__(self, in_channels: int, classes: int, dims: int, channels: int = 32, depth: int = 3,
                 features: int = 128, norm: str = "batch"):
        super().__init__()
        layers = [conv_nd(dims, in_channels, channels, 3), norm_nd(dims, norm, channels), nn.ReLU()]
        width = channels
        for _ in range(depth):
            out = min(width * 2, 256)
            layers += [conv_nd(dims, width, out, 3, stride=2), norm_nd(dims, norm, out), nn.ReLU(),
                       conv_nd(dims, out, out, 3), norm_nd(dims, norm, out), nn.ReLU()]
            width = out
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Linear(width, features)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(features, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, F)
        return self.embed(self.trunk(x).flatten(2).mean(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, *S) -> (B, K)
        return self.head(self.features(x))


class ImageClassifierJudge:
    name = "shapes-classifier"
    DataConfig = DataConfig
    ModelConfig = ModelConfig

    def make_net(self, recipe) -> nn.Module:
        m = recipe.model
        return ConvClassifier(3, len(SHAPE_CLASSES), 2, m.channels, m.depth, m.features)

    def load_data(self, recipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        fields = load_images(recipe.data, split)
        if "labels" not in fields:
            raise FalError(f"data.root {recipe.data.root}: no `labels` field; a classifier judge needs labelled "
                           f"images (the built-in shapes have them: data.source: shapes)")
        return to_unit_range(torch.from_numpy(np.array(fields["images"]))), torch.from_numpy(
            np.array(fields["labels"], np.int64))

    def data_folder(self, recipe) -> Path | None:
        return Path(recipe.data.root) if recipe.data.source == "prepared" else None


JUDGE = ImageClassifierJudge()


# --- the judge as a feature space ---

def judge_features(images: torch.Tensor, net: nn.Module, device: torch.device,
                   batch_size: int = 250) -> np.ndarray:
    """Penultimate features (N, F) float64 of uint8 images (N, 3, S, S)."""
    rows = []
    net.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device).float().div(127.5).sub(1)
            rows.append(net.features(x).double().cpu().numpy())
    if not rows:
        raise FalError("no images to extract judge features from")
    return np.concatenate(rows)


def load_judge(path: Path, device: torch.device) -> tuple[nn.Module, int]:
    """(net in eval mode, the image size it was trained on) from a `judge.pt`."""
    net, recipe, _ = load(Path(path), device, JUDGE)
    return net, recipe.data.image_size
