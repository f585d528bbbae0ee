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
    """A grid of equally sized (H, W, 3) uint8 tiles with white gutters.

    Not torchvision.utils.make_grid: that takes one flat batch of (C, H, W) tensors cut into rows of `nrow`,
    pads the outer border as well as between tiles, and fills a short last row with padding colour; here rows
    are given as lists (of any length: a row of D's maps beside a row of samples, with blanks), gutters sit only
    between tiles (labelled() places its captions by that layout), and the pictures stay numpy uint8, so that
    drawing one does not import torchvision.
    """
    height, width = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    canvas = np.full((len(rows) * (height + GUTTER) - GUTTER, columns * (width + GUTTER) - GUTTER, 3), 255,
                     dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            y, x = r * (height + GUTTER), c * (width + GUTTER)
            canvas[y:y + height, x:x + width] = image
    return canvas


def labelled(grid: np.ndarray, rows: list[list[np.ndarray]], row_labels: list[str] | None = None,
             column_labels: list[str] | None = None, colour_scale: bool = False) -> np.ndarray:
    """`grid` (from tile(rows)) with row labels on the left, column labels on top and, with colour_scale, the
    heat maps' key below: σ(D) from 0 (fake, red) to 1 (real, blue)."""
    from PIL import ImageDraw

    height, width = rows[0][0].shape[:2]
    left = 8 + 6 * max((len(t) for t in row_labels or []), default=0) if row_labels else 0
    top = 14 if column_labels else 0
    bottom = 26 if colour_scale else 0
    canvas = Image.new("RGB", (max(left + grid.shape[1], 170), top + grid.shape[0] + bottom), "white")
    canvas.paste(Image.fromarray(grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    for r, text in enumerate(row_labels or []):
        draw.text((2, top + r * (height + GUTTER) + height // 2 - 5), text, fill=(0, 0, 0))
    for c, text in enumerate(column_labels or []):
        draw.text((left + c * (width + GUTTER) + 1, 1), text, fill=(0, 0, 0))
    if colour_scale:
        ramp = heatmap(torch.linspace(0.0, 1.0, 100).clamp(1e-4, 1 - 1e-4).logit()[None, None, None], (8, 100))[0]
        y = top + grid.shape[0] + 4
        canvas.paste(Image.fromarray(ramp), (left + 30, y))
        draw.text((left + 2, y - 1), "D: 0", fill=(0, 0, 0))  # σ(D); the default bitmap font has no σ
        draw.text((left + 134, y - 1), "1", fill=(0, 0, 0))
        draw.text((left + 30, y + 10), "fake       real", fill=(0, 0, 0))
    return np.asarray(canvas)


def save_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
