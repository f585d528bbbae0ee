"""Unconditional image generation (FAL on CelebA 64²): a DCGAN generator with ASTs and a patch discriminator.

G: z → 4×4 → transposed-conv stages (×2 each, BN + ReLU) → tanh image. Stage k has resolution 4·2^k; an AST
modulates the chosen stages after their normalisation (default: the stages at ¼ and ½ output resolution).
D: a DCGAN conv stack that stops at a `d_map_size`² map of logits (no global pooling), so its verdict is
spatial: the same map drives the adversarial loss and, upsampled to the image, is the feedback of step t+1.
Data: a folder written by `fal prepare celeba|images`, or the built-in `shapes` (generated, no download).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from falcli.core.feedback import Unrolled, make_feedback_modules
from falcli.core.files import ImageFiles
from falcli.core.pictures import heatmap, labelled, save_png, tile, to_uint8
from falcli.core.runtime import rand_shard, randn_shard
from falcli.errors import FalError
from falcli.methods.eqgan_sa import make_spatial_encoding, training_code
from falcli.methods.glead import make_decoder
from falcli.nn.dims import conv_transpose_nd, norm_nd
from falcli.tasks.base import Batch, EvaluatePaths, JudgeNeed, latent_width, latents_for  # under EqGAN-SA: latents, then heatmap codes
from falcli.tasks.image.config import IMAGE_SIZES, DataConfig, ImageSource, ModelConfig, default_placement, \
    generator_stages, validate  # noqa: F401  (the sections are part of this module's API)
from falcli.tasks.image.data import SHAPES_SEEDS, ImageDataset, load_images, to_unit_range  # noqa: F401

PREVIEW_COLUMNS = 16                    # samples per step shown in a sample picture


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
                heatmaps: list[torch.Tensor] | None = None, pre_activation: bool = False,
                move_latent: bool = False) -> torch.Tensor:
        """z (B, Z) — under EqGAN-SA followed by a heatmap code —, feedback (B, F, S, S) or None → image
        (B, 3, S, S) in [-1, 1]. `heatmaps`: hand-drawn EqGAN-SA heatmaps that replace the code's."""
        if move_latent:  # feedback.output: latent (falcli/core/feedback.py): this pass moves z, it draws nothing
            return self.feedback.move_latent(z, feedback)
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
        validate(recipe)

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
                                           out_channels=3, cond_channels=0, dims=2, seed=recipe.seed,
                                           latent_dim=recipe.model.latent_dim)
        # The methods' modules too, each from its own RNG stream (methods/eqgan_sa.py, methods/glead.py).
        if recipe.method.eqgan_sa:  # a SEL on the input of every convolution after the first (stage k+1, out)
            inputs = {k + 1: (channels, 4 * 2 ** k) for k, channels in G.stage_channels.items()}
            G.spatial = make_spatial_encoding(recipe.model.latent_dim, size, inputs, recipe.seed)
        if recipe.method.glead:  # D's decoder predicts G's features at ¼ of the image (official: 64² of 256²)
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

    def judge_needs(self, recipe) -> tuple[JudgeNeed, ...]:
        """Shapes data: the shapes classifier at the run's image size, for fid_judge (no download needed)."""
        if recipe.data.source != "shapes":
            return ()
        return (JudgeNeed("judge", "shapes_classifier.yaml", {"data.image_size": recipe.data.image_size}),)

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        """Per step: mean D logit; FID in the shapes judge's feature space (paths.judge); Inception FID when
        its weights are on disk and there are >= 2048 images per side. References: the val split."""
        # keeps --help fast, and every command but evaluation: pytorch-fid and torchvision load here
        from falcli.tasks.image.evaluate import evaluate_image_steps  # keeps --help fast

        paths = paths or EvaluatePaths()
        return evaluate_image_steps(self, G, D, recipe, device, steps, num_samples, say=paths.note,
                                    weights=paths.weights, allow_unofficial=paths.allow_unofficial_weights,
                                    judge=paths.judge)
