"""Closed-form checks of the image, depth, segmentation and voxel metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from falcli.errors import FalError
from falcli.metrics import depth, image, segmentation, voxel

# --- image ---------------------------------------------------------------------------------------------------


def test_identical_images_psnr_inf_ssim_one_l1_zero():
    a = np.random.default_rng(0).random((2, 3, 16, 16))
    assert image.psnr(a, a, data_range=1.0) == math.inf
    assert image.ssim(a, a, data_range=1.0) == pytest.approx(1.0)
    assert image.l1(a, a) == 0.0


def test_psnr_known_noise_closed_form():
    # ±0.1 everywhere: MSE = 0.01 exactly, so PSNR = 10 log10(1 / 0.01) = 20 dB for data_range 1.
    a = np.full((2, 1, 8, 8), 0.5)
    signs = np.where(np.random.default_rng(1).random(a.shape) < 0.5, -1.0, 1.0)
    b = a + 0.1 * signs
    assert image.psnr(a, b, data_range=1.0) == pytest.approx(20.0)
    assert image.psnr(a * 255, b * 255, data_range=255.0) == pytest.approx(20.0)
    assert image.l1(torch.tensor(a), torch.tensor(b)) == pytest.approx(0.1)


def test_per_image_mean_and_grey_batches():
    a = np.zeros((2, 16, 16))
    b = np.stack([np.full((16, 16), 0.1), np.full((16, 16), 0.01)])
    assert image.psnr(a, b, data_range=1.0) == pytest.approx((20.0 + 40.0) / 2)
    result = image.image_metrics(a, b, data_range=1.0)
    assert result["protocol"]["data_range"] == 1.0 and set(result) >= {"l1", "psnr", "ssim"}
    with pytest.raises(FalError, match="one shape"):
        image.ssim(a, b[:, :8], data_range=1.0)


# --- depth -----------------------------------------------------------------------------------------------------


def _gt(seed: int = 0, shape=(2, 12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 4.0, size=shape)


def test_depth_perfect_prediction():
    gt = _gt()
    err = depth.depth_errors(gt.copy(), gt)
    for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10"):
        assert err[key] == pytest.approx(0.0, abs=1e-12)
    assert err["delta1"] == err["delta2"] == err["delta3"] == 1.0


def test_depth_scaled_predictions():
    gt = _gt(shape=(1, 12, 16))
    double = depth.depth_errors(2 * gt, gt)
    assert double["abs_rel"] == pytest.approx(1.0)
    assert double["sq_rel"] == pytest.approx(gt.mean())
    assert double["rmse"] == pytest.approx(math.sqrt((gt**2).mean()))
    assert double["rmse_log"] == pytest.approx(math.log(2))
    assert double["log10"] == pytest.approx(math.log10(2))
    # ratio 2 exceeds 1.25, 1.5625 and 1.953125, so every delta is 0.
    assert double["delta1"] == double["delta2"] == double["delta3"] == 0.0
    # ratio 1.5 lies between 1.25 and 1.5625.
    wide = depth.depth_errors(1.5 * gt, gt)
    assert (wide["delta1"], wide["delta2"], wide["delta3"]) == (0.0, 1.0, 1.0)


def test_depth_invalid_pixels_clamping_and_per_image_mean():
    gt = _gt(shape=(2, 4, 4))
    pred = gt.copy()
    pred[1] *= 2
    gt[0, 0, 0], pred[0, 0, 0] = 0.0, 99.0  # invalid gt: the wild prediction there is ignored
    pred[0, 1, 1] = np.nan  # becomes min_depth, far from gt
    err = depth.depth_errors(torch.tensor(pred)[:, None], gt)
    nan_pixel = abs(1e-3 - gt[0, 1, 1]) / gt[0, 1, 1] / 15  # one of image 0's 15 valid pixels
    assert err["abs_rel"] == pytest.approx((nan_pixel + 1.0) / 2)
    assert err["images"] == 2 and err["protocol"]["averaging"].startswith("per image")
    with pytest.raises(FalError, match="max-depth"):
        depth.depth_errors(gt, gt * 100)


def test_eigen_crop_bounds():
    full = depth.eigen_crop_mask(480, 640)
    rows, cols = np.nonzero(full.any(axis=1))[0], np.nonzero(full.any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (45, 471, 41, 601)
    half = depth.eigen_crop_mask(240, 320)
    rows, cols = np.nonzero(half.any(axis=1))[0], np.nonzero(half.any(axis=0))[0]
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (22, 236, 20, 300)
    gt = np.ones((1, 48, 64)) * 2
    pred = gt.copy()
    pred[0, 0, :] = 8  # top rows fall outside the crop
    assert depth.depth_errors(pred, gt, eigen_crop=True)["abs_rel"] == 0.0


# --- segmentation ----------------------------------------------------------------------------------------------


def test_perfect_segmentation():
    gt = np.array([[0, 1], [2, 255]])
    scores = segmentation.segmentation_scores(segmentation.confusion(gt, gt, n_classes=3))
    assert (scores["pixel_accuracy"], scores["class_accuracy"], scores["class_iou"]) == pytest.approx((1, 1, 1))


def test_never_predicted_class_and_absent_classes():
    gt = np.array([0, 0, 1, 1, 255, 255])
    pred = np.array([0, 0, 0, 0, 2, 2])  # class 1 never predicted; ignore pixels predicted as 2 do not count
    hist = segmentation.confusion(pred, gt, n_classes=4)
    assert hist.sum() == 4 and hist.dtype == np.int64
    scores = segmentation.segmentation_scores(hist)
    assert scores["pixel_accuracy"] == 0.5
    assert scores["per_class_iou"][1] == 0.0 and scores["per_class_iou"][0] == 0.5
    assert np.isnan(scores["per_class_iou"][2]) and np.isnan(scores["per_class_iou"][3])
    assert scores["class_iou"] == pytest.approx(0.5 / 4)  # pix2pix: absent classes 2 and 3 count as 0
    assert scores["class_accuracy"] == pytest.approx(1 / 4)
    present = segmentation.segmentation_scores(hist, class_means="present")
    assert present["class_iou_present"] == pytest.approx(0.25)  # nanmean over classes 0 and 1 only
    assert present["class_accuracy_present"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert "class_iou" not in present


def test_confusion_sums_and_rejects_out_of_range():
    gt = torch.tensor([0, 1, 1])
    hist = segmentation.confusion(gt, gt, n_classes=2) + segmentation.confusion(torch.tensor([1, 1, 0]), gt, 2)
    np.testing.assert_array_equal(hist, [[1, 1], [1, 3]])
    with pytest.raises(FalError, match="outside"):
        segmentation.confusion(np.array([5]), np.array([0]), n_classes=2)


def test_cityscapes_tables():
    assert len(segmentation.CITYSCAPES_TRAIN_CLASSES) == 19 == len(segmentation.CITYSCAPES_COLORS)
    table = segmentation.LABEL_ID_TO_TRAIN_ID
    assert table.shape == (256,) and table.dtype == np.uint8
    assert (table[7], table[26], table[33], table[0], table[34], table[255]) == (0, 13, 18, 255, 255, 255)
    assert sorted(table[table != 255]) == list(range(19))
    exact = segmentation.CITYSCAPES_COLORS[None]  # (1, 19, 3)
    np.testing.assert_array_equal(segmentation.colors_to_train_ids(exact), np.arange(19)[None])
    noisy = np.array([[[126, 66, 129], [1, 2, 140]]], dtype=np.uint8)
    np.testing.assert_array_equal(segmentation.colors_to_train_ids(noisy), [[0, 13]])


# --- voxel -----------------------------------------------------------------------------------------------------


def _cube(r: int, lo: int, hi: int) -> np.ndarray:
    g = np.zeros((r, r, r), dtype=bool)
    g[lo:hi, lo:hi, lo:hi] = True
    return g


def test_voxel_iou_and_pairwise():
    small, big = _cube(4, 0, 2), _cube(4, 0, 4)
    assert voxel.voxel_iou(small, big) == pytest.approx(8 / 64)
    assert voxel.voxel_iou(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)) == 1.0
    iou = voxel.pairwise_iou(np.stack([small, big]), np.stack([big, small, ~big]))
    expected = torch.tensor([[8 / 64, 1.0, 0.0], [1.0, 8 / 64, 0.0]], dtype=torch.float64)
    assert iou.shape == (2, 3) and torch.allclose(iou, expected)
    with pytest.raises(FalError, match="threshold"):
        voxel.voxel_iou(np.full((4, 4, 4), 0.7), small)
    assert voxel.voxel_iou(voxel.binarize(np.full((4, 4, 4), 0.7)), big) == 1.0


def test_coverage_and_mmd():
    real = np.stack([_cube(8, 0, 8), _cube(8, 0, 4), _cube(8, 4, 8)])
    generated = np.stack([_cube(8, 0, 8), _cube(8, 0, 8), _cube(8, 0, 4)])
    # Nearest reals: 0, 0, 1 → 2 of 3 covered. Real 2 (a 4³ cube) is best matched by the full cube: IoU 64/512.
    assert voxel.coverage(generated, real) == pytest.approx(2 / 3)
    assert voxel.minimum_matching_distance(generated, real) == pytest.approx((0 + 0 + (1 - 64 / 512)) / 3)
    metrics = voxel.voxel_metrics(torch.from_numpy(generated), real)
    assert metrics["coverage"] == pytest.approx(2 / 3) and "IoU" in metrics["protocol"]
