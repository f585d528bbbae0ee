"""Unconditional image generation (FAL on CelebA 64²): a DCGAN generator with ASTs and a patch discriminator.

G: z → 4×4 → transposed-conv stages (×2 each, BN + ReLU) → tanh image. Stage k has resolution 4·2^k; an AST
modulates the chosen stages after their normalisation (default: the stages at ¼ and ½ output resolution).
D: a DCGAN conv stack that stops at a `d_map_size`² map of logits (no global pooling), so its verdict is
spatial: the same map drives the adversarial loss and, upsampled to the image, is the feedback of step t+1.
Data: a folder written by `fal prepare celeba|images`, or the built-in `shapes` (generated, no download).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from falcli.errors import FalError
from falcli.core.feedback import Unrolled, make_feedback_modules
from falcli.nn.dims import conv_transpose_nd, norm_nd
from falcli.core.runtime import rand_shard, randn_shard
from falcli.core.files import ImageFiles
from falcli.tasks.base import Batch, EvaluatePaths, latent_width, latents_for  # under EqGAN-SA: latents, then heatmap codes

IMAGE_SIZES = (32, 64, 128)
SHAPES_SEEDS = {"train": 0, "val": 1, "test": 2}  # fixed: every run and the judge see the same shapes
PREVIEW_COLUMNS = 16                    # samples per step shown in a sample picture


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
    return int(np.log2(image_size // 4))


def default_placement(image_size: int) -> tuple[int, ...]:
    """The stages at ¼ and ½ of the output resolution (methods.md §0)."""
    last = generator_stages(image_size) - 1
    return (last - 1, last)


# --- data ---

def load_images(data: ImageSource, split: str) -> dict[str, np.ndarray]:
    """A split's fields: images (N, S, S, 3) uint8 (a memmap for prepared data) and labels (N,) if present.

    Prepared folders without a val split (`fal prepare images` writes train only) fall back to train when
    val is asked for; the evaluation then compares with training images.
    """
    if data.source == "shapes":
        from falcli.data.shapes import make_shapes

        count = data.shapes_train if split == "train" else data.shapes_val
        return make_shapes(count, data.image_size, SHAPES_SEEDS.get(split, SHAPES_SEEDS["test"]))
    from falcli.formats.store import load_split, read_meta

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


# --- networks ---

class ImageGenerator(nn.Module):
    """DCGAN generator; `feedback` (FeedbackModules or None) modulates the chosen stages after their norm."""

    output_activation = "tanh"          # `pre_activation=True` returns the value before it (residual feedback)

    def __init__(self, model: ModelConfig, image_size: int, feedback: nn.Module | None):
        super().__init__()
        n = generator_stages(image_size)
        widths = [model.g_channels * 2 ** (n - 1 - k) for k in range(n)]  # 64²: 512, 256, 128, 64
        self.stages = nn.ModuleList()
        for k, width in enumerate(widths):
            conv = (conv_transpose_nd(2, model.latent_dim, width, 4, 1, 0, bias=False) if k == 0
                    else conv_transpose_nd(2, widths[k - 1], width, 4, 2, 1, bias=False))
            self.stages.append(nn.Sequential(conv, norm_nd(2, "batch", width, running_stats=False)))
        self.out = conv_transpose_nd(2, widths[-1], 3, 4, 2, 1, bias=False)
        self.feedback = feedback
        self.spatial = None  # EqGAN-SA's heatmap embedding and SELs (falcli/methods/eqgan_sa.py), when on
        self.stage_channels = dict(enumerate(widths))

    def forward(self, z: torch.Tensor, feedback: torch.Tensor | None = None,
                heatmaps: list[torch.Tensor] | None = None, pre_activation: bool = False) -> torch.Tensor:
        """z (B, Z) — under EqGAN-SA followed by a heatmap code —, feedback (B, F, S, S) or None → image
        (B, 3, S, S) in [-1, 1]. `heatmaps`: hand-drawn EqGAN-SA heatmaps that replace the code's."""
        encoded = self.feedback.encode(feedback) if feedback is not None and self.feedback else None
        spatial = None
        if self.spatial is not None:
            z, spatial = self.spatial.split(z, heatmaps)
        h = z[:, :, None, None]
        for stage, block in enumerate(self.stages):
            h = block(h)
            if self.feedback is not None:
                h = self.feedback.apply(stage, h, encoded)
            h = torch.relu(h)
            if spatial is not None:  # EqGAN-SA: a SEL on the input of the next convolution
                h = self.spatial.apply(stage + 1, h, spatial)
        out = self.out(h)
        return out if pre_activation else torch.tanh(out)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """GLeaD: the image G's layers after a stage make from features h shaped like that stage's output.

        G must not change here (it runs in D's step): batch norm uses the batch's statistics without updating
        the running averages, and the caller has frozen the weights. No feedback and no SEL: a step-1 pass.
        """
        first = int(np.log2(h.shape[-1] // 4)) + 1  # stage k outputs 4·2^k px
        for conv, norm in self.stages[first:]:
            h = F.batch_norm(conv(h), None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
            h = torch.relu(h)
        return torch.tanh(self.out(h))


class PatchDiscriminator(nn.Module):
    """DCGAN discriminator cut at a map_size² resolution: image (B, 3, S, S) → logits (B, 1, m, m)."""

    def __init__(self, model: ModelConfig, image_size: int):
        super().__init__()
        map_size = model.map_size(image_size)
        layers: list[nn.Module] = []
        self.block_shapes: list[tuple[int, int]] = []  # (channels, side) of each block's output, fine → coarse
        width, size, out = 3, image_size, model.d_channels
        while size > map_size:  # stride-2 4×4 convolutions, DCGAN style: no norm on the first one
            layers += [nn.Conv2d(width, out, 4, 2, 1, bias=False)]
            if width != 3:
                layers.append(norm_nd(2, model.d_norm, out, running_stats=False))
            layers.append(nn.LeakyReLU(0.2))
            width, size, out = out, size // 2, min(out * 2, model.d_channels * 8)
            self.block_shapes.append((width, size))
        layers.append(nn.Conv2d(width, 1, 3, 1, 1))  # one logit per patch, no global pooling
        self.net = nn.Sequential(*layers)
        self.decoder = None  # GLeaD's reconstruction decoder (falcli/methods/glead.py), when on

    def forward(self, x: torch.Tensor, returns: str = "logits"):
        """returns "logits" (the map), "blocks" → (logits, [downsampling blocks' outputs, fine → coarse]) for
        EqGAN-SA's Grad-CAM, or "reconstruction" → (logits, GLeaD decoder's output), inside one forward so
        that DDP sees the decoder."""
        if returns == "logits":
            return self.net(x)
        blocks = []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                blocks.append(x)
        return (x, blocks) if returns == "blocks" else (x, self.decoder(blocks))


def _dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) convolutions and N(1, 0.02) norm scales (Radford et al. 2016, §4)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --- the task ---

class ImageTask:
    name = "image"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 2
    conditional = False
    supports_methods = frozenset({"eqgan_sa", "glead"})
    checkpoint_metrics: tuple[str, ...] = ()  # scored by fid/kid and all
    samples_caption = ("First row: real data; then for each step t its samples and, below, D's map σ(D) "
                       "(red = fake, blue = real).")
    array_export = None

    def validate(self, recipe) -> None:
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

    def make_dataset(self, recipe, split: str) -> torch.utils.data.Dataset:
        return ImageDataset(load_images(recipe.data, split)["images"])

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(recipe.seed)
        size = recipe.data.image_size
        G = ImageGenerator(recipe.model, size, feedback=None)
        D = PatchDiscriminator(recipe.model, size)
        G.apply(_dcgan_init), D.apply(_dcgan_init)
        # Feedback modules come last, from their own RNG stream: the backbone and D are the same with T = 1.
        placement = recipe.feedback.placement or default_placement(size)
        G.feedback = make_feedback_modules(recipe.feedback, {s: G.stage_channels[s] for s in placement},
                                           out_channels=3, cond_channels=0, dims=2, seed=recipe.seed)
        # The methods' modules too, each from its own RNG stream (methods/eqgan_sa.py, methods/glead.py).
        if recipe.method.eqgan_sa:  # a SEL on the input of every convolution after the first (stage k+1, out)
            from falcli.methods.eqgan_sa import make_spatial_encoding

            inputs = {k + 1: (channels, 4 * 2 ** k) for k, channels in G.stage_channels.items()}
            G.spatial = make_spatial_encoding(recipe.model.latent_dim, size, inputs, recipe.seed)
        if recipe.method.glead:  # D's decoder predicts G's features at ¼ of the image (official: 64² of 256²)
            from falcli.methods.glead import make_decoder

            resolution = size // 4
            chosen = [channels for channels, side in D.block_shapes[::-1] if side <= resolution]
            D.decoder = make_decoder(chosen, G.stage_channels[generator_stages(size) - 2], resolution, recipe.seed)
        return G, D

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        return (*self.make_networks(recipe), (latent_width(recipe),))

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        real = to_unit_range(raw["images"])
        if training and recipe.data.flip:
            flip = rand_shard(len(real), device=real.device) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        z = randn_shard(len(real), recipe.model.latent_dim, device=real.device)
        if recipe.method.eqgan_sa:  # G's input: z, then a fresh heatmap code (methods/eqgan_sa.py)
            from falcli.methods.eqgan_sa import training_code

            z = torch.cat([z, training_code(len(real), real.device)], dim=1)
        return Batch(real=real, gen_input=z)

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        """Latents from their own generator (the same for a plain and a FAL run of one seed) and val images."""
        z = latents_for(recipe, count, recipe.seed + 1)
        data = dataclasses.replace(recipe.data, shapes_val=PREVIEW_COLUMNS)  # shapes: generate only those shown
        shown = load_images(data, "val")["images"][:PREVIEW_COLUMNS]
        real = to_unit_range(torch.from_numpy(np.array(shown)))
        real = real[torch.arange(count) % len(real)]
        return Batch(real=real.to(device), gen_input=z.to(device))

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sample

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        return {}

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        """Rows: real images, then for each step t its samples and D's map on them (red = fake, blue = real)."""
        from falcli.core.pictures import heatmap, labelled, save_png, tile, to_uint8

        count = min(PREVIEW_COLUMNS, len(batch.gen_input))
        size = tuple(unrolled.samples[0].shape[2:])
        rows, labels = [list(to_uint8(batch.real[:count]))], ["real"]
        for t, (sample, logits) in enumerate(zip(unrolled.samples, unrolled.logits), start=1):
            rows.append(list(to_uint8(sample[:count])))
            rows.append(list(heatmap(logits[:count], size)))
            labels += [f"step {t}", f"D {t}"]
        save_png(labelled(tile(rows), rows, row_labels=labels, colour_scale=True), path)

    def evaluation_pool(self, recipe) -> int | None:
        return None

    def sample_files(self, recipe) -> ImageFiles:
        return ImageFiles(recipe.data.image_size, 3)

    def condition_files(self, recipe) -> None:
        return None

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        """Per step: mean D logit; FID in the shapes judge's feature space (shapes data); Inception FID when
        its weights are on disk and there are >= 2048 images per side. References: the val split."""
        from falcli.commands.evaluate.fid import evaluate_image_steps

        paths = paths or EvaluatePaths()
        return evaluate_image_steps(self, G, D, recipe, device, steps, num_samples, say=paths.note,
                                    weights=paths.weights, allow_unofficial=paths.allow_unofficial_weights)
