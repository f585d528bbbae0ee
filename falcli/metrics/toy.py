"""Metrics for 2D mixtures of Gaussians: mode coverage, sample quality and distance to the true distribution.

Conventions follow the mode-collapse literature (Metz et al. 2017, Srivastava et al. 2017, Lin et al. 2018):
a sample is *high quality* if it lies within 3σ of a mode; a mode is *covered* if it received at least a fifth
of its fair share of samples (N / K) within 3σ.
"""
from __future__ import annotations

import torch

from falcli.metrics.coverage import coverage_metrics


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


def toy_metrics(samples: torch.Tensor, centers: torch.Tensor, std: float, reference: torch.Tensor,
                d_logits: torch.Tensor | None = None) -> dict[str, float]:
    """Modes covered, high-quality share, sliced Wasserstein distance to `reference`, precision/recall and
    density/coverage against `reference` in point space (falcli/metrics/coverage.py), and mean D logit."""
    samples = samples.detach().float().cpu()
    index, distance = nearest_mode(samples, centers.cpu())
    good = distance <= 3 * std
    counts = torch.bincount(index[good], minlength=len(centers))
    fair_share = len(samples) / len(centers)
    result = {
        "modes_covered": int((counts >= 0.2 * fair_share).sum()),
        "modes_total": len(centers),
        "high_quality": float(good.float().mean()),
        "sliced_wasserstein": sliced_wasserstein(samples, reference.cpu()),
        **_coverage(reference.cpu().double(), samples.double()),
    }
    if d_logits is not None:
        result["d_logit"] = float(d_logits.detach().float().mean())
    return result


def _coverage(reference: torch.Tensor, samples: torch.Tensor) -> dict[str, float]:
    """Precision/recall/density/coverage; NaN for sets of 5 points or fewer (k = 5 neighbours need more)."""
    if min(len(reference), len(samples)) <= 5:
        return dict.fromkeys(("precision", "recall", "density", "coverage"), float("nan"))
    return coverage_metrics(reference, samples)
