"""Closed-form checks of the toy's distances to its mixture (falcli/metrics/toy.py)."""
from __future__ import annotations

import math

import pytest
import torch

from falcli.metrics.toy import reference_balls, sliced_wasserstein, sw_to_mixture, toy_metrics
from falcli.tasks.toy import DataConfig, mixture_centers, sample_mixture

SIGMA = 0.05


def point_mass_to_normal(a: float, sigma: float) -> float:
    """W1(δ_a, N(0, σ²)) = E|X − a| = a (2Φ(a/σ) − 1) + 2σ φ(a/σ)."""
    phi = math.exp(-0.5 * (a / sigma) ** 2) / math.sqrt(2 * math.pi)
    return a * math.erf(a / (sigma * math.sqrt(2))) + 2 * sigma * phi


@pytest.mark.parametrize("point", [(0.0, 0.0), (0.03, -0.02), (10.0, 0.0), (-3.0, 4.0)])
def test_a_point_mass_against_one_normal_is_the_closed_form_on_every_direction(point):
    # Far points exercise the part beyond the integration grid, near ones the grid itself.
    directions = 64
    angles = [j * math.pi / directions for j in range(directions)]
    expected = sum(point_mass_to_normal(point[0] * math.cos(t) + point[1] * math.sin(t), SIGMA)
                   for t in angles) / directions
    samples = torch.tensor([point]).repeat(100, 1)
    assert sw_to_mixture(samples, torch.zeros(1, 2), SIGMA, directions=directions) == pytest.approx(expected,
                                                                                                  rel=1e-4)


def test_the_mixtures_own_draws_approach_zero_and_a_collapse_does_not():
    data = DataConfig(mixture="ring")
    centers, generator = mixture_centers(data), torch.Generator().manual_seed(0)
    small, large = (sw_to_mixture(sample_mixture(data, n, generator), centers, data.sigma) for n in (500, 50_000))
    assert large < small and large < 0.012
    one_mode = centers[:1] + data.sigma * torch.randn(2500, 2, generator=generator)
    assert sw_to_mixture(one_mode, centers, data.sigma) > 1.0  # the other seven modes are 1.5–4 away from that one


def test_without_a_reference_draw_the_mixtures_own_draws_score_closer_to_zero():
    data = DataConfig(mixture="ring")
    centers, generator = mixture_centers(data), torch.Generator().manual_seed(1)
    to_mixture = torch.tensor([sw_to_mixture(sample_mixture(data, 2500, generator), centers, data.sigma)
                               for _ in range(6)])
    to_reference = torch.tensor([sliced_wasserstein(sample_mixture(data, 2500, generator),
                                                    sample_mixture(data, 2500, generator)) for _ in range(6)])
    assert to_mixture.mean() < to_reference.mean()


def test_sample_order_does_not_matter_and_toy_metrics_reports_it():
    data = DataConfig(mixture="grid")
    centers, generator = mixture_centers(data), torch.Generator().manual_seed(2)
    samples = sample_mixture(data, 1000, generator)
    value = sw_to_mixture(samples, centers, data.sigma)
    assert sw_to_mixture(samples.flip(0), centers, data.sigma) == pytest.approx(value, abs=1e-12)
    row = toy_metrics(samples, centers, data.sigma, sample_mixture(data, 1000, generator))
    assert row["sw_to_mixture"] == pytest.approx(value)


def test_a_shared_reference_scores_every_step_as_a_fresh_one():
    """ToyTask.evaluate prepares the reference's k-NN side once for its steps (reference_balls); the rows must be
    the ones toy_metrics gives without it."""
    data = DataConfig()
    centers, generator = mixture_centers(data), torch.Generator().manual_seed(4)
    reference = sample_mixture(data, 600, generator)
    balls = reference_balls(reference)
    for spread in (0.5, 3.0):
        samples = centers[:3].repeat(100, 1) + spread * data.sigma * torch.randn(300, 2, generator=generator)
        assert toy_metrics(samples, centers, data.sigma, reference, reference_balls=balls) == \
            toy_metrics(samples, centers, data.sigma, reference)
    assert reference_balls(reference[:5]) is None  # too few points for k = 5: the metrics are NaN then
