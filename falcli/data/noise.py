"""Smooth procedural noise shared by the built-in image datasets (shapes, streets)."""
from __future__ import annotations

import numpy as np


def upsample_bilinear(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (n, g, g) grids to (n, size, size)."""
    g = a.shape[-1]
    t = np.linspace(0, g - 1, size, dtype=np.float32)
    i0 = np.minimum(t.astype(np.int64), g - 2)
    f = t - i0
    rows = a[:, i0, :] * (1 - f)[None, :, None] + a[:, i0 + 1, :] * f[None, :, None]
    return rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f
