"""Quality and coverage as two numbers: improved precision & recall, density & coverage, on feature matrices.

Both families estimate each distribution's support by k-nearest-neighbour balls around its samples. With real
features X (N, d) and generated features Y (M, d), NND_k(a) the distance from a to its k-th nearest neighbour in
its own set (the point itself not counted), and B(a, r) the closed ball of radius r around a:

Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019; k = 3):
    precision = 1/M · Σ_j 1[∃ i: Y_j ∈ B(X_i, NND_k(X_i))]    share of fakes inside the real manifold
    recall    = 1/N · Σ_i 1[∃ j: X_i ∈ B(Y_j, NND_k(Y_j))]    share of reals inside the fake manifold

Density and coverage (Naeem et al., ICML 2020; k = 5), which count real balls only (robust to fake outliers):
    density   = 1/(k·M) · Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))]   ≈ 1 when Y follows X (on the modes it keeps);
                                                                above 1 when Y crowds the densest reals
    coverage  = 1/N · Σ_i 1[∃ j: Y_j ∈ B(X_i, NND_k(X_i))]      share of real balls holding at least one fake

A mode-collapsed generator scores high precision (and density) but low recall and coverage: the pair tells
"better samples" apart from "fewer kinds of samples". Distances are computed in row chunks, so 10k × 10k sets
need only chunk × N floats at a time. Inputs are torch tensors or numpy arrays; features stay in their dtype
(float64 inputs are computed in float64).
"""
from __future__ import annotations

import numpy as np
import torch

from falcli.errors import FalError

CHUNK = 1024  # rows of the distance matrix held at once: CHUNK × N floats


def _features(x, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if tensor.dim() != 2 or len(tensor) == 0:
        raise FalError(f"{name}: expected a non-empty (N, d) feature matrix, got shape {tuple(tensor.shape)}")
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def knn_radii(x: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """NND_k of every row of x (N, d): distance to its k-th nearest other row, (N,)."""
    if not 1 <= k < len(x):
        raise FalError(f"k = {k} nearest neighbours need more than k samples (got {len(x)})")
    radii = []
    for start in range(0, len(x), chunk):
        distances = torch.cdist(x[start:start + chunk], x)
        # The k+1 smallest include the row itself (distance 0), so the (k+1)-th is the k-th other neighbour.
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _in_balls(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Number of balls B(centres_i, radii_i) holding each point, (len(points),)."""
    counts = []
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start:start + chunk], centres)
        counts.append((distances <= radii[None, :]).sum(dim=1))
    return torch.cat(counts)


def _nearest(points: torch.Tensor, others: torch.Tensor, chunk: int) -> torch.Tensor:
    """Distance from each row of points to its nearest row of others."""
    return torch.cat([torch.cdist(points[s:s + chunk], others).min(dim=1).values
                      for s in range(0, len(points), chunk)])


def precision_recall(real, fake, k: int = 3, chunk: int = CHUNK) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fake against real features."""
    real, fake = _features(real, "real features"), _features(fake, "generated features")
    _check_width(real, fake)
    fake = fake.to(real.dtype)
    precision = (_in_balls(fake, real, knn_radii(real, k, chunk), chunk) > 0).double().mean()
    recall = (_in_balls(real, fake, knn_radii(fake, k, chunk), chunk) > 0).double().mean()
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real, fake, k: int = 5, chunk: int = CHUNK) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) of fake against real features."""
    real, fake = _features(real, "real features"), _features(fake, "generated features")
    _check_width(real, fake)
    fake = fake.to(real.dtype)
    radii = knn_radii(real, k, chunk)
    density = _in_balls(fake, real, radii, chunk).double().sum() / (k * len(fake))
    coverage = (_nearest(real, fake, chunk) <= radii).double().mean()
    return {"density": float(density), "coverage": float(coverage)}


def coverage_metrics(real, fake, chunk: int = CHUNK) -> dict[str, float]:
    """All four with the papers' k (3 for precision/recall, 5 for density/coverage)."""
    return {**precision_recall(real, fake, 3, chunk), **density_coverage(real, fake, 5, chunk)}


def _check_width(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise FalError(f"real and generated features differ in width ({real.shape[1]} vs {fake.shape[1]}); "
                       f"embed both with the same network")
