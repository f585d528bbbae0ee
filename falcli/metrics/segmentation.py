"""FCN-score bookkeeping (pix2pix, Isola et al. 2017, scripts/eval_cityscapes) and the Cityscapes label tables.

Confusion matrices are summed over images, then turned into per-pixel accuracy, mean class accuracy and mean IoU.
"""
from __future__ import annotations

import numpy as np
import torch

from falcli.errors import FalError

ArrayLike = np.ndarray | torch.Tensor

CITYSCAPES_TRAIN_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

CITYSCAPES_COLORS = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip

_TRAIN_ID_OF_LABEL_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def _label_id_lookup() -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in _TRAIN_ID_OF_LABEL_ID.items():
        table[label_id] = train_id
    return table


# Index with a uint8 `*_labelIds.png` array: LABEL_ID_TO_TRAIN_ID[ids]; ids outside the 19 classes map to 255.
LABEL_ID_TO_TRAIN_ID = _label_id_lookup()

_COLOR_CHUNK = 1 << 18


def colors_to_train_ids(rgb: np.ndarray) -> np.ndarray:
    """Nearest Cityscapes colour (Euclidean in RGB) for each pixel: uint8 (..., 3) → uint8 trainIds (...).

    Exact palette colours map exactly; generated label maps (photo→labels) snap to the closest class.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise FalError(f"colour label maps must be (..., 3) RGB, got shape {rgb.shape}")
    flat = rgb.reshape(-1, 3).astype(np.int32)
    palette = CITYSCAPES_COLORS.astype(np.int32)
    out = np.empty(len(flat), dtype=np.uint8)
    # Chunked so a 1024x2048 map does not build a (2M, 19, 3) temporary at once.
    for start in range(0, len(flat), _COLOR_CHUNK):
        chunk = flat[start : start + _COLOR_CHUNK]
        dist = ((chunk[:, None, :] - palette[None]) ** 2).sum(axis=2)
        out[start : start + _COLOR_CHUNK] = dist.argmin(axis=1)
    return out.reshape(rgb.shape[:-1])


def _as_int(x: ArrayLike) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.int64)


def confusion(pred: ArrayLike, gt: ArrayLike, n_classes: int = 19, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix (n, n) int64, rows = ground truth, cols = prediction, of label maps of one shape.

    hist = bincount(n·gt + pred) over pixels with 0 <= gt < n and gt != ignore_index (pix2pix's fast_hist);
    sum the matrices of all images before calling `segmentation_scores`.
    """
    p, g = _as_int(pred), _as_int(gt)
    if p.shape != g.shape:
        raise FalError(f"prediction {p.shape} and ground truth {g.shape} differ; resize predictions to the labels")
    keep = (g >= 0) & (g < n_classes) & (g != ignore_index)
    p, g = p[keep], g[keep]
    bad = (p < 0) | (p >= n_classes)
    if bad.any():
        raise FalError(
            f"predicted class {int(p[bad][0])} is outside 0..{n_classes - 1}; map predictions to trainIds first"
        )
    return np.bincount(n_classes * g + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def segmentation_scores(hist: np.ndarray) -> dict:
    """FCN-scores from a summed confusion matrix (rows gt, cols pred) as in pix2pix's eval_cityscapes.

    pixel_accuracy = Σ_i h_ii / Σ h;  class_accuracy = nanmean_i h_ii / Σ_j h_ij;
    class_iou = nanmean_i h_ii / (Σ_j h_ij + Σ_j h_ji − h_ii).
    Classes with an empty denominator are NaN and skipped by nanmean (pix2pix adds 1e-12 instead, counting
    them as 0; on the full Cityscapes val set every class occurs, so both agree). A class that is predicted but
    absent from gt has IoU 0. Also returns per_class_accuracy and per_class_iou arrays (n,).
    """
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise FalError(f"confusion matrix must be square (n, n), got shape {h.shape}")
    if h.sum() == 0:
        raise FalError("confusion matrix is empty: every ground-truth pixel was ignored; check the label maps")
    diag = np.diag(h)
    gt_count, pred_count = h.sum(axis=1), h.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class_acc = np.where(gt_count > 0, diag / gt_count, np.nan)
        union = gt_count + pred_count - diag
        per_class_iou = np.where(union > 0, diag / union, np.nan)
    return {
        "pixel_accuracy": float(diag.sum() / h.sum()),
        "class_accuracy": float(np.nanmean(per_class_acc)),
        "class_iou": float(np.nanmean(per_class_iou)),
        "per_class_accuracy": per_class_acc,
        "per_class_iou": per_class_iou,
        "protocol": "pix2pix FCN-score: confusion summed over images, nanmean over classes with a denominator",
    }
