"""An image-classifier judge whose penultimate features give an offline FID (no pretrained weights needed).

`fal train recipes/shapes_classifier.yaml` fits a small CNN on the labels of the built-in shapes (the class
of the largest shape). Its `features` — the layer before the classifier head — are the feature space of
`fid_judge`, an FID that needs no download. The network takes `dims`, so the same layers classify voxels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from falcli.config import SHIPPED_RECIPES
from falcli.errors import FalError
from falcli.nn.dims import conv_nd, norm_nd
from falcli.tasks.image.config import ImageSource
from falcli.tasks.image.data import load_images, to_unit_range

SHIPPED_RECIPE = SHIPPED_RECIPES / "shapes_classifier.yaml"


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
                 features: int = 128):
        super().__init__()
        layers = [conv_nd(dims, in_channels, channels, 3), norm_nd(dims, "batch", channels), nn.ReLU()]
        width = channels
        for _ in range(depth):
            out = min(width * 2, 256)
            layers += [conv_nd(dims, width, out, 3, stride=2), norm_nd(dims, "batch", out), nn.ReLU(),
                       conv_nd(dims, out, out, 3), norm_nd(dims, "batch", out), nn.ReLU()]
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
        from falcli.data.shapes import SHAPE_CLASSES

        m = recipe.model
        return ConvClassifier(3, len(SHAPE_CLASSES), 2, m.channels, m.depth, m.features)

    def load_data(self, recipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        fields = load_images(recipe.data, split)
        if "labels" not in fields:
            raise FalError(f"data.root {recipe.data.root}: no `labels` field; a classifier judge needs labelled "
                           f"images (the built-in shapes have them: data.source: shapes)")
        return to_unit_range(torch.from_numpy(np.array(fields["images"]))), torch.from_numpy(
            np.array(fields["labels"], np.int64))


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


def default_judge_path(image_size: int) -> Path:
    """Where `fal` keeps the shapes judge for one image size (relative to the working folder, like runs/)."""
    name = "shapes_classifier" if image_size == 32 else f"shapes_classifier_{image_size}"
    return Path("runs") / name / "judge.pt"


def load_judge(path: Path, device: torch.device) -> tuple[nn.Module, int]:
    """(net in eval mode, the image size it was trained on) from a `judge.pt`."""
    from falcli.judges.base import load

    net, recipe, _ = load(Path(path), device, expect=ImageClassifierJudge.name)
    return net, recipe.data.image_size


def shapes_judge(image_size: int, device: torch.device, say=print) -> nn.Module:
    """The shapes judge for `image_size`, trained with the shipped recipe the first time it is needed."""
    from falcli.resolve import load_recipe
    from falcli.judges.run import run_judge

    path = default_judge_path(image_size)
    if not path.is_file():
        if path.parent.exists() and any(path.parent.iterdir()):
            raise FalError(f"{path.parent} holds no judge.pt (an interrupted training?); delete that folder and "
                           f"evaluate again to retrain the judge")
        if not SHIPPED_RECIPE.is_file():
            raise FalError(f"no shapes judge at {path}; train one with `fal train recipes/shapes_classifier.yaml "
                           f"--set data.image_size={image_size} --out {path.parent}`")
        say(f"training the shapes judge once ({SHIPPED_RECIPE.name}, {image_size}² images) into {path.parent}; "
            f"later evaluations reuse it")
        recipe = load_recipe(SHIPPED_RECIPE, [f"data.image_size={image_size}"])
        run_judge(recipe, path.parent, str(device))
    net, size = load_judge(path, device)
    if size != image_size:
        raise FalError(f"{path}: a judge for {size}² images, but these are {image_size}²; delete it to retrain")
    return net
