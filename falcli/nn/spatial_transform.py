"""The adaptive spatial transform (AST) and the feedback encoder: how D's verdict enters the generator.

FAL (Huh, Sun & Zhang, CVPR 2019) predicts per-location scale and shift maps from the feedback and modulates
the generator's features with them (the closest published equation is SPADE, Park et al. 2019, Eq. 1).
"""
from __future__ import annotations

import torch
from torch import nn

from falcli.nn.dims import conv_nd, norm_nd, resize_to, zero_module


class FeedbackEncoder(nn.Module):
    """Turns the raw feedback (D's map, previous output, condition; (B, F, *S)) into AST input features.

    Shared by every AST of a generator, so the feedback is read once per step, at output resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int):
        super().__init__()
        self.net = nn.Sequential(
            conv_nd(dims, in_channels, out_channels, 3), nn.LeakyReLU(0.2),
            conv_nd(dims, out_channels, out_channels, 3), nn.LeakyReLU(0.2),
        )

    def forward(self, feedback: torch.Tensor) -> torch.Tensor:  # (B, F, *S) -> (B, out_channels, *S)
        return self.net(feedback)


class AdaptiveSpatialTransform(nn.Module):
    """Modulates features with per-location affine maps predicted from the feedback.

    feature (B, C, *S), encoded feedback (B, E, *S') → (B, C, *S); the feedback is resized to S.
    S is () for toy vectors, (H, W) for images and (D, H, W) for voxels.
      sft:   out = h · (1 + γ) + β
      spade: out = norm(h) · (1 + γ) + β          (norm without affine parameters)
    The γ and β heads start at zero, so an SFT layer is the identity at initialisation: feedback starts as
    "no change" and training decides how much to trust it. (SPADE is not the identity: it normalises h.)
    """

    def __init__(self, channels: int, feedback_channels: int, dims: int, hidden: int = 64,
                 transform: str = "sft"):
        super().__init__()
        if transform not in ("sft", "spade"):
            raise ValueError(f"unknown transform {transform!r}")
        self.shared = nn.Sequential(conv_nd(dims, feedback_channels, hidden, 3), nn.ReLU())
        self.gamma = zero_module(conv_nd(dims, hidden, channels, 3))
        self.beta = zero_module(conv_nd(dims, hidden, channels, 3))
        self.norm = norm_nd(dims, "instance", channels, affine=False) if transform == "spade" else None

    def forward(self, h: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
        hidden = self.shared(resize_to(feedback, tuple(h.shape[2:])))
        base = self.norm(h) if self.norm is not None else h
        return base * (1 + self.gamma(hidden)) + self.beta(hidden)


class FeedbackModules(nn.Module):
    """The feedback encoder plus one AST per chosen generator stage.

    A generator calls `encode` once per step and `apply(stage, h, encoded)` after each of its stages;
    stages without an AST pass through untouched.
    """

    def __init__(self, stage_channels: dict[int, int], in_channels: int, dims: int, encoder_channels: int,
                 hidden_channels: int, transform: str):
        super().__init__()
        self.encoder = FeedbackEncoder(in_channels, encoder_channels, dims)
        self.transforms = nn.ModuleDict({
            str(stage): AdaptiveSpatialTransform(channels, encoder_channels, dims, hidden_channels, transform)
            for stage, channels in stage_channels.items()
        })

    def encode(self, feedback: torch.Tensor) -> torch.Tensor:
        return self.encoder(feedback)

    def apply(self, stage: int, h: torch.Tensor, encoded: torch.Tensor | None) -> torch.Tensor:
        if encoded is None or str(stage) not in self.transforms:
            return h
        return self.transforms[str(stage)](h, encoded)
