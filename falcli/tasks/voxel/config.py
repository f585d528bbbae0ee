"""The voxel recipe's own sections (`data:`, `model:`), G's stages and the checks across sections; torch-free, so
that `fal train --dry-run` resolves a recipe without loading torch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from falcli.data.primitives import PRIMITIVE_CLASSES
from falcli.errors import FalError

RESOLUTIONS = (16, 32, 64)


@dataclass(frozen=True)
class DataConfig:
    """Where voxels come from; shared by the voxel task and the voxel-classifier judge."""

    source: Literal["prepared", "primitives"] = "primitives"  # a `fal prepare shapenet` folder, or built-in shapes
    root: Path = Path("data/shapenet")  # the prepared folder (source: prepared)
    classes: tuple[str, ...] | None = None  # classes to train on (the paper: one GAN per class); None = all
    resolution: int = 32                # grid size R: 16, 32 or 64; finer data are max-pooled down to it
    primitives_train: int = 2000        # source: primitives — shapes generated for the train split
    primitives_val: int = 200           # source: primitives — shapes of the val split (the metrics' reference)

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise FalError(f"data.resolution must be 16, 32 or 64 (got {self.resolution})")
        if self.classes is not None and not self.classes:
            raise FalError("data.classes is empty; name at least one class, or remove the key for all classes")
        if self.primitives_train < 1 or self.primitives_val < 1:
            raise FalError("data.primitives_train and data.primitives_val must be >= 1")
        if self.source == "primitives" and self.classes is not None:
            unknown = [c for c in self.classes if c not in PRIMITIVE_CLASSES]
            if unknown:
                raise FalError(f"data.classes: {unknown[0]!r} is not a built-in primitives class (valid: "
                               f"{', '.join(PRIMITIVE_CLASSES)}); or use data.source: prepared")


MAP_SIZE = 4                            # D's map and G's first stage are 4³ at every resolution


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 200               # size of z (3D-GAN: 200)
    base_channels: int = 32             # G's last hidden width and D's first; doubles per stage (64 at 64³ = 3D-GAN)
    discriminator_norm: Literal["batch", "instance", "none"] = "instance"  # after every D conv but the first

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.base_channels < 1:
            raise FalError("model.latent_dim and model.base_channels must be >= 1")


def num_stages(resolution: int) -> int:
    """Hidden stages of G (and conv stages of D): 4³ → … → R/2, i.e. 3 at 32³."""
    return int(math.log2(resolution // MAP_SIZE))


def validate(recipe) -> None:
    """Cross-section checks of a voxel recipe (VoxelTask.validate)."""
    if recipe.loss.l1_weight:
        raise FalError("loss.l1_weight: the voxel task has no targets to compare with; remove the key")
    placement = recipe.feedback.placement
    n = num_stages(recipe.data.resolution)
    if placement is not None and any(not 0 <= s < n for s in placement):
        raise FalError(f"feedback.placement: voxel stages at {recipe.data.resolution}³ are 0..{n - 1} "
                       f"(resolutions {', '.join(f'{MAP_SIZE * 2 ** s}³' for s in range(n))})")
