"""Metrics equal to the reference implementation of the protocol they are named after: SSIM against
scikit-image on the uint8 files, the FCN-score against pix2pix's `get_scores`, Cityscapes colour maps as
`fal prepare cityscapes` reads them, KID's subset rule as torch-fidelity's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from falcli.commands.evaluate.checkpoints import EvaluateOptions, run
from falcli.metrics import image

# --- SSIM ------------------------------------------------------------------------------------------------------


def _write(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, array in enumerate(images):
        Image.fromarray(array).save(folder / f"{i}.png")
    return folder


def _skimage_on_files(a: list[np.ndarray], b: list[np.ndarray], **options) -> float:
    return float(np.mean([structural_similarity(x, y, data_range=255, channel_axis=2, **options)
                          for x, y in zip(a, b)]))


def test_ssim_on_files_equals_scikit_image_on_the_uint8_images(tmp_path):
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 256, (24, 20, 3), dtype=np.uint8) for _ in range(3)]
    # SSIM's constants are not shift invariant: flat grey 128 vs 140 is 0.996 on the files (0.117 on [-1, 1]).
    a = noisy + [np.full((24, 20, 3), 128, np.uint8)]
    b = [np.clip(x.astype(int) + rng.integers(-30, 31, x.shape), 0, 255).astype(np.uint8) for x in noisy]
    b += [np.full((24, 20, 3), 140, np.uint8)]
    outputs, targets = _write(tmp_path / "a", a), _write(tmp_path / "b", b)
    evaluation = run("ssim", EvaluateOptions(a=outputs, b=targets, device="cpu"))
    assert evaluation.rows[0]["ssim"] == pytest.approx(_skimage_on_files(a, b), abs=1e-6)
    assert "7x7 uniform window" in evaluation.protocol["ssim"] and evaluation.protocol["data_range"] == 255
    gaussian = run("ssim-gaussian", EvaluateOptions(a=outputs, b=targets, device="cpu"))
    reference = _skimage_on_files(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert gaussian.rows[0]["ssim_gaussian"] == pytest.approx(reference, abs=1e-6)
    assert "Gaussian window sigma 1.5" in gaussian.protocol["ssim"]
    assert abs(reference - _skimage_on_files(a, b)) > 1e-4  # two protocols, two values
    grey = structural_similarity(a[-1], b[-1], data_range=255, channel_axis=2)
    assert grey > 0.99


def test_ssim_of_network_images_is_ssim_of_their_files():
    import torch

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 16, 16)))
    y = (x + torch.from_numpy(rng.normal(0, 0.2, x.shape))).clamp(-1, 1)
    files = [(t.add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()) for t in (x, y)]
    expected = _skimage_on_files(list(files[0]), list(files[1]))
    assert image.ssim(image.to_pixels(x), image.to_pixels(y)) == pytest.approx(expected, abs=1e-6)


# --- FCN-score ---------------------------------------------------------------------------------------------------


def _pix2pix_get_scores(hist):
    """pix2pix scripts/eval_cityscapes/util.py `get_scores`, transcribed."""
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
    cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
    return acc, np.nanmean(cl_acc), np.nanmean(iu), cl_acc, iu


def test_fcn_score_equals_pix2pix_get_scores_with_absent_classes():
    from falcli.metrics.segmentation import confusion, segmentation_scores

    rng = np.random.default_rng(2)
    gt = rng.choice([0, 2, 5, 13, 255], size=(4, 40, 40))  # 15 of the 19 classes never occur in the truth
    pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 19, gt.shape))
    hist = confusion(pred, gt)
    acc, cl_acc, iu, _, _ = _pix2pix_get_scores(hist.astype(np.float64))
    scores = segmentation_scores(hist)
    assert scores["pixel_accuracy"] == pytest.approx(acc, abs=1e-12)
    assert scores["class_accuracy"] == pytest.approx(cl_acc, abs=1e-12)
    assert scores["class_iou"] == pytest.approx(iu, abs=1e-12)
    present = segmentation_scores(hist, class_means="present")
    assert present["class_accuracy_present"] > 3 * scores["class_accuracy"]  # 4 classes present, not 19


def test_colour_label_maps_ignore_void_colours_as_prepare_cityscapes_does(tmp_path):
    from falcli.commands.evaluate.files import read_label_map
    from falcli.formats.cityscapes import colors_to_trainids
    from falcli.metrics.segmentation import CITYSCAPES_COLORS, CITYSCAPES_VOID_COLORS

    label = np.zeros((8, 8, 3), np.uint8)  # black: "unlabeled", nearest to truck (0, 0, 70) among the 19
    label[:4] = CITYSCAPES_COLORS[13]
    label[6:, 6:] = CITYSCAPES_VOID_COLORS[1]  # "dynamic"
    Image.fromarray(label).save(tmp_path / "map.png")
    ids = read_label_map(tmp_path / "map.png")
    assert (ids[:4] == 13).all() and (ids[4:6] == 255).all() and (ids[6:, 6:] == 255).all()
    np.testing.assert_array_equal(ids, colors_to_trainids(label))  # one table for prepare and evaluate
