"""Sample pictures: tensors → uint8 tiles, D's maps → heat maps, tiles → one PNG grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

GUTTER = 2  # white pixels between tiles


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] → (B, H, W, 3) uint8; 1-channel images are shown in grey."""
    images = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return images[:, :3].permute(0, 2, 3, 1).numpy()


def heatmap(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """D's map (B, 1, h, w) → (B, H, W, 3) uint8: σ(D) in red (fake, 0) … blue (real, 1), nearest-upsampled so
    each patch of a PatchGAN stays a visible square."""
    import matplotlib

    probability = torch.sigmoid(logits.detach().float())
    probability = torch.nn.functional.interpolate(probability, size=size, mode="nearest")
    colours = matplotlib.colormaps["RdBu"](probability[:, 0].cpu().numpy())[..., :3]
    return (colours * 255).round().astype(np.uint8)


def tile(rows: list[list[np.ndarray]]) -> np.ndarray:
    """A grid of equally sized (H, W, 3) uint8 tiles with white gutters."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    canvas = np.full((len(rows) * (height + GUTTER) - GUTTER, columns * (width + GUTTER) - GUTTER, 3), 255,
                     dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + GUTTER), c * (width + GUTTER)
            canvas[y:y + height, x:x + width] = image
    return canvas


def save_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
