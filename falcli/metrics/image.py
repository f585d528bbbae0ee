"""Per-image reconstruction metrics (L1, PSNR, SSIM) on batches, averaged over images.

Thin wrappers over scikit-image with an explicit `data_range`, because skimage's dtype-based guess
silently changes the value for float images outside [0, 1] or [-1, 1].

SSIM is scored on pixel values [0, 255] with data_range 255: its luminance and contrast constants
(K1·L)², (K2·L)² are not shift invariant, so SSIM of [-1, 1] images differs from SSIM of the image files
(flat grey 128 vs 140: 0.117 on [-1, 1], 0.996 on the files). `to_pixels` gives the files' values.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from falcli.errors import FalError

ArrayLike = np.ndarray | torch.Tensor

# The two SSIM windows, by the metric name they are reported under.
SSIM_VARIANTS: dict[str, dict] = {
    "ssim": {},  # scikit-image's defaults, the value `structural_similarity(a, b, data_range=255)` gives
    "ssim_gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},  # Wang et al. 2004
}
SSIM_PROTOCOLS = {
    "ssim": "skimage structural_similarity defaults: 7x7 uniform window, sample covariance (N-1), "
            "K1=0.01, K2=0.03, per channel, on pixel values [0, 255] with data_range 255",
    "ssim_gaussian": "Wang et al. 2004: 11x11 Gaussian window sigma 1.5 (skimage gaussian_weights=True, "
                     "sigma=1.5, use_sample_covariance=False), K1=0.01, K2=0.03, per channel, on pixel values "
                     "[0, 255] with data_range 255",
}
SSIM_PROTOCOL = SSIM_PROTOCOLS["ssim"]
PIXEL_RANGE = 255.0


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network images → the uint8 values their PNG files hold, as float: SSIM then equals SSIM of the
    files (the same rounding as falcli.pictures.to_uint8)."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round()


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


def ssim_per_image(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_RANGE,
                   variant: str = "ssim") -> np.ndarray:
    """SSIM per image (Wang et al. 2004), (B,), via skimage with channel_axis=0 for (C, H, W) images.

    Give pixel values [0, 255] (`to_pixels`) and keep data_range 255 to match the image files. variant "ssim":
    skimage's defaults (7x7 uniform window, sample covariance; H, W >= 7); "ssim_gaussian": the 11x11 Gaussian
    σ = 1.5 window of Wang et al. (H, W >= 11). See SSIM_PROTOCOLS.
    """
    if variant not in SSIM_VARIANTS:
        raise FalError(f"unknown SSIM variant {variant!r}; choose one of: {', '.join(SSIM_VARIANTS)}")
    x, y, channel_axis = _as_batch(a, b)
    side = 11 if variant == "ssim_gaussian" else 7
    if min(x.shape[-2:]) < side:
        raise FalError(f"{variant} needs images of at least {side}x{side} pixels, got {x.shape[-2]}x{x.shape[-1]}")
    options = SSIM_VARIANTS[variant]
    return np.array([structural_similarity(xi, yi, data_range=data_range, channel_axis=channel_axis, **options)
                     for xi, yi in zip(x, y)])


def l1(a: ArrayLike, b: ArrayLike) -> float:
    """Mean over images of the per-image mean absolute error."""
    return float(l1_per_image(a, b).mean())


def psnr(a: ArrayLike, b: ArrayLike, data_range: float) -> float:
    """Mean over images of per-image PSNR (dB); +inf if any pair is identical (no cap, so nothing is hidden)."""
    return float(psnr_per_image(a, b, data_range).mean())


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = PIXEL_RANGE, variant: str = "ssim") -> float:
    """Mean over images of per-image SSIM (see `ssim_per_image` for the window protocol)."""
    return float(ssim_per_image(a, b, data_range, variant).mean())


def image_metrics(a: ArrayLike, b: ArrayLike, data_range: float) -> dict:
    """L1, PSNR and SSIM of two batches with the protocol they were computed under (for reports); SSIM uses
    the same data_range as PSNR here, so give pixel values [0, 255] and 255 to match the files."""
    return {
        "l1": l1(a, b),
        "psnr": psnr(a, b, data_range),
        "ssim": ssim(a, b, data_range),
        "protocol": {
            "data_range": float(data_range),
            "averaging": "per image, then mean over images",
            "ssim": SSIM_PROTOCOLS["ssim"].replace("on pixel values [0, 255] with data_range 255",
                                                   f"with data_range {float(data_range):g}"),
            "psnr_identical": "inf",
        },
    }
