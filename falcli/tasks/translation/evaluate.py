"""Translation metrics per feedback step, over the validation split.

For every step t: L1 and PSNR against the target (on [-1, 1] images, data_range 2, i.e. the same values
as on [0, 1]); SSIM with both windows (`ssim`, `ssim_gaussian`) on the pixel values [0, 255] the PNG files hold; LPIPS when its AlexNet trunk is on disk; D's mean verdict σ(D); and, by direction:
- label map → photo: the FCN-score (pix2pix §4.2): a segmenter judge reads the outputs, its confusion with
  the true train ids gives per-pixel accuracy, per-class accuracy and class IoU. The same judge scores the
  real photos first (`fcn_real/*`, the protocol's self-check): the generated scores mean little without it;
- photo → colour label map: the outputs are snapped to the nearest Cityscapes colour and scored directly;
- → depth: Eigen et al.'s errors in metres (Eigen crop for NYU).
A metric that cannot run (no LPIPS trunk, no segmenter judge) is left out and reported through `note`.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from falcli.console import error_console
from falcli.core.feedback import unroll
from falcli.core.pictures import to_uint8
from falcli.errors import FalError
from falcli.formats.nyu import BORDER_BOX_480x640
from falcli.judges.base import load
from falcli.judges.segmenter import JUDGE as SEGMENTER
from falcli.metrics.depth import DEPTH_KEYS, EIGEN_CROP_480x640, depth_errors
from falcli.metrics.image import l1_per_image, psnr_per_image, ssim_per_image, to_pixels
from falcli.metrics.lpips import load_lpips
from falcli.metrics.segmentation import colors_to_train_ids, confusion, score_keys, segmentation_scores
from falcli.tasks.translation import data as paired
from falcli.tasks.translation.config import resolve_pairing
from falcli.tasks.translation.data import depth_from_network

EVAL_BATCH = 16                          # pairs per forward pass
NUM_CLASSES = 19                         # Cityscapes train ids
SCORE_KEYS = score_keys("pix2pix")      # the FCN-score's keys under pix2pix's class means


def _warn(message: str) -> None:
    error_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


@torch.no_grad()
def evaluate_translation(G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int, num_samples: int,
                         lpips_weights: Path | None = None, seg_weights: Path | None = None,
                         note: Callable[[str], None] | None = None,
                         allow_unofficial_weights: bool = False,
                         class_means: str = "pix2pix") -> list[dict[str, float]]:
    """One dict of metrics per feedback step t = 1..steps, over the first `num_samples` validation pairs.

    lpips_weights: AlexNet file for LPIPS (None = search $FAL_WEIGHTS_DIR and the torch hub cache), refused
    when its SHA-256 is not the official one unless allow_unofficial_weights.
    seg_weights: a segmenter judge.pt (None: no FCN-score, with a note; `fal evaluate` fills it from the task's
    judge_needs). note: receives one line per metric that was skipped and why (default: a warning).
    """
    note = note or _warn
    pairing = resolve_pairing(recipe.data)
    dataset = paired.make_pairs(recipe, pairing, "val", extras=True)
    count = min(num_samples, len(dataset))
    if count < 1:
        raise FalError("evaluate: num_samples must be >= 1")

    lpips = _open_lpips(lpips_weights, device, recipe.data.image_size, note, allow_unofficial_weights)
    segmenter = _open_segmenter(seg_weights, pairing, device, note) if pairing.makes_photos else None
    if (pairing.makes_photos or pairing.makes_labels) and "labels" not in dataset.arrays:
        note("segmentation scores unavailable: the dataset stores no train-id labels (meta eval_fields)")
        segmenter = None
    if pairing.target_is_depth and "depth" not in dataset.arrays:
        note("depth errors unavailable: the dataset stores no depth in metres (meta.json eval_fields.depth); "
             "prepare it again with this version of fal")
    eigen = pairing.name == "nyu"

    sums = [_StepSums() for _ in range(steps)]
    real_hist = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    modes = G.training, D.training
    G.eval(), D.eval()
    try:
        for start in range(0, count, EVAL_BATCH):
            raw = dataset.__getitems__(list(range(start, min(count, start + EVAL_BATCH))))
            batch = paired.make_batch({k: v.to(device) for k, v in raw.items()}, recipe, pairing, training=False)
            out = unroll(G, D, batch.gen_input, batch.condition, steps, recipe.feedback,
                         partial(paired.discriminator_input, batch=batch))
            real = batch.real.float()
            if segmenter is not None:
                real_hist += confusion(_segment(segmenter, real), batch.extras["labels"])
            for acc, sample, logits in zip(sums, out.samples, out.logits):
                x = sample.float().clamp(-1, 1)
                acc.add("l1", l1_per_image(x, real))
                acc.add("psnr", psnr_per_image(x, real, data_range=2.0))
                pixels, real_pixels = to_pixels(x), to_pixels(real)
                for variant in ("ssim", "ssim_gaussian"):
                    acc.add(variant, ssim_per_image(pixels, real_pixels, variant=variant))
                acc.add("d_real_probability", torch.sigmoid(logits.float()).flatten(1).mean(1).cpu().numpy())
                if lpips is not None:
                    acc.add("lpips", lpips(x, real).cpu().numpy())
                if segmenter is not None:
                    acc.hist += confusion(_segment(segmenter, x), batch.extras["labels"])
                elif pairing.makes_labels and "labels" in batch.extras:
                    acc.hist += confusion(colors_to_train_ids(to_uint8(x), void=False), batch.extras["labels"])
                if pairing.target_is_depth and "depth" in batch.extras:
                    acc.add_depth(_depth_errors(x, batch.extras["depth"], pairing, eigen))
    finally:
        G.train(modes[0]), D.train(modes[1])

    results = [acc.means() for acc in sums]
    prefix = "fcn" if segmenter is not None else "labels"
    keys = score_keys(class_means)
    for result, acc in zip(results, sums):
        if acc.hist.sum():
            scores = segmentation_scores(acc.hist, class_means)
            result.update({f"{prefix}/{k}": scores[k] for k in keys})
        if real_hist.sum():  # the self-check, repeated in every step's row so tables show it alongside
            scores = segmentation_scores(real_hist, class_means)
            result.update({f"fcn_real/{k}": scores[k] for k in keys})
    return results


class _StepSums:
    """Per-image values of one step, a confusion matrix, and image-weighted depth errors."""

    def __init__(self):
        self.values: dict[str, list[np.ndarray]] = {}
        self.hist = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        self.depth = np.zeros(len(DEPTH_KEYS))
        self.depth_images = 0

    def add(self, key: str, per_image: np.ndarray) -> None:
        self.values.setdefault(key, []).append(np.asarray(per_image, np.float64))

    def add_depth(self, errors: dict) -> None:
        # depth_errors averages per image; weighting each batch by its image count keeps that exact.
        self.depth += np.array([errors[k] for k in DEPTH_KEYS]) * errors["images"]
        self.depth_images += errors["images"]

    def means(self) -> dict[str, float]:
        result = {k: float(np.concatenate(v).mean()) for k, v in self.values.items()}
        if self.depth_images:
            result.update({f"depth/{k}": float(v) for k, v in zip(DEPTH_KEYS, self.depth / self.depth_images)})
        return result


def _open_lpips(weights: Path | None, device: torch.device, size: int, note,
                allow_unofficial: bool = False) -> Callable | None:
    if size < 32:
        note(f"LPIPS unavailable: AlexNet needs images of at least 32 pixels (data.image_size is {size})")
        return None
    try:
        distance, info = load_lpips(weights=weights, device=device, allow_unofficial=allow_unofficial)
    except FalError as error:
        note(f"LPIPS unavailable: {error}")
        return None
    if not info["official"]:
        note(f"LPIPS from unofficial weights {info['weights']} (SHA-256 {info['sha256_prefix']}…): "
             f"not comparable with published values")
    return distance


def _open_segmenter(path: Path | None, pairing, device: torch.device, note):
    """The segmenter judge as (net, its input size); None (with a note) when none is given."""
    if path is None:
        note(f"FCN-score unavailable: no segmenter judge; `fal evaluate` trains one on first use where fal ships "
             f"recipes/{pairing.name}_segmenter.yaml, or pass --seg-weights PATH")
        return None
    net, judge_recipe, _ = load(path, device, SEGMENTER)
    if judge_recipe.model.classes != NUM_CLASSES:
        raise FalError(f"{path}: a segmenter of {judge_recipe.model.classes} classes; the FCN-score needs the "
                       f"{NUM_CLASSES} Cityscapes train ids")
    return net, judge_recipe.data.image_size


def _segment(segmenter, images: torch.Tensor) -> torch.Tensor:
    """Train ids (B, S, S) the judge sees in images (B, 3, S, S), read at the judge's own input size."""
    net, size = segmenter
    label_size = images.shape[-2:]
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    logits = net(images)
    if logits.shape[-2:] != label_size:
        logits = F.interpolate(logits.float(), size=label_size, mode="bilinear", align_corners=False)
    return logits.argmax(1)


def _depth_errors(x: torch.Tensor, truth: torch.Tensor, pairing, eigen: bool) -> dict:
    prediction = depth_from_network(x, pairing.depth_range)[:, 0]
    truth = truth.float()
    if eigen:  # prepared NYU maps are the 480×640 frame's border box resized: crop there, not on the full frame
        truth = truth * nyu_eigen_mask(truth.shape[-2], truth.shape[-1]).to(truth.device)
    return depth_errors(prediction, truth, max_depth=pairing.depth_range[1])


def nyu_eigen_mask(height: int, width: int) -> torch.Tensor:
    """Eigen's crop (rows 45:471, cols 41:601 of 480×640) in the coordinates of a prepared NYU map, which
    covers the border box rows 7:474, cols 7:632 resized to height × width (falcli/formats/nyu.py)."""
    top, bottom, left, right = BORDER_BOX_480x640
    r0, r1, c0, c1 = EIGEN_CROP_480x640
    rows = slice(round((r0 - top) * height / (bottom - top)), round((r1 - top) * height / (bottom - top)))
    cols = slice(round((c0 - left) * width / (right - left)), round((c1 - left) * width / (right - left)))
    mask = torch.zeros(height, width)
    mask[rows, cols] = 1
    return mask
