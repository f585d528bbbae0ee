"""EqGAN-SA (Wang et al., CVPR 2022; methods.md §2): random multi-level heatmaps, spatial encoding layers in G,
and the alignment of D's Grad-CAM attention with those heatmaps (G's loss only).

How the heatmaps travel. EqGAN-SA's G reads (z, H). We keep G's input one tensor: a *heatmap code* of
CODE_SIZE numbers (centre, widths, sub-centre offsets) is appended to each latent, and G renders the heatmaps
from it. So the code is drawn with the latent (from the global RNG in training: a resumed run draws the same
ones; from the task's own generator for sample pictures and evaluation), sliced, batched and checkpointed like
any latent, and every caller of G (the loop, `unroll`, evaluation) works unchanged. Spatial editing — what the
official repository never released — is a hand-set code (`heatmap_code`, `move_centre`) or hand-drawn heatmap
tensors (`G(z, heatmaps=…)`).

A task that supports this method provides:
  G.spatial = SpatialEncoding(...)   G splits z with `spatial.split`, calls `spatial.apply(h, features)` on the
                                     input of each convolution after the first
  D(x, returns="blocks")             → (logits, [outputs of D's downsampling blocks, fine → coarse])
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from falcli.core.runtime import rand_shard, randn_shard

# --- the heatmaps (official `generate_heatmap_multi`) ---

LEVEL_CENTRES = (1, 2, 4)               # centres per level: the whole object, then details, then finer details
CENTRE_STD, CENTRE_CLIP = 0.33, 0.75    # level-1 centre ~ N(0, 0.33²) per coordinate, clipped to ±0.75
OFFSET_RANGE = (0.4, 0.8)               # levels 2 and 3: sub-centre = centre + U(−r, r)² offset
HEATMAP_EPS = 0.01                      # added to every heatmap (the official constant)
# Code layout per sample: centre (y, x) | width1 | offsets2 (2×(y, x)) | widths2 (2) | offsets3 (4×(y, x)) | widths3 (4)
CODE_SIZE = 2 + 1 + 4 + 2 + 8 + 4


def sample_code(rows: int, normal, uniform, shared_width: float | torch.Tensor | None = None) -> torch.Tensor:
    """Random heatmap codes (rows, CODE_SIZE), the official distribution.

    normal(rows, k) and uniform(rows, k) draw the numbers (global RNG in training, a seeded generator for
    fixed batches). `shared_width`: the official draws the level-1 width once per call and shares it across
    the minibatch; pass that u ∈ [0, 1) to replicate it, or None to draw one per sample.
    """
    centre = (normal(rows, 2) * CENTRE_STD).clamp(-CENTRE_CLIP, CENTRE_CLIP)
    u1 = uniform(rows, 1) if shared_width is None else torch.as_tensor(shared_width).reshape(1, 1).expand(rows, 1)
    width1 = 0.5 * (1 + u1.to(centre))
    offsets2 = (uniform(rows, 4) * 2 - 1) * OFFSET_RANGE[0]
    widths2 = (uniform(rows, 2) + 0.1) / 1.4           # ≈ [0.071, 0.786]
    offsets3 = (uniform(rows, 8) * 2 - 1) * OFFSET_RANGE[1]
    widths3 = (uniform(rows, 4) + 0.1) / 2             # ≈ [0.05, 0.55]
    return torch.cat([centre, width1, offsets2, widths2, offsets3, widths3], dim=1)


def unpack_code(code: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, CODE_SIZE) → named parts: centre (B, 2), width1 (B, 1), offsets2 (B, 2, 2), widths2 (B, 2), …"""
    parts = torch.split(code, [2, 1, 4, 2, 8, 4], dim=1)
    names = ("centre", "width1", "offsets2", "widths2", "offsets3", "widths3")
    unpacked = dict(zip(names, parts))
    unpacked["offsets2"] = unpacked["offsets2"].reshape(-1, 2, 2)
    unpacked["offsets3"] = unpacked["offsets3"].reshape(-1, 4, 2)
    return unpacked


