"""Improved precision/recall and density/coverage (falcli/metrics/coverage.py) against hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from falcli.errors import FalError
from falcli.metrics.coverage import RealBalls, coverage_metrics, density_coverage, knn_radii, precision_recall


def column(*values):
    return torch.tensor(values, dtype=torch.float64)[:, None]


def test_knn_radii_closed_form():
    x = column(0, 1, 3, 7)
    assert knn_radii(x, 1).tolist() == [1, 1, 2, 4]
    assert knn_radii(x, 2).tolist() == [3, 2, 3, 6]


def test_hand_computed_1d_example():
    # reals 0, 1, 2, 3 (k = 1: every real ball has radius 1); fakes 0.5 and 10 (fake radii 9.5).
    real, fake = column(0, 1, 2, 3), column(0.5, 10)
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == 0.5  # 0.5 lies in the balls of 0 and 1; 10 in none
    assert pr["recall"] == 1.0     # every real lies within 9.5 of the fake 0.5
    dc = density_coverage(real, fake, k=1)
    assert dc["density"] == 1.0    # (2 balls holding 0.5 + 0 holding 10) / (k · M = 2)
    assert dc["coverage"] == 0.5   # the balls of 0 and 1 hold a fake; those of 2 and 3 do not


def test_mode_collapse_keeps_precision_and_loses_recall_and_coverage():
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(0, 0.1, (200, 2)), rng.normal(5, 0.1, (200, 2))])
    collapsed = rng.normal(0, 0.1, (400, 2))  # all fakes on the first of the two modes
    metrics = coverage_metrics(real, collapsed)
    assert metrics["precision"] > 0.9
    assert 0.4 < metrics["recall"] < 0.6
    assert 0.4 < metrics["coverage"] < 0.6
    assert 0.8 < metrics["density"] < 1.2  # density is per fake: fakes on one mode still sit as reals do


def test_identical_sets_score_one():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    metrics = coverage_metrics(x, x.clone())
    assert metrics["precision"] == metrics["recall"] == metrics["coverage"] == 1.0
    assert metrics["density"] >= 1.0  # each fake is at least in its own twin's ball, and in k others' on average


def test_disjoint_far_sets_score_zero():
    real = torch.randn(100, 3)
    metrics = coverage_metrics(real, real + 1000.0)
    assert metrics == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_chunking_does_not_change_the_answer():
    generator = torch.Generator().manual_seed(2)
    real, fake = torch.randn(257, 5, generator=generator), torch.randn(190, 5, generator=generator) * 1.3
    assert coverage_metrics(real, fake, chunk=16) == coverage_metrics(real, fake)


@pytest.mark.parametrize("dtype, chunk", [(torch.float32, 1024), (torch.float64, 1024), (torch.float32, 37)])
def test_shared_real_side_equals_the_separate_metrics_to_the_bit(dtype, chunk):
    """RealBalls computes the real radii once and shares each distance matrix between the four metrics; every
    number must still be the one the metric's own function gives, for several generated sets in a row."""
    generator = torch.Generator().manual_seed(3)
    real = torch.randn(300, 6, generator=generator, dtype=dtype)
    balls, seen = RealBalls(real, chunk), []
    for scale in (0.5, 1.0, 2.0):  # narrow, matched, spread: different balls hold the fakes
        fake = torch.randn(250, 6, generator=generator, dtype=dtype) * scale
        separate = {**precision_recall(real, fake, 3, chunk), **density_coverage(real, fake, 5, chunk)}
        assert balls.score(fake) == separate
        seen.append(separate)
    for name in ("precision", "recall", "density", "coverage"):  # the sets differ in every metric: not vacuous
        assert len({row[name] for row in seen}) == 3


@pytest.mark.parametrize("real, fake, match", [
    (torch.zeros(5, 2), torch.zeros(5, 3), "differ in width"),
    (torch.zeros(5), torch.zeros(5, 3), r"\(N, d\)"),
    (torch.zeros(3, 2), torch.zeros(5, 2), "k = 3"),
])
def test_bad_inputs_are_refused(real, fake, match):
    with pytest.raises(FalError, match=match):
        precision_recall(real, fake)


def test_equal_to_the_papers_reference_implementation_prdc():
    """The same four numbers as `prdc.compute_prdc` (Naeem et al.'s released code), called with each metric's
    own k: 3 for precision/recall (Kynkäänniemi et al.), 5 for density/coverage. Random continuous features, so
    prdc's strict ball (<) and a closed one cannot differ."""
    prdc = pytest.importorskip("prdc")  # dev extra
    generator = np.random.default_rng(0)
    real = generator.normal(size=(300, 16))
    fake = generator.normal(0.3, 1.2, size=(250, 16))
    ours = coverage_metrics(real, fake, chunk=64)
    at3, at5 = (prdc.compute_prdc(real, fake, nearest_k=k) for k in (3, 5))
    assert ours["precision"] == pytest.approx(at3["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(at3["recall"], abs=1e-12)
    assert ours["density"] == pytest.approx(at5["density"], abs=1e-12)
    assert ours["coverage"] == pytest.approx(at5["coverage"], abs=1e-12)
