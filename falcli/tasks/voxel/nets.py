"""The voxel task's networks: 3D-GAN's generator (with the feedback ASTs at chosen stages) and a 3D conv D
whose output is a 4³ map of logits."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from falcli.errors import FalError
from falcli.nn.dims import conv_nd, conv_transpose_nd, norm_nd
from falcli.tasks.voxel.config import MAP_SIZE, ModelConfig, num_stages  # noqa: F401  (part of this module's API)

def generator_widths(model: ModelConfig, resolution: int) -> list[int]:
    """Channels of G's stages 0..n-1 (resolutions 4³, 8³, … R/2); e.g. 64³, base 64 → [512, 256, 128, 64]."""
    n = num_stages(resolution)
    return [model.base_channels * 2 ** (n - 1 - stage) for stage in range(n)]


def default_placement(resolution: int) -> tuple[int, ...]:
    """The stages at ¼ and ½ of the output resolution (methods.md §0)."""
    n = num_stages(resolution)
    return (n - 2, n - 1)


# --- networks ---

def batch_norm(channels: int) -> nn.Module:
    """3D-GAN's BN, always with the statistics of the batch it normalises, in training and at sampling alike.

    With feedback, features differ from step to step; running averages would mix the steps, and in eval mode
    they broke step 1 (measured on airplanes at 200 iterations: MMD 0.81 with running averages, 0.36 with
    batch statistics). Batch statistics normalise every pass by its own batch, as in training.
    """
    return norm_nd(3, "batch", channels, running_stats=False)


class VoxelGenerator(nn.Module):
    """3D-GAN generator: z (B, Z) → 4³ → one stride-2 transposed conv per stage (BN, ReLU) → (B, 1, R, R, R),
    sigmoid occupancy in [0, 1]. With feedback, an AST modulates a stage's normalised features before its ReLU.
    """

    def __init__(self, model: ModelConfig, resolution: int, feedback: nn.Module | None):
        super().__init__()
        widths = generator_widths(model, resolution)
        first = nn.Sequential(conv_transpose_nd(3, model.latent_dim, widths[0], MAP_SIZE, bias=False),
                              batch_norm(widths[0]))  # (B, Z, 1, 1, 1) → (B, C0, 4, 4, 4)
        self.stages = nn.ModuleList([first] + [
            nn.Sequential(conv_transpose_nd(3, a, b, 4, stride=2, padding=1, bias=False), batch_norm(b))
            for a, b in zip(widths[:-1], widths[1:])
        ])
        self.out = conv_transpose_nd(3, widths[-1], 1, 4, stride=2, padding=1)
        self.feedback = feedback

    output_activation = "sigmoid"       # `pre_activation=True` returns the logits (residual feedback)

    def forward(self, z: torch.Tensor, feedback: torch.Tensor | None = None,
                pre_activation: bool = False, move_latent: bool = False) -> torch.Tensor:
        if move_latent:  # feedback.output: latent (falcli/core/feedback.py): this pass moves z, it draws nothing
            return self.feedback.move_latent(z, feedback)
        encoded = self.feedback.encode(feedback) if feedback is not None and self.feedback is not None else None
        h = z.view(*z.shape, 1, 1, 1)
        for stage, block in enumerate(self.stages):
            h = block(h)                                     # (B, C_s, 4·2^s, 4·2^s, 4·2^s)
            if self.feedback is not None:
                h = self.feedback.apply(stage, h, encoded)
            h = torch.relu(h)
        out = self.out(h)
        return out if pre_activation else torch.sigmoid(out)  # (B, 1, R, R, R) occupancy


class VoxelDiscriminator(nn.Module):
    """3D-GAN discriminator without its last (global) layer: stride-2 conv3d stages down to a 4³ logits map.

    (B, 1, R, R, R) → (B, 1, 4, 4, 4). No global pooling: each logit judges one region, and that map is fed back.
    """

    def __init__(self, model: ModelConfig, resolution: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for stage in range(num_stages(resolution)):
            out = model.base_channels * 2 ** stage
            layers.append(conv_nd(3, width, out, 4, stride=2, padding=1))
            if stage > 0:  # no norm on the input layer (DCGAN)
                layers.append(norm_nd(3, model.discriminator_norm, out, running_stats=False))
            layers.append(nn.LeakyReLU(0.2))
            width = out
        layers.append(conv_nd(3, width, 1, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