def heatmap_code(count: int, centre: tuple[float, float] = (0.0, 0.0), width: float = 0.75,
                 offsets2=None, widths2=None, offsets3=None, widths3=None) -> torch.Tensor:
    """A hand-set code for spatial editing: level-1 centre (y, x) in [−1, 1] (−1 = top/left) and width; the
    sub-centres are offsets from it (so they move with it). Unset sub-levels sit on the centre, mid-width."""
    offsets2 = torch.zeros(2, 2) if offsets2 is None else torch.as_tensor(offsets2, dtype=torch.float32)
    offsets3 = torch.zeros(4, 2) if offsets3 is None else torch.as_tensor(offsets3, dtype=torch.float32)
    widths2 = torch.full((2,), 0.4) if widths2 is None else torch.as_tensor(widths2, dtype=torch.float32)
    widths3 = torch.full((4,), 0.3) if widths3 is None else torch.as_tensor(widths3, dtype=torch.float32)
    one = torch.cat([torch.tensor(centre, dtype=torch.float32), torch.tensor([width]), offsets2.flatten(),
                     widths2, offsets3.flatten(), widths3])
    return one.expand(count, CODE_SIZE).clone()


def move_centre(code: torch.Tensor, centre: tuple[float, float]) -> torch.Tensor:
    """The same codes with the level-1 centre (y, x) moved; sub-centres follow (they are offsets)."""
    moved = code.clone()
    moved[:, :2] = torch.as_tensor(centre, dtype=code.dtype, device=code.device)
    return moved


