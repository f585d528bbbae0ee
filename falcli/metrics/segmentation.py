"""FCN-score bookkeeping (pix2pix, Isola et al. 2017, scripts/eval_cityscapes) and the Cityscapes label tables.

Confusion matrices are summed over images, then turned into per-pixel accuracy, mean class accuracy and mean IoU.
Torch-free (tensors are accepted by duck typing): the streets generator reads the colour table from here, and
`fal train --dry-run` resolves a streets recipe without loading torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from falcli.errors import FalError

if TYPE_CHECKING:
    import torch

ArrayLike = "np.ndarray | torch.Tensor"

CITYSCAPES_TRAIN_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip

# The one Cityscapes colour table of the package (cityscapesScripts labels.py), indexed by train id.
CITYSCAPES_COLORS = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip
# Colours of the classes ignored in evaluation in *_gtFine_color.png (unlabeled, dynamic, ground, parking,
# rail track, guard rail, bridge, tunnel, caravan, trailer), so nearest-colour lookup can return IGNORE too.
CITYSCAPES_VOID_COLORS = np.array(
    [(0, 0, 0), (111, 74, 0), (81, 0, 81), (250, 170, 160), (230, 150, 140), (180, 165, 180), (150, 100, 100),
     (150, 120, 90), (0, 0, 90), (0, 0, 110)],
    dtype=np.uint8,
)  # fmt: skip
IGNORE = 255

_TRAIN_ID_OF_LABEL_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def _label_id_lookup() -> np.ndarray:
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in _TRAIN_ID_OF_LABEL_ID.items():
        table[label_id] = train_id
    return table


# Index with a uint8 `*_labelIds.png` array: LABEL_ID_TO_TRAIN_ID[ids]; ids outside the 19 classes map to 255.
LABEL_ID_TO_TRAIN_ID = _label_id_lookup()

_COLOR_CHUNK = 1 << 18
_PALETTE_WITH_VOID = np.concatenate([CITYSCAPES_COLORS, CITYSCAPES_VOID_COLORS]).astype(np.int32)
_IDS_WITH_VOID = np.array(list(range(len(CITYSCAPES_COLORS))) + [IGNORE] * len(CITYSCAPES_VOID_COLORS), np.uint8)


def train_ids_to_colors(ids: np.ndarray) -> np.ndarray:
    """Cityscapes colours of train ids: (...,) integer → (..., 3) uint8; IGNORE and unknown ids are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return lut[np.asarray(ids).astype(np.uint8)]


def colors_to_train_ids(rgb: np.ndarray, void: bool = True) -> np.ndarray:
    """Nearest Cityscapes colour (Euclidean in RGB) for each pixel: uint8 (..., 3) → uint8 trainIds (...).

    void=True (ground-truth colour maps, as `fal prepare cityscapes` reads them): the void colours, black among
    them, give IGNORE (255). void=False (a generator's label maps, scored as predictions): every pixel snaps to
    the closest of the 19 classes. Exact palette colours map exactly.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise FalError(f"colour label maps must be (..., 3) RGB, got shape {rgb.shape}")
    flat = rgb.reshape(-1, 3).astype(np.int32)
    palette = _PALETTE_WITH_VOID if void else _PALETTE_WITH_VOID[: len(CITYSCAPES_COLORS)]
    ids = _IDS_WITH_VOID[: len(palette)]
    out = np.empty(len(flat), dtype=np.uint8)
    # Chunked so a 1024x2048 map does not build a (2M, 29, 3) temporary at once.
    for start in range(0, len(flat), _COLOR_CHUNK):
        chunk = flat[start : start + _COLOR_CHUNK]
        dist = ((chunk[:, None, :] - palette[None]) ** 2).sum(axis=2)
        out[start : start + _COLOR_CHUNK] = ids[dist.argmin(axis=1)]
    return out.reshape(rgb.shape[:-1])


def _as_int(x: ArrayLike) -> np.ndarray:
    return (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)).astype(np.int64)  # a torch.Tensor


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


CLASS_MEANS = ("pix2pix", "present")
CLASS_MEANS_PROTOCOLS = {
    "pix2pix": "pix2pix get_scores (scripts/eval_cityscapes/util.py): confusion summed over images; class "
               "accuracy and IoU averaged over all classes, a class absent from the ground truth counting as 0",
    "present": "confusion summed over images; class accuracy averaged over the classes present in the ground "
               "truth, IoU over the classes present in ground truth or prediction (keys *_present)",
}


def segmentation_scores(hist: np.ndarray, class_means: str = "pix2pix") -> dict:
    """FCN-scores from a summed confusion matrix (rows gt, cols pred).

    pixel_accuracy = Σ_i h_ii / Σ h. class_means "pix2pix" (the FCN-score's protocol, pix2pix's `get_scores`):
    class_accuracy = mean_i h_ii / (Σ_j h_ij + 1e-12), class_iou = mean_i h_ii / (Σ_j h_ij + Σ_j h_ji − h_ii
    + 1e-12) over all n classes, so a class absent from the ground truth counts as 0 in both means (its
    accuracy is 0 / 1e-12). class_means "present": the same ratios, NaN where the denominator is empty and
    skipped, returned as class_accuracy_present and class_iou_present. Both return per_class_accuracy and
    per_class_iou arrays (n,), NaN where a denominator is empty.
    """
    if class_means not in CLASS_MEANS:
        raise FalError(f"unknown class means {class_means!r}; choose one of: {', '.join(CLASS_MEANS)}")
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise FalError(f"confusion matrix must be square (n, n), got shape {h.shape}")
    if h.sum() == 0:
        raise FalError("confusion matrix is empty: every ground-truth pixel was ignored; check the label maps")
    diag = np.diag(h)
    gt_count, pred_count = h.sum(axis=1), h.sum(axis=0)
    union = gt_count + pred_count - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class_acc = np.where(gt_count > 0, diag / gt_count, np.nan)
        per_class_iou = np.where(union > 0, diag / union, np.nan)
    scores = {"pixel_accuracy": float(diag.sum() / h.sum()), "per_class_accuracy": per_class_acc,
              "per_class_iou": per_class_iou, "protocol": CLASS_MEANS_PROTOCOLS[class_means]}
    if class_means == "pix2pix":
        scores["class_accuracy"] = float(np.mean(diag / (gt_count + 1e-12)))
        scores["class_iou"] = float(np.mean(diag / (union + 1e-12)))
    else:
        scores["class_accuracy_present"] = float(np.nanmean(per_class_acc))
        scores["class_iou_present"] = float(np.nanmean(per_class_iou))
    return scores


def score_keys(class_means: str = "pix2pix") -> tuple[str, ...]:
    """The row keys of `segmentation_scores` under class_means."""
    suffix = "" if class_means == "pix2pix" else "_present"
    return ("pixel_accuracy", f"class_accuracy{suffix}", f"class_iou{suffix}")
