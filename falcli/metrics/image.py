"""Per-image reconstruction metrics (L1, PSNR, SSIM) on batches, averaged over images.

Thin wrappers over scikit-image with an explicit `data_range`, because skimage's dtype-based guess
silently changes the value for float images outside [0, 1] or [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from falcli.errors import FalError

ArrayLike = np.ndarray | torch.Tensor

SSIM_PROTOCOL = "skimage structural_similarity defaults: 7x7 uniform window, sample covariance, per channel"


def _as_batch(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray, int | None]:
    """float64 numpy copies of (B, C, H, W) or (B, H, W) batches plus the channel axis of one image."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[0] == 0:
        raise FalError(
            f"image metrics need two non-empty batches of one shape (B, C, H, W) or (B, H, W), "
            f"got {a.shape} and {b.shape}"
        )
    return a.astype(np.float64), b.astype(np.float64), (0 if a.ndim == 4 else None)


def l1_per_image(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Mean absolute error per image, (B,): mean |a − b| over C, H, W."""
    x, y, _ = _as_batch(a, b)
    return np.abs(x - y).reshape(len(x), -1).mean(axis=1)


def psnr_per_image(a: ArrayLike, b: ArrayLike, data_range: float) -> np.ndarray:
    """PSNR per image in dB, (B,): 10·log10(data_range² / MSE); identical images give +inf."""
    x, y, _ = _as_batch(a, b)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    # skimage divides by zero (and warns) for identical images; inf is the exact limit, so return it quietly.
    return np.array(
        [np.inf if e == 0 else peak_signal_noise_ratio(xi, yi, data_range=data_range) for xi, yi, e in zip(x, y, mse)]
    )


def ssim_per_image(a: ArrayLike, b: ArrayLike, data_range: float) -> np.ndarray:
    """SSIM per image (Wang et al. 2004), (B,), via skimage with channel_axis=0 for (C, H, W) images.

    Uses skimage's defaults (7x7 uniform window, sample covariance), not the Gaussian σ=1.5 variant; H, W >= 7.
    """
    x, y, channel_axis = _as_batch(a, b)
    if min(x.shape[-2:]) < 7:
        raise FalError(f"SSIM needs images of at least 7x7 pixels, got {x.shape[-2]}x{x.shape[-1]}")
    return np.array(
        [structural_similarity(xi, yi, data_range=data_range, channel_axis=channel_axis) for xi, yi in zip(x, y)]
    )


def l1(a: ArrayLike, b: ArrayLike) -> float:
    """Mean over images of the per-image mean absolute error."""
    return float(l1_per_image(a, b).mean())


def psnr(a: ArrayLike, b: ArrayLike, data_range: float) -> float:
    """Mean over images of per-image PSNR (dB); +inf if any pair is identical (no cap, so nothing is hidden)."""
    return float(psnr_per_image(a, b, data_range).mean())


def ssim(a: ArrayLike, b: ArrayLike, data_range: float) -> float:
    """Mean over images of per-image SSIM (see `ssim_per_image` for the window protocol)."""
    return float(ssim_per_image(a, b, data_range).mean())


def image_metrics(a: ArrayLike, b: ArrayLike, data_range: float) -> dict:
    """L1, PSNR and SSIM of two batches with the protocol they were computed under (for reports)."""
    return {
        "l1": l1(a, b),
        "psnr": psnr(a, b, data_range),
        "ssim": ssim(a, b, data_range),
        "protocol": {
            "data_range": float(data_range),
            "averaging": "per image, then mean over images",
            "ssim": SSIM_PROTOCOL,
            "psnr_identical": "inf",
        },
    }
