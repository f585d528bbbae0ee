"""The image recipe's own sections (`data:`, `model:`), G's stages and the checks across sections; torch-free, so
that `fal train --dry-run` resolves a recipe without loading torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from falcli.errors import FalError

IMAGE_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class ImageSource:
    """Where images come from; shared by the image task and the image-classifier judge."""

    source: Literal["prepared", "shapes"] = "prepared"  # a `fal prepare` folder, or built-in shapes (no download)
    root: Path = Path("data/celeba")    # the prepared folder (source: prepared), e.g. `fal prepare celeba --out …`
    image_size: int = 64                # 32, 64 or 128 px; must equal the prepared images' size
    shapes_train: int = 10_000          # source: shapes — images generated for the train split
    shapes_val: int = 2_000             # source: shapes — images of the val split (the FID reference)

    def __post_init__(self) -> None:
        if self.image_size not in IMAGE_SIZES:
            raise FalError(f"data.image_size must be 32, 64 or 128 (got {self.image_size})")
        if self.shapes_train < 1 or self.shapes_val < 1:
            raise FalError("data.shapes_train and data.shapes_val must be >= 1")


@dataclass(frozen=True)
class DataConfig(ImageSource):
    flip: bool = True                   # random horizontal flips of the training images


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 100               # size of z
    g_channels: int = 64                # G width at the last stage (DCGAN ngf), doubled at each lower stage
    d_channels: int = 64                # D width at the first layer (DCGAN ndf), doubled per downsampling
    d_map_size: int | None = None       # side of D's logit map (2 … image_size/2); None = image_size/8 (8×8 at 64²)
    d_norm: Literal["instance", "batch", "none"] = "instance"  # per-image norm keeps D's verdict (the fed-back
    #                                     signal) independent of the batch and equal in train and eval mode

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.g_channels, self.d_channels) < 1:
            raise FalError("model.latent_dim, model.g_channels and model.d_channels must be >= 1")
        if self.d_map_size is not None and (self.d_map_size < 2 or self.d_map_size & (self.d_map_size - 1)):
            raise FalError(f"model.d_map_size must be a power of two >= 2, a spatial verdict (got {self.d_map_size})")

    def map_size(self, image_size: int) -> int:
        return self.d_map_size if self.d_map_size is not None else image_size // 8


def generator_stages(image_size: int) -> int:
    """Stages of G: the 4×4 projection plus one per doubling below the output (32² → 3, 64² → 4)."""
    return (image_size // 4).bit_length() - 1


def default_placement(image_size: int) -> tuple[int, ...]:
    """The stages at ¼ and ½ of the output resolution (methods.md §0)."""
    last = generator_stages(image_size) - 1
    return (last - 1, last)


def validate(recipe) -> None:
    """Cross-section checks of an image recipe (ImageTask.validate)."""
    if recipe.loss.l1_weight:
        raise FalError("loss.l1_weight: unconditional images have no target to compare with; remove the key")
    size, stages = recipe.data.image_size, generator_stages(recipe.data.image_size)
    placement = recipe.feedback.placement
    if placement is not None and any(not 0 <= s < stages for s in placement):
        raise FalError(f"feedback.placement: {size}² generators have stages 0..{stages - 1} "
                       f"(stage k works at {4}·2^k px); default {list(default_placement(size))}")
    map_size = recipe.model.map_size(size)
    if not 2 <= map_size <= size // 2:
        raise FalError(f"model.d_map_size must be between 2 and {size // 2} for {size}² images (got {map_size})")
    if recipe.method.eqgan_sa and map_size > size // 8:
        raise FalError(f"method.eqgan_sa aligns D's attention at three of its resolutions: model.d_map_size must "
                       f"be at most {size // 8} for {size}² images (got {map_size})")
    if recipe.method.glead and map_size > size // 4:
        raise FalError(f"method.glead decodes D's features up to {size // 4}² (¼ of the image): model.d_map_size "
                       f"must be at most {size // 4} for {size}² images (got {map_size})")
