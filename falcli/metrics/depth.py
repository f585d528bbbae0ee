"""Monocular depth errors of Eigen, Puhrsch & Fergus (NIPS 2014), as reported on NYU-Depth v2 and KITTI.

Each metric is computed per image over its valid pixels, then averaged over images (the convention of
Eigen et al.'s and most later evaluation scripts, e.g. monodepth2), so every image weighs the same.
"""
from __future__ import annotations

import numpy as np
import torch

from falcli.errors import FalError

ArrayLike = np.ndarray | torch.Tensor

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
# Eigen et al.'s NYU crop, defined in pixels on the 480x640 frame.
EIGEN_CROP_480x640 = (45, 471, 41, 601)


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of Eigen's NYU crop: rows 45:471, cols 41:601 at 480x640.

    For other sizes each bound is scaled proportionally (bound · H/480 or · W/640) and rounded with Python's
    round (half to even), so a 240x320 map gets rows 22:236 and cols 20:300.
    """
    r0, r1, c0, c1 = EIGEN_CROP_480x640
    rows = slice(round(r0 * height / 480), round(r1 * height / 480))
    cols = slice(round(c0 * width / 640), round(c1 * width / 640))
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, cols] = True
    return mask


def _as_maps(x: ArrayLike) -> np.ndarray:
    """float64 (B, H, W) from (H, W), (B, H, W) or (B, 1, H, W)."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise FalError(f"depth maps must be (H, W), (B, H, W) or (B, 1, H, W), got shape {x.shape}")
    return x.astype(np.float64)


def _errors_one(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The 8 Eigen metrics (DEPTH_KEYS order) for 1-D arrays of valid positive depths."""
    ratio = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return np.array(
        [
            np.mean(np.abs(diff) / gt),
            np.mean(diff**2 / gt),
            np.sqrt(np.mean(diff**2)),
            np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
            np.mean(np.abs(np.log10(gt) - np.log10(pred))),
            np.mean(ratio < 1.25),
            np.mean(ratio < 1.25**2),
            np.mean(ratio < 1.25**3),
        ]
    )


def depth_errors(
    pred: ArrayLike, gt: ArrayLike, min_depth: float = 1e-3, max_depth: float = 10.0, eigen_crop: bool = False
) -> dict:
    """Eigen et al. 2014 depth errors of pred vs gt, (B, H, W) / (H, W) / (B, 1, H, W) in metres.

    abs_rel = mean |d − d*| / d*,  sq_rel = mean (d − d*)² / d*,  rmse = sqrt(mean (d − d*)²),
    rmse_log = sqrt(mean (ln d − ln d*)²),  log10 = mean |log10 d − log10 d*|,
    delta_k = fraction with max(d / d*, d* / d) < 1.25^k  (d prediction, d* ground truth).
    Valid pixels: min_depth < d* < max_depth (and inside the Eigen crop if asked). Predictions have nan → min_depth,
    ±inf → max/min_depth, then are clamped to [min_depth, max_depth]. Per image, then mean over images
    with at least one valid pixel. Returns the 8 metrics plus "protocol" (a dict) and "images".
    """
    p, g = _as_maps(pred), _as_maps(gt)
    if p.shape != g.shape:
        raise FalError(f"prediction {p.shape} and ground truth {g.shape} differ; resize predictions to the depth maps")
    if not 0 < min_depth < max_depth:
        raise FalError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    p = np.clip(np.nan_to_num(p, nan=min_depth, posinf=max_depth, neginf=min_depth), min_depth, max_depth)
    valid = (g > min_depth) & (g < max_depth)
    if eigen_crop:
        valid &= eigen_crop_mask(*g.shape[1:])[None]
    per_image = [_errors_one(pi[m], gi[m]) for pi, gi, m in zip(p, g, valid) if m.any()]
    if not per_image:
        raise FalError(
            f"no ground-truth pixel lies in ({min_depth}, {max_depth}); check depth units (metres) or --max-depth"
        )
    means = np.mean(per_image, axis=0)
    result: dict = {k: float(v) for k, v in zip(DEPTH_KEYS, means)}
    result["images"] = len(per_image)
    result["protocol"] = {
        "min_depth": min_depth,
        "max_depth": max_depth,
        "eigen_crop": "rows 45:471, cols 41:601 at 480x640, scaled proportionally" if eigen_crop else "none",
        "averaging": "per image, then mean over images",
    }
    return result
