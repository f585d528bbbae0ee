"""Stored arrays ↔ network tensors: uint8 images and depth maps in metres ↔ (B, C, S, S) in [-1, 1], and a resize
that keeps label maps and depth exact (nearest) and clips bicubic overshoot; used by the translation task and by
the sample files that `fal sample` writes and `fal refine` reads back (core/files.py)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def is_depth(array: np.ndarray | torch.Tensor) -> bool:
    """Float fields are depth maps in metres (N, S, S); images are uint8 (N, S, S, 3) or (N, S, S)."""
    return array.dtype in (np.float32, np.float64, torch.float32, torch.float64)


def to_network(x: torch.Tensor, depth_range: tuple[float, float] | None) -> torch.Tensor:
    """Stored batch → (B, C, S, S) float in [-1, 1]: uint8 images /127.5 − 1; depth d ↦ 2(d−lo)/(hi−lo) − 1."""
    if x.dtype == torch.uint8:
        x = x.float().div(127.5).sub(1)
    else:
        lo, hi = depth_range
        x = x.float().sub(lo).mul(2 / (hi - lo)).sub(1).clamp(-1, 1)
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)


def depth_from_network(x: torch.Tensor, depth_range: tuple[float, float]) -> torch.Tensor:
    """Inverse of `to_network` for depth: [-1, 1] → metres."""
    lo, hi = depth_range
    return x.float().clamp(-1, 1).add(1).mul((hi - lo) / 2).add(lo)


def resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(B, C, H, W) → (B, C, size, size); bicubic overshoot is clipped back into [-1, 1]."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
