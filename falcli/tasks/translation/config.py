"""The translation recipe's own sections (`data:`, `model:`), its direction resolved against the dataset, and
the checks across sections; torch-free, so that `fal train --dry-run` resolves a recipe without loading torch."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from falcli.config import LATENT_REFUSED
from falcli.errors import FalError
from falcli.tasks.translation.source import SourceConfig, load_fields, source_meta, source_name


@dataclass(frozen=True)
class DataConfig(SourceConfig):
    direction: str | None = None        # which field becomes which, e.g. labels_to_photo; None = the dataset's
                                        # default_direction (meta.json `directions` lists them)
    load_size: int | None = None        # pix2pix jitter: resize to load_size, random-crop image_size (286 for
                                        # 256); None = no crop
    flip: bool = True                   # mirror half of the training pairs (input and target alike)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.load_size is not None and self.load_size < self.image_size:
            raise FalError(f"data.load_size ({self.load_size}) must be >= data.image_size ({self.image_size}), "
                           f"or null for no crop")


@dataclass(frozen=True)
class ModelConfig:
    generator_channels: int = 64        # width of G's first level (pix2pix ngf); levels double it up to 8×
    depth: int = 8                      # G's halvings: 8 = unet_256 (256² down to 1²), 7 = unet_128
    discriminator_channels: int = 64    # width of D's first layer (pix2pix ndf)
    discriminator_layers: int = 3       # PatchGAN stride-2 layers: 3 = the 70×70 PatchGAN (30×30 map at 256²)
    norm: Literal["batch", "instance"] = "batch"  # normalisation in G and D (pix2pix: batch)
    dropout: bool = True                # dropout 0.5 in G's deep 8×-wide decoder stages (pix2pix's noise)

    def __post_init__(self) -> None:
        if min(self.generator_channels, self.discriminator_channels) < 1:
            raise FalError("model.generator_channels and model.discriminator_channels must be >= 1")
        if self.depth < 2:
            raise FalError(f"model.depth must be >= 2 (got {self.depth}); 8 is pix2pix's unet_256")
        if self.discriminator_layers < 1:
            raise FalError(f"model.discriminator_layers must be >= 1 (got {self.discriminator_layers})")


@dataclass(frozen=True)
class Pairing:
    """A resolved direction: which stored field is G's input and which its target, with their meaning."""

    input_field: str
    target_field: str
    input_channels: int
    target_channels: int
    depth_range: tuple[float, float] | None  # metres ↔ [-1, 1] for depth fields
    target_is_depth: bool               # the target is a float depth map (depth errors apply)
    meta: dict
    name: str                           # dataset name ('streets', 'cityscapes', …)

    @property
    def makes_photos(self) -> bool:
        """Label map → photo: the FCN-score (a segmenter reads the outputs) applies."""
        return self.input_field.startswith("label") and not self.target_field.startswith("label")

    @property
    def makes_labels(self) -> bool:
        """Photo → colour label map: the outputs are decoded to train ids and scored directly."""
        return self.target_field.startswith("label") and self.target_channels == 3


@functools.lru_cache(maxsize=16)
def resolve_pairing(data: DataConfig) -> Pairing:
    """Read the dataset's meta and the direction; FalError listing the directions for an unknown one."""
    meta = source_meta(data)
    directions = meta.get("directions") or {}
    direction = data.direction or meta.get("default_direction")
    if direction not in directions:
        listed = ", ".join(directions) or "none"
        raise FalError(f"data.direction: {direction!r} is not a direction of this dataset (it has: {listed})")
    input_field, target_field = directions[direction]
    shapes = meta.get("fields") or {}  # prepared: {field: {dtype, shape}}; streets: measured below
    if data.dataset == "streets":
        sample = load_fields(data, "val", count=1)
        shapes = {k: {"shape": list(v.shape[1:]), "dtype": v.dtype.name} for k, v in sample.items()}
    channels = {f: (shapes[f]["shape"][2] if len(shapes[f]["shape"]) == 3 else 1) for f in (input_field,
                                                                                         target_field)}
    depth_range = tuple(meta["depth_range"]) if "depth_range" in meta else None
    for field in (input_field, target_field):
        if shapes[field]["dtype"].startswith("float") and depth_range is None:
            raise FalError(f"{data.root}: field {field!r} is a float map but meta.json has no depth_range; "
                           f"prepare the dataset again")
    return Pairing(input_field, target_field, channels[input_field], channels[target_field], depth_range,
                   shapes[target_field]["dtype"].startswith("float"), meta, source_name(data, meta))


def default_placement(depth: int) -> tuple[int, ...]:
    """The decoder stages at ¼ and ½ of the output size (methods.md §0), when G is deep enough."""
    return tuple(k for k in (2, 1) if k < depth)


def patch_map_size(image_size: int, layers: int) -> int:
    """Side of D's logits map for a square input: each stride-2 layer halves it, each stride-1 one takes 1."""
    size = image_size
    for _ in range(layers):
        size //= 2
    return size - 2


def validate(recipe) -> None:
    """Cross-section checks of a translation recipe (TranslationTask.validate)."""
    data, model = recipe.data, recipe.model
    if data.image_size % 2 ** model.depth:
        raise FalError(f"data.image_size ({data.image_size}) must be a multiple of 2^model.depth = "
                       f"{2 ** model.depth}; lower model.depth or change the size")
    if patch_map_size(data.image_size, model.discriminator_layers) < 1:
        raise FalError(f"model.discriminator_layers ({model.discriminator_layers}) leaves D no patch map "
                       f"at data.image_size {data.image_size}; lower it")
    if recipe.feedback.output == "latent" and recipe.feedback.steps > 1:
        raise FalError(LATENT_REFUSED)
    placement = recipe.feedback.placement
    if placement is not None and any(not 1 <= k < model.depth for k in placement):
        raise FalError(f"feedback.placement: translation stages are 1..{model.depth - 1} (decoder features "
                       f"at 1/2^k of the output size; 2 and 1 are ¼ and ½)")
    if data.dataset == "streets" or (Path(data.root) / "meta.json").is_file():
        resolve_pairing(data)  # a wrong direction fails at load (and --dry-run), not mid-way into training
    # else: prepared data that is not there yet; make_networks says which `fal prepare` makes it
