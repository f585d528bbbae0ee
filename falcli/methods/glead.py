"""GLeaD (Bai et al., CVPR 2023; methods.md §3): the generator leads a task for the discriminator.

D gets a decoder on its multi-scale features that predicts G's own intermediate features for the image D was
shown; the frozen G decodes that prediction back into an image, which must match the input: LPIPS (or MSE)
weighted 10 on real images and 3 on generated ones, in D's update only. G's adversarial objective is unchanged.

A task that supports this method provides:
  D.decoder = ReconstructionDecoder(...)   and   D(x, returns="reconstruction") → (logits, predicted G features)
  G.decode(features)                        → the image G's later layers make from those features, without
                                              changing G (no gradient into G's weights, no running statistics)
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from falcli.console import error_console
from falcli.errors import FalError
from falcli.metrics import weights  # weights.ALEXNET_LPIPS read at use: tests substitute the spec

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B, 3, H, W) ×2 in [-1, 1] → (B,)


def _conv1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1×1 conv initialised as StyleGAN's equalized-LR layers are at step 0: N(0, 1/fan_in), zero bias."""
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.normal_(conv.weight, 0.0, 1.0 / math.sqrt(in_channels))
    nn.init.zeros_(conv.bias)
    return conv


class ReconstructionDecoder(nn.Module):
    """D's block outputs at resolutions up to `resolution` (G's, where the decoding starts) → G's features there.

    U-Net-like and purely linear, as the official decoder: start from D's coarsest block; at each finer one,
    a 1×1 conv, ×2 upsampling (bilinear; the official uses StyleGAN's FIR filter) and concatenation with D's
    block at that resolution; a 1×1 head maps to G's channel count. The linearity keeps the representational
    work in D's backbone, which is the point of the method.
    """

    def __init__(self, block_channels: list[int], out_channels: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        widths = [block_channels[0]] + [2 * c for c in block_channels[1:]]  # after each concatenation
        self.up = nn.ModuleList(_conv1(widths[k], block_channels[k + 1]) for k in range(len(block_channels) - 1))
        self.head = _conv1(widths[-1], out_channels)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """blocks: D's block outputs, fine → coarse (those finer than `resolution` are not used)."""
        chosen = [b for b in blocks[::-1] if b.shape[-1] <= self.resolution]
        y = chosen[0]
        for conv, feature in zip(self.up, chosen[1:]):
            y = torch.cat([F.interpolate(conv(y), scale_factor=2, mode="bilinear", align_corners=False), feature], 1)
        return self.head(y)


def make_decoder(block_channels: list[int], out_channels: int, resolution: int, seed: int) -> ReconstructionDecoder:
    """Built from its own RNG stream, so the backbone and D start from the same weights as without GLeaD."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 130_363)
        return ReconstructionDecoder(block_channels, out_channels, resolution)


# --- the distance ---

_DISTANCES: dict[tuple[str, str], Distance] = {}


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def distance_for(kind: str, device: torch.device) -> Distance:
    """The reconstruction distance, built once per process: 'mse', or 'lpips' (v0.1, AlexNet trunk found on
    disk as `fal evaluate` finds it). Without the trunk weights GLeaD falls back to MSE and says so loudly."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" name one distance
        device = torch.device("cuda", torch.cuda.current_device())
    key = (kind, str(device))
    if key not in _DISTANCES:
        _DISTANCES[key] = mse if kind == "mse" else _lpips_or_mse(torch.device(device))
    return _DISTANCES[key]


def _lpips_or_mse(device: torch.device) -> Distance:
    if not any(p.is_file() for p in weights._candidates(weights.ALEXNET_LPIPS.filename)):
        error_console.print(
            f"[bold yellow]warning: GLeaD falls back to MSE[/]: method.glead_distance is lpips, but the AlexNet "
            f"trunk {weights.ALEXNET_LPIPS.filename} is not in {weights.hub_checkpoint_dir()} (or $FAL_WEIGHTS_DIR); "
            f"this run's reconstruction loss is MSE. Download {weights.ALEXNET_LPIPS.url} there for LPIPS, or set "
            f"method.glead_distance: mse to choose MSE explicitly", soft_wrap=True)
        return mse
    try:
        path, _ = weights.find_weights(weights.ALEXNET_LPIPS.filename, None, weights.ALEXNET_LPIPS.sha256_prefix)
    except FalError as error:  # a wrong file is an error; `fal train` has no --allow-unofficial-weights
        raise FalError(f"GLeaD's LPIPS: {str(error).split(';')[0]}; put the official file there, or set "
                       f"method.glead_distance: mse") from None
    # keeps --help fast, and every run without GLeaD's LPIPS: lpips and torchvision load here
    import lpips as lpips_pkg  # keeps --help fast

    from falcli.metrics.lpips import _read_state_dict, _trunk_from_torchvision  # keeps --help fast

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`; harmless here
        warnings.simplefilter("ignore")
        model = lpips_pkg.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    _trunk_from_torchvision(model.net, _read_state_dict(path), path)
    model = model.to(device).eval().requires_grad_(False)  # a fixed metric: gradients flow through, not into it

    def lpips_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return model(a.float(), b.float()).flatten()
    return lpips_distance


# --- the loss (D's step; G frozen) ---

def reconstruction(G: nn.Module, D: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """What the frozen G decodes from D's prediction for `image`."""
    _, predicted = D(image, returns="reconstruction")
    return G.decode(predicted)


def discriminator_terms(recipe, G, D, real_input, fakes, batch) -> dict[str, torch.Tensor]:
    """λ_r·dist(G(D(x)), x) on the reals and λ_f·dist(G(D(x̂)), x̂) on the fakes (averaged over the steps that
    D trains on). The targets are constants; only D and its decoder get gradients."""
    method = recipe.method
    distance = distance_for(method.glead_distance, real_input.device)
    real = distance(reconstruction(G, D, real_input), real_input.detach()).mean()
    fake = sum(distance(reconstruction(G, D, x), x.detach()).mean() for x in fakes) / len(fakes)
    return {"glead_real": method.glead_real_weight * real, "glead_fake": method.glead_fake_weight * fake}
