"""Voxel-grid shape metrics: IoU, coverage and minimum matching distance (Achlioptas et al. 2018) with 1 − IoU.

Inputs are boolean occupancy grids; thresholding probabilities is the caller's choice, so `binarize` is explicit.
"""
from __future__ import annotations

import numpy as np
import torch

from falcli.errors import FalError

ArrayLike = np.ndarray | torch.Tensor

_ROW_CHUNK = 256


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def binarize(grid: ArrayLike, threshold: float = 0.5) -> torch.Tensor:
    """Occupancy probabilities → bool grid (grid > threshold)."""
    return _as_tensor(grid) > threshold


def _as_bool(x: ArrayLike) -> torch.Tensor:
    t = _as_tensor(x)
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise FalError("voxel grids must be boolean or 0/1; threshold occupancy probabilities first (e.g. > 0.5)")
        t = t != 0
    return t


def voxel_iou(a: ArrayLike, b: ArrayLike) -> float:
    """IoU = |a ∧ b| / |a ∨ b| of two boolean grids of one shape; two empty grids count as identical (1.0)."""
    x, y = _as_bool(a), _as_bool(b)
    if x.shape != y.shape:
        raise FalError(f"voxel grids differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    union = int((x | y).sum())
    return 1.0 if union == 0 else int((x & y).sum()) / union


def pairwise_iou(A: ArrayLike, B: ArrayLike, device: str | torch.device | None = None) -> torch.Tensor:
    """IoU of every pair, A (N, R, R, R) × B (M, R, R, R) → float64 (N, M); empty vs empty is 1.

    |a ∧ b| = a·b on flattened 0/1 vectors (one matmul), |a ∨ b| = |a| + |b| − |a ∧ b|. float32 counts are exact
    up to 2^24 occupied voxels (R <= 256).
    """
    x, y = _as_bool(A), _as_bool(B)
    if x.ndim < 2 or x.shape[1:] != y.shape[1:] or len(x) == 0 or len(y) == 0:
        raise FalError(
            f"voxel batches must be non-empty (N, R, R, R) of one grid size, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    xf = x.reshape(len(x), -1).to(device=device, dtype=torch.float32)
    yf = y.reshape(len(y), -1).to(device=device, dtype=torch.float32)
    y_count = yf.sum(dim=1)
    rows = []
    for start in range(0, len(xf), _ROW_CHUNK):
        xc = xf[start : start + _ROW_CHUNK]
        inter = (xc @ yf.T).double()
        union = xc.sum(dim=1, keepdim=True).double() + y_count[None].double() - inter
        rows.append(torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)))
    return torch.cat(rows).cpu()


def _coverage(iou: torch.Tensor) -> float:
    return len(torch.unique(iou.argmax(dim=1))) / iou.shape[1]


def _mmd(iou: torch.Tensor) -> float:
    return float((1.0 - iou.max(dim=0).values).mean())


def coverage(generated: ArrayLike, real: ArrayLike, device: str | torch.device | None = None) -> float:
    """COV: fraction of real shapes that are the nearest neighbour (max IoU, first on ties) of some generated shape."""
    return _coverage(pairwise_iou(generated, real, device))


def minimum_matching_distance(
    generated: ArrayLike, real: ArrayLike, device: str | torch.device | None = None
) -> float:
    """MMD: mean over real shapes of min over generated shapes of (1 − IoU)."""
    return _mmd(pairwise_iou(generated, real, device))


def voxel_metrics(generated: ArrayLike, real: ArrayLike, device: str | torch.device | None = None) -> dict:
    """COV and MMD (1 − IoU) from one pairwise IoU matrix, with the protocol they follow."""
    iou = pairwise_iou(generated, real, device)
    return {
        "coverage": _coverage(iou),
        "mmd_iou": _mmd(iou),
        "protocol": "boolean grids, distance 1 - IoU, nearest neighbour by max IoU (first on ties)",
    }
