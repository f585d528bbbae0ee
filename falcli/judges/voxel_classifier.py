"""The paper's ShapeNet metric: a small 3D CNN classifier trained on real voxels; a GAN's score is how often it
assigns the generated shapes to the class the GAN was trained on (FAL poster, ShapeNet table).

Besides the data's classes the judge has a `reject` class, trained on uniform-noise cubes and salt-and-pepper
perturbed shapes (model.reject_share of every batch): a classifier with only shape classes must put a noise
cube in one of them, and did (accuracy 1.0 for random cubes). Samples it rejects count for no class.

`fal train recipes/voxel_classifier.yaml` trains it (on the built-in primitives, or a prepared dataset with
`--set data.source=prepared`); `fal evaluate` trains one on the GAN's data on first use
(falcli/judges/provision.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from falcli.errors import FalError
from falcli.judges.classifier import ConvClassifier, ModelConfig as ClassifierModelConfig
from falcli.tasks.voxel.data import DataConfig, class_names, load_voxels

REJECT = "reject"                       # the extra output class: noise and perturbed shapes


@dataclass(frozen=True)
class ModelConfig(ClassifierModelConfig):
    """The image judge's layers (channels, depth, features), plus the reject class and instance norm."""

    reject_share: float = 0.25          # share of each batch replaced by noise / perturbed shapes labelled reject
    # Per-sample normalisation: batch statistics of batches mixing dense noise with sparse shapes do not carry
    # over to evaluation (measured: seed 0 of the shipped recipe rejected every real shape with "batch").
    norm: Literal["batch", "instance", "none"] = "instance"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.reject_share < 1:
            raise FalError(f"model.reject_share must be in (0, 1) (got {self.reject_share}): without reject "
                           f"examples the judge scores noise cubes as shapes")


def junk(shapes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """What the reject class learns, one per input (B, 1, R, R, R) uint8: half uniform-noise cubes of a random
    density in [0, 1] (empty and full cubes included), half the shapes with a random 5–50 % of voxels flipped."""
    count = len(shapes)
    uniform = torch.rand(shapes.shape, generator=generator)
    density = torch.rand(count, 1, 1, 1, 1, generator=generator)
    noise = (uniform < density).to(torch.uint8)
    flip_rate = 0.05 + 0.45 * torch.rand(count, 1, 1, 1, 1, generator=generator)
    flipped = shapes ^ (torch.rand(shapes.shape, generator=generator) < flip_rate).to(torch.uint8)
    which = torch.rand(count, 1, 1, 1, 1, generator=generator) < 0.5
    return torch.where(which, noise, flipped)


class VoxelClassifier(nn.Module):
    """The image judge's dims-generic ConvClassifier with dims=3, reading occupancy as it is stored.

    (B, 1, R, R, R) uint8 {0, 1} or float in [0, 1] → logits (B, K). The data stay uint8 in memory (a float
    copy of ShapeNet at 64³ would not fit); each batch is mapped to [-1, 1] here.
    """

    def __init__(self, classes: int, model: ClassifierModelConfig):
        super().__init__()
        self.net = ConvClassifier(1, classes, 3, model.channels, model.depth, model.features,
                                  getattr(model, "norm", "batch"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() * 2 - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's penultimate activations (B, F): the space for precision/recall/coverage."""
        return self.net.features(x.float() * 2 - 1)


class VoxelClassifierJudge:
    name = "voxel-classifier"
    DataConfig = DataConfig             # the voxel task's own data section: primitives or a prepared folder
    ModelConfig = ModelConfig           # the image judge's channels, depth, features; plus reject_share

    def class_names(self, recipe) -> list[str]:
        """The judge's shape classes, in logit order: data.classes, or every class of its data. The reject
        class's logit follows them (index len(class_names)); see `output_names`."""
        return list(recipe.data.classes) if recipe.data.classes else class_names(recipe.data)

    def output_names(self, recipe) -> list[str]:
        return self.class_names(recipe) + [REJECT]

    def make_net(self, recipe) -> nn.Module:
        return VoxelClassifier(len(self.output_names(recipe)), recipe.model)

    def data_folder(self, recipe) -> Path | None:
        return Path(recipe.data.root) if recipe.data.source == "prepared" else None

    def augment(self, recipe, x: torch.Tensor, y: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The first reject_share of the batch (at least one item) becomes junk labelled reject."""
        count = max(1, round(recipe.model.reject_share * len(x)))
        x, y = x.clone(), y.clone()
        x[:count] = junk(x[:count], generator)
        y[:count] = len(self.class_names(recipe))
        return x, y

    def load_data(self, recipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (N, 1, R, R, R) uint8 (the net converts) and targets (N,) indexing `class_names`."""
        voxels = load_voxels(recipe.data, split)
        names = self.class_names(recipe)
        remap = torch.tensor([names.index(n) if n in names else -1 for n in voxels.names])
        targets = remap[torch.from_numpy(voxels.selected_labels())]
        return torch.from_numpy(voxels.all_grids()).unsqueeze(1), targets


JUDGE = VoxelClassifierJudge()


def to_judge_resolution(grids: torch.Tensor, judge_recipe) -> torch.Tensor:
    """(N, R, R, R) {0, 1} grids → (N, 1, r, r, r) at the judge's resolution r, max-pooled as `fal prepare` does."""
    size, target = grids.shape[-1], judge_recipe.data.resolution
    if size == target:
        return grids.unsqueeze(1)
    if size & (size - 1):
        raise FalError(f"the samples are {size}³ grids; voxel grids are scored at a power of two (16, 32, 64, …), "
                       f"as `fal prepare` and `fal sample` write them")
    if size < target or size % target:
        raise FalError(f"the voxel classifier works at {target}³ but the samples are {size}³; pass a judge "
                       f"trained with data.resolution={size}")
    return F.max_pool3d(grids.unsqueeze(1).float(), size // target).to(torch.uint8)
