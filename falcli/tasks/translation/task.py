"""Image-to-image translation: pix2pix (Isola et al. 2017) with FAL's feedback in the U-Net decoder.

G maps the input image to the output; D sees (input, output) and answers with a patch map; from step 2 on,
G also reads that map, its previous output and the input, through ASTs after the chosen decoder stages.
With feedback.steps: 1 this is pix2pix: U-Net, 70×70 PatchGAN, L1 weight 100, the same code path.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from falcli.errors import FalError
from falcli.core.feedback import Unrolled, make_feedback_modules
from falcli.core.pictures import heatmap, labelled, save_png, tile, to_uint8
from falcli.core.files import ImageFiles
from falcli.tasks.base import Batch, EvaluatePaths
from falcli.tasks.translation import data as paired
from falcli.tasks.translation.nets import PatchDiscriminator, UNetGenerator, decoder_stage_channels, \
    patch_map_size

PICTURE_ROWS = 8  # sample pairs shown in a picture (each as an image row and a D-map row)


@dataclass(frozen=True)
class DataConfig(paired.SourceConfig):
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
    meta = paired.source_meta(data)
    directions = meta.get("directions") or {}
    direction = data.direction or meta.get("default_direction")
    if direction not in directions:
        listed = ", ".join(directions) or "none"
        raise FalError(f"data.direction: {direction!r} is not a direction of this dataset (it has: {listed})")
    input_field, target_field = directions[direction]
    shapes = meta.get("fields") or {}  # prepared: {field: {dtype, shape}}; streets: measured below
    if data.dataset == "streets":
        sample = paired.load_fields(data, "val", count=1)
        shapes = {k: {"shape": list(v.shape[1:]), "dtype": v.dtype.name} for k, v in sample.items()}
    channels = {f: (shapes[f]["shape"][2] if len(shapes[f]["shape"]) == 3 else 1) for f in (input_field,
                                                                                         target_field)}
    depth_range = tuple(meta["depth_range"]) if "depth_range" in meta else None
    for field in (input_field, target_field):
        if shapes[field]["dtype"].startswith("float") and depth_range is None:
            raise FalError(f"{data.root}: field {field!r} is a float map but meta.json has no depth_range; "
                           f"prepare the dataset again")
    return Pairing(input_field, target_field, channels[input_field], channels[target_field], depth_range,
                   shapes[target_field]["dtype"].startswith("float"), meta, paired.source_name(data, meta))


def default_placement(depth: int) -> tuple[int, ...]:
    """The decoder stages at ¼ and ½ of the output size (methods.md §0), when G is deep enough."""
    return tuple(k for k in (2, 1) if k < depth)


def declared_channels(data: DataConfig) -> tuple[int, int]:
    """(input, target) channels of `data.direction` as `fal prepare` writes them; FalError when unknown."""
    from falcli.formats import cityscapes, nyu, pix2pix  # keeps --help fast: nyu imports h5py and scipy

    for preparer in (cityscapes, nyu, pix2pix):
        fields = preparer.DIRECTIONS.get(data.direction)
        if fields:
            return preparer.FIELD_CHANNELS[fields[0]], preparer.FIELD_CHANNELS[fields[1]]
    raise FalError(f"data.root {data.root} is not prepared yet and data.direction {data.direction!r} is not one a "
                   f"preparer writes, so the networks' channels are unknown until `fal prepare` has run")


def _networks(recipe, input_channels: int, target_channels: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(recipe.seed)
    model = recipe.model
    stages = recipe.feedback.placement or default_placement(model.depth)
    feedback = make_feedback_modules(
        recipe.feedback, decoder_stage_channels(model.generator_channels, model.depth, stages),
        out_channels=target_channels, cond_channels=input_channels, dims=2, seed=recipe.seed)
    G = UNetGenerator(input_channels, target_channels, model.generator_channels, model.depth, model.norm,
                      model.dropout, feedback)
    D = PatchDiscriminator(input_channels + target_channels, model.discriminator_channels,
                           model.discriminator_layers, model.norm)
    return G, D


class TranslationTask:
    name = "translation"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 2
    conditional = True
    supports_methods: frozenset[str] = frozenset()
    checkpoint_metrics = ("l1", "psnr", "ssim", "lpips", "fcn", "depth")
    samples_caption = "Per pair: input | t = 1 … T | target; below each step D's map σ(D) (red = fake, blue = real)."
    array_export = None

    def validate(self, recipe) -> None:
        data, model = recipe.data, recipe.model
        if data.image_size % 2 ** model.depth:
            raise FalError(f"data.image_size ({data.image_size}) must be a multiple of 2^model.depth = "
                           f"{2 ** model.depth}; lower model.depth or change the size")
        if patch_map_size(data.image_size, model.discriminator_layers) < 1:
            raise FalError(f"model.discriminator_layers ({model.discriminator_layers}) leaves D no patch map "
                           f"at data.image_size {data.image_size}; lower it")
        placement = recipe.feedback.placement
        if placement is not None and any(not 1 <= k < model.depth for k in placement):
            raise FalError(f"feedback.placement: translation stages are 1..{model.depth - 1} (decoder features "
                           f"at 1/2^k of the output size; 2 and 1 are ¼ and ½)")
        if data.dataset == "streets" or (Path(data.root) / "meta.json").is_file():
            resolve_pairing(data)  # a wrong direction fails at load (and --dry-run), not mid-way into training
        # else: prepared data that is not there yet; make_networks says which `fal prepare` makes it

    def pairing(self, recipe) -> Pairing:
        return resolve_pairing(recipe.data)

    def evaluation_pool(self, recipe) -> int | None:
        return len(self.make_dataset(recipe, "val"))  # scored on the val pairs: never more than there are

    def sample_files(self, recipe) -> ImageFiles:
        """The outputs, stored as the targets are (depth: 16-bit PNG in millimetres)."""
        pairing = self.pairing(recipe)
        depth = pairing.depth_range if pairing.target_is_depth else None
        return ImageFiles(recipe.data.image_size, pairing.target_channels,
                          paired.resize_mode(pairing.target_field, pairing.meta, depth is not None), depth, "outputs")

    def condition_files(self, recipe) -> ImageFiles:
        pairing = self.pairing(recipe)
        return ImageFiles(recipe.data.image_size, pairing.input_channels,
                          paired.resize_mode(pairing.input_field, pairing.meta, False), None, "inputs")

    def make_dataset(self, recipe, split: str) -> paired.PairedDataset:
        return self._dataset(recipe, split, extras=split != "train")

    def _dataset(self, recipe, split: str, extras: bool, count: int | None = None) -> paired.PairedDataset:
        """Items {input, target} plus, for evaluation, {labels (train ids), depth (metres)} where stored."""
        pairing = self.pairing(recipe)
        fields = paired.load_fields(recipe.data, split, count)
        arrays = {"input": fields[pairing.input_field], "target": fields[pairing.target_field]}
        if extras:
            eval_fields = pairing.meta.get("eval_fields", {})
            for key, kind in (("labels", "segmentation"), ("depth", "depth")):
                if eval_fields.get(kind) in fields:
                    arrays[key] = fields[eval_fields[kind]]
        return paired.PairedDataset(arrays)

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        pairing = self.pairing(recipe)
        return _networks(recipe, pairing.input_channels, pairing.target_channels)

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        """From the prepared dataset's meta.json when it is there, else from the channels the preparers write
        for data.direction (a recipe is checked before its data is prepared)."""
        data = recipe.data
        if data.dataset == "streets" or (Path(data.root) / "meta.json").is_file():
            pairing = self.pairing(recipe)
            channels = pairing.input_channels, pairing.target_channels
        else:
            channels = declared_channels(data)
        return (*_networks(recipe, *channels), (channels[0], data.image_size, data.image_size))

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        data, pairing = recipe.data, self.pairing(recipe)
        modes = [paired.resize_mode(f, pairing.meta, paired.is_depth(raw[k]))
                 for f, k in ((pairing.input_field, "input"), (pairing.target_field, "target"))]
        images = [paired.to_network(raw[k], pairing.depth_range) for k in ("input", "target")]
        if training:
            source, target = paired.jitter(images, modes, data.image_size, data.load_size, data.flip)
        else:
            source, target = (paired.resize(x, data.image_size, m) for x, m in zip(images, modes))
        extras = {}
        if "labels" in raw:  # train ids (B, S, S) for the FCN-score; nearest keeps them ids
            labels = raw["labels"][:, None].float()
            extras["labels"] = paired.resize(labels, data.image_size, "nearest")[:, 0].long()
        if "depth" in raw:  # metres (B, S, S) for the depth errors
            extras["depth"] = paired.resize(raw["depth"][:, None].float(), data.image_size, "nearest")[:, 0]
        return Batch(real=target, gen_input=source, condition=source, extras=extras)

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        """The first `count` validation pairs, unjittered (no randomness is needed)."""
        dataset = self._dataset(recipe, "val", extras=True, count=count)
        raw = dataset.__getitems__(list(range(len(dataset))))
        return self.make_batch({k: v.to(device) for k, v in raw.items()}, recipe, training=False)

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.cat([batch.condition.to(sample.dtype), sample], dim=1)  # D judges the pair (pix2pix)

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        """λ·|y − x_t|₁ per step (pix2pix Eq. 3, λ = loss.l1_weight), weighted like the adversarial terms."""
        if not recipe.loss.l1_weight:
            return {}
        return {f"l1/step{t}": weight * recipe.loss.l1_weight * (batch.real - x.float()).abs().mean()
                for t, (weight, x) in enumerate(zip(recipe.feedback.weights, unrolled.samples), start=1)}

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        """Per pair two rows: input | t=1 … t=T | target, and below each step σ(D) (red fake … blue real)."""
        n = min(PICTURE_ROWS, len(batch.real))
        size = tuple(batch.real.shape[2:])
        inputs, targets = to_uint8(batch.condition[:n]), to_uint8(batch.real[:n])
        steps = [to_uint8(x[:n]) for x in unrolled.samples]
        maps = [heatmap(logits[:n], size) for logits in unrolled.logits]
        blank = np.full_like(inputs[0], 255)
        rows = []
        for i in range(n):
            rows.append([inputs[i], *(x[i] for x in steps), targets[i]])
            rows.append([blank, *(m[i] for m in maps), blank])
        columns = ["input", *(f"step {t}" for t in range(1, len(steps) + 1)), "target"]
        save_png(labelled(tile(rows), rows, column_labels=columns, colour_scale=True), path)

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        from falcli.tasks.translation.evaluate import evaluate_translation

        paths = paths or EvaluatePaths()
        return evaluate_translation(G, D, recipe, device, steps, num_samples, lpips_weights=paths.weights,
                                    seg_weights=paths.seg_weights, note=paths.note,
                                    allow_unofficial_weights=paths.allow_unofficial_weights,
                                    class_means=paths.class_means)
