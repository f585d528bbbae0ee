"""Metrics for 2D mixtures of Gaussians: mode coverage, sample quality and distance to the true distribution.

Conventions follow the mode-collapse literature (Metz et al. 2017, Srivastava et al. 2017, Lin et al. 2018):
a sample is *high quality* if it lies within 3σ of a mode; a mode is *covered* if it received at least a fifth
of its fair share of samples (N / K) within 3σ.

Two distances to the true distribution: `sliced_wasserstein` against a reference draw of N points, and
`sw_to_mixture` against the mixture itself. The first carries the reference's own sampling noise (at N = 2500,
two draws of the mixture are 0.040 ± 0.014 apart, the size of the differences between models); the second has
only the samples' (the mixture's own draws score 0.028 ± 0.010 at N = 2500 and 0.006 ± 0.002 at N = 50 000).
"""
from __future__ import annotations

import math

import torch

from falcli.metrics.coverage import DC_K, RealBalls


def nearest_mode(points: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and distance to the nearest mode centre: points (N, 2), centers (K, 2) → (N,), (N,)."""
    distances = torch.cdist(points.double(), centers.double())
    distance, index = distances.min(dim=1)
    return index, distance


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between equal-size point sets (N, d): mean over random directions of
    the 1D W1 between sorted projections (Rabin et al. 2011)."""
    n = min(len(a), len(b))
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    pa = (a[:n].double().cpu() @ directions).sort(dim=0).values
    pb = (b[:n].double().cpu() @ directions).sort(dim=0).values
    return float((pa - pb).abs().mean())


def sw_to_mixture(samples: torch.Tensor, centers: torch.Tensor, std: float, directions: int = 64,
                  grid: int = 8192) -> float:
    """Sliced 1-Wasserstein distance from points (N, 2) to the isotropic mixture (centres (K, 2), equal weights,
    std σ) itself: the mean over directions u of W1 = ∫|F_N(x) − F(x)| dx between the samples' projected
    empirical CDF F_N and the mixture's projected CDF F (K 1D normals, means cₖ·u, std σ).

    The directions are evenly spaced over half a turn (W1 is the same for u and −u): in 2D that is a quadrature
    of the mean over all directions, with none of a random draw's noise. The integral runs on a grid from the
    lowest to the highest projected centre ± 8σ, where F is 0 or 1 to 1e-15; samples beyond it add their
    distance to its edge, exactly."""
    angles = torch.arange(directions, dtype=torch.float64) * (math.pi / directions)
    u = torch.stack([angles.cos(), angles.sin()])                                    # (2, J)
    projected = (samples.detach().double().cpu() @ u).T.sort(dim=1).values.contiguous()  # (J, N)
    means = (centers.double().cpu() @ u).T                                           # (J, K)
    low, high = means.min(dim=1).values - 8 * std, means.max(dim=1).values + 8 * std
    xs = (low[:, None] + torch.linspace(0, 1, grid, dtype=torch.float64) * (high - low)[:, None]).contiguous()
    mixture_cdf = 0.5 * (1 + torch.erf((xs[:, :, None] - means[:, None, :]) / (std * math.sqrt(2)))).mean(dim=2)
    sample_cdf = torch.searchsorted(projected, xs, right=True).double() / projected.shape[1]
    inside = torch.trapezoid((sample_cdf - mixture_cdf).abs(), xs, dim=1)
    beyond = ((low[:, None] - projected).clamp(min=0) + (projected - high[:, None]).clamp(min=0)).mean(dim=1)
    return float((inside + beyond).mean())


def mode_metrics(samples: torch.Tensor, centers: torch.Tensor, std: float) -> dict[str, float]:
    """Modes covered (of modes_total) and the high-quality share of points (N, 2): linear in N, unlike the k-NN
    metrics, so any number of points can be scored."""
    index, distance = nearest_mode(samples.detach().float().cpu(), centers.cpu())
    good = distance <= 3 * std
    counts = torch.bincount(index[good], minlength=len(centers))
    fair_share = len(samples) / len(centers)
    return {"modes_covered": int((counts >= 0.2 * fair_share).sum()), "modes_total": len(centers),
            "high_quality": float(good.float().mean())}


def toy_metrics(samples: torch.Tensor, centers: torch.Tensor, std: float, reference: torch.Tensor,
                d_logits: torch.Tensor | None = None, reference_balls: RealBalls | None = None) -> dict[str, float]:
    """Modes covered, high-quality share, sliced Wasserstein distances to `reference` and to the mixture,
    precision/recall and density/coverage against `reference` in point space (falcli/metrics/coverage.py), and
    mean D logit. `reference_balls` (`reference_balls(reference)`) saves the reference's k-NN radii when several
    sets are scored against one reference (the steps of one evaluation)."""
    samples = samples.detach().float().cpu()
    result = {
        **mode_metrics(samples, centers, std),
        "sliced_wasserstein": sliced_wasserstein(samples, reference.cpu()),
        "sw_to_mixture": sw_to_mixture(samples, centers, std),
        **_coverage(reference.cpu().double(), samples.double(), reference_balls),
    }
    if d_logits is not None:
        result["d_logit"] = float(d_logits.detach().float().mean())
    return result


def reference_balls(reference: torch.Tensor) -> RealBalls | None:
    """The reference's side of the k-NN metrics, for `toy_metrics`; None where they are NaN anyway."""
    return RealBalls(reference.cpu().double()) if len(reference) > DC_K else None


def _coverage(reference: torch.Tensor, samples: torch.Tensor, balls: RealBalls | None) -> dict[str, float]:
    """Precision/recall/density/coverage; NaN for sets of 5 points or fewer (k = 5 neighbours need more)."""
    if min(len(reference), len(samples)) <= DC_K:
        return dict.fromkeys(("precision", "recall", "density", "coverage"), float("nan"))
    return (balls if balls is not None else RealBalls(reference)).score(samples)