def render_heatmaps(code: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Codes (B, CODE_SIZE) → heatmaps at size² on the grid p ∈ [−1, 1]² in (y, x) order: level 1 (B, 1, S, S),
    level 2 (B, 2, S, S), level 3 (B, 4, S, S); each exp(−‖p − c‖² / σ) + 0.01 (official: divided by σ)."""
    parts = unpack_code(code.float())
    axis = torch.linspace(-1, 1, size, device=code.device)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")

    def bumps(centres: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:  # (B, K, 2), (B, K) → (B, K, S, S)
        dy = grid_y - centres[..., 0, None, None]
        dx = grid_x - centres[..., 1, None, None]
        return torch.exp(-(dy ** 2 + dx ** 2) / widths[..., None, None]) + HEATMAP_EPS

    centre = parts["centre"][:, None, :]
    return [bumps(centre, parts["width1"]),
            bumps(centre + parts["offsets2"], parts["widths2"]),
            bumps(centre + parts["offsets3"], parts["widths3"])]


# --- G's side: heatmap embedding and spatial encoding layers ---

EMBED_HIDDEN, EMBED_CHANNELS = 16, 32   # per level: conv3×3 (n → 16), conv3×3 (16 → 32), at image resolution
SEL_HIDDEN = 64                         # width of the SEL's shared conv that predicts the scale and shift maps
SEL_RESIDUAL = 0.1                      # the SEL's residual scale ("empirical, for stability" in the official code)
LRELU_GAIN = math.sqrt(2)               # StyleGAN's bias_act lrelu gain


def _conv3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3×3 conv initialised as StyleGAN's equalized-LR layers are at step 0: N(0, 1/fan_in), zero bias."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, 0.0, 1.0 / math.sqrt(in_channels * 9))
    nn.init.zeros_(conv.bias)
    return conv


class HeatmapEmbedding(nn.Module):
    """One level's heatmaps (B, n, S, S) → features Φ (B, 32, S, S): two 3×3 convs with lrelu (the second with
    the official extra gain √0.5)."""

    def __init__(self, centres: int):
        super().__init__()
        self.first = _conv3(centres, EMBED_HIDDEN)
        self.second = _conv3(EMBED_HIDDEN, EMBED_CHANNELS)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.first(heatmaps), 0.2) * LRELU_GAIN
        return F.leaky_relu(self.second(h), 0.2) * LRELU_GAIN * math.sqrt(0.5)


class SpatialEncodingLayer(nn.Module):
    """SEL (methods.md §2.1.3), applied to a convolution's input x (B, C, h, w) with heatmap features Φ:

        a = lrelu(conv(resize(Φ)));  σ, μ = conv(a), conv(a)   (one channel each, broadcast over C)
        y = IN(x)·(1 + σ) + μ;       out = x + 0.1·conv(lrelu(y))
    """

    def __init__(self, channels: int, heatmap_channels: int):
        super().__init__()
        self.shared = _conv3(heatmap_channels, SEL_HIDDEN)
        self.scale = _conv3(SEL_HIDDEN, 1)
        self.shift = _conv3(SEL_HIDDEN, 1)
        self.mix = _conv3(channels, channels)

    def forward(self, x: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        features = F.interpolate(features.to(x.dtype), size=tuple(x.shape[2:]), mode="bilinear",
                                 align_corners=True)
        a = F.leaky_relu(self.shared(features), 0.2) * LRELU_GAIN
        y = F.instance_norm(x) * (1 + self.scale(a)) + self.shift(a)
        return x + SEL_RESIDUAL * self.mix(F.leaky_relu(y, 0.2))


def level_for(resolution: int) -> int:
    """Which heatmap features drive a layer whose input is resolution² (official routing of G blocks 4, 8, 16,
    ≥ 32 read by the input's resolution): 0 = level 1, 1 = level 2, 2 = level 3, 3 = all three concatenated."""
    return {4: 0, 8: 1, 16: 2}.get(resolution, 3 if resolution > 16 else 0)


class SpatialEncoding(nn.Module):
    """Everything EqGAN-SA adds to G: the three heatmap embeddings and one SEL per convolution input.

    `layer_inputs` maps a name of G's convolution (the stage it feeds) to (channels, resolution) of its input.
    """

    def __init__(self, latent_dim: int, image_size: int, layer_inputs: dict[int, tuple[int, int]]):
        super().__init__()
        self.latent_dim, self.image_size = latent_dim, image_size
        self.embed = nn.ModuleList(HeatmapEmbedding(n) for n in LEVEL_CENTRES)
        self.layers = nn.ModuleDict({
            str(name): SpatialEncodingLayer(channels, EMBED_CHANNELS * (3 if level_for(size) == 3 else 1))
            for name, (channels, size) in layer_inputs.items()
        })

    def split(self, gen_input: torch.Tensor, heatmaps: list[torch.Tensor] | None = None):
        """G's input (B, Z + CODE_SIZE) → z (B, Z) and heatmap features; hand-drawn `heatmaps` (a list of
        three (B, n, S, S) tensors) replace those rendered from the code."""
        z, code = gen_input[:, :self.latent_dim], gen_input[:, self.latent_dim:]
        if heatmaps is None:
            if code.shape[1] != CODE_SIZE:
                raise ValueError(f"an EqGAN-SA generator reads z ({self.latent_dim}) followed by a heatmap code "
                                 f"({CODE_SIZE}); got {gen_input.shape[1]} numbers per sample")
            heatmaps = render_heatmaps(code, self.image_size)
        features = [embed(h.to(z.dtype)) for embed, h in zip(self.embed, heatmaps)]
        return z, features + [torch.cat(features, dim=1)]

    def apply(self, name: int, x: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        if str(name) not in self.layers:
            return x
        return self.layers[str(name)](x, features[level_for(x.shape[-1])])


def make_spatial_encoding(latent_dim: int, image_size: int, layer_inputs: dict[int, tuple[int, int]],
                          seed: int) -> SpatialEncoding:
    """Built from its own RNG stream, so the backbone and D start from the same weights as without EqGAN-SA."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 104_729)
        return SpatialEncoding(latent_dim, image_size, layer_inputs)


# --- D's attention (Grad-CAM) and the alignment loss (official `compute_GradCam_multi`, G's loss) ---

ALIGN_LEVELS = 3                        # D's three coarsest blocks ↔ heatmap levels 1, 2, 3


def gradcam_weights(D: nn.Module, sample: torch.Tensor) -> list[torch.Tensor]:
    """α_ℓ,c: the spatial mean of ∂ Σ softplus(−D(x̂)) / ∂A_ℓ for D's three coarsest blocks (coarse → fine).

    Constants (no graph to G): computed on a detached copy, with D in eval mode as in the official code.
    """
    was_training = D.training
    D.eval()
    try:
        with torch.enable_grad():
            x = sample.detach().clone().requires_grad_(True)
            logits, blocks = D(x, returns="blocks")
            chosen = blocks[::-1][:ALIGN_LEVELS]
            with torch.autocast(x.device.type, enabled=False):  # a backward pass: outside autocast (AMP docs)
                grads = torch.autograd.grad(F.softplus(-logits.float()).sum(), chosen)
    finally:
        D.train(was_training)
    return [g.mean(dim=(2, 3), keepdim=True).detach() for g in grads]


def attention_maps(blocks: list[torch.Tensor], weights: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """M_ℓ = Σ_c ReLU(α_ℓ,c · A_ℓ,c) (ReLU per channel, as the official code), upsampled to size² and min-max
    normalised per sample (min and max detached). A flat map gives zeros instead of NaN."""
    maps = []
    for block, alpha in zip(blocks[::-1][:ALIGN_LEVELS], weights):
        m = torch.relu(alpha * block).sum(dim=1, keepdim=True).float()
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=True)
        low = m.amin(dim=(2, 3), keepdim=True).detach()
        high = m.amax(dim=(2, 3), keepdim=True).detach()
        m = (m - low) / (high - low).clamp_min(1e-8)
        maps.append(torch.nan_to_num(m, nan=0.0, posinf=1.0, neginf=0.0))
    return maps


def alignment_targets(code: torch.Tensor, size: int) -> list[torch.Tensor]:
    """T_ℓ: level 1 as is (values in (0.01, 1.01]); levels 2 and 3 averaged over their centres, then min-max
    normalised per sample."""
    levels = render_heatmaps(code, size)
    targets = [levels[0]]
    for level in levels[1:]:
        mean = level.mean(dim=1, keepdim=True)
        low, high = mean.amin(dim=(2, 3), keepdim=True), mean.amax(dim=(2, 3), keepdim=True)
        targets.append((mean - low) / (high - low).clamp_min(1e-8))
    return targets


def hard_l1(prediction: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """Hard-pixel mining: the mean |error| over elements above `threshold` if more than one is, else over all;
    non-finite entries dropped. Written without boolean indexing, so the step never waits on the device."""
    error = (prediction - target).abs()
    finite = torch.isfinite(error)
    error = torch.where(finite, error, torch.zeros_like(error))
    hard = finite & (error > threshold)
    n_hard, n_all = hard.sum(), finite.sum().clamp_min(1)
    mined = (error * hard).sum() / n_hard.clamp_min(1)
    return torch.where(n_hard > 1, mined, error.sum() / n_all)


def alignment_loss(D: nn.Module, sample: torch.Tensor, code: torch.Tensor, threshold: float) -> torch.Tensor:
    """L_align = Σ_ℓ hardL1(M̃_ℓ, T_ℓ) for one batch of samples; differentiable into G through D's activations."""
    weights = gradcam_weights(D, sample)
    _, blocks = D(sample, returns="blocks")     # the graph to G: D is frozen, its activations are not
    size = sample.shape[-1]
    maps = attention_maps(blocks, weights, size)
    return sum(hard_l1(m, t, threshold) for m, t in zip(maps, alignment_targets(code, size)))


def generator_terms(recipe, G, D, unrolled, batch) -> dict[str, torch.Tensor]:
    """The alignment loss on every feedback step's samples, weighted like that step's adversarial loss."""
    latent_dim = recipe.model.latent_dim
    code = batch.gen_input[:, latent_dim:]
    total = sum(weight * alignment_loss(D, sample, code, recipe.method.align_threshold)
                for weight, sample in zip(recipe.feedback.weights, unrolled.samples))
    return {"align": recipe.method.align_weight * total}


# --- where the codes come from ---

def training_code(rows: int, device: torch.device) -> torch.Tensor:
    """Codes for a training batch from the global RNG (a resumed run draws the same), global-batch aware."""
    shared = torch.rand((), device=device)  # one level-1 width per (global) minibatch; every process draws it
    return sample_code(rows, lambda *shape: randn_shard(*shape, device=device),
                       lambda *shape: rand_shard(*shape, device=device), shared)


def fixed_code(count: int, generator: torch.Generator) -> torch.Tensor:
    """Codes for sample pictures and evaluation from the task's own generator; one width per sample, so the
    evaluated samples cover the width's range (each sample's width has the training distribution)."""
    return sample_code(count, lambda *shape: torch.randn(*shape, generator=generator),
                       lambda *shape: torch.rand(*shape, generator=generator))
