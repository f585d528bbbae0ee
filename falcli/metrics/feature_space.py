"""Feature spaces for FID, KID and coverage: what turns uint8 image batches (B, 3, H, W) into (B, dims) features
(pytorch-fid's Inception here; a judge's in falcli/tasks/image/evaluate.py), batching, the Gaussian statistics,
and the coverage columns reported next to an FID."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from falcli.errors import FalError
from falcli.metrics import fid as fidlib
from falcli.metrics.coverage import DC_K, RealBalls

INCEPTION_MIN_IMAGES = 2048             # task evaluation reports Inception FID only from this many images per side
COVERAGE_K = DC_K                       # the largest k of the k-NN balls (density and coverage)


@dataclass
class FeatureSpace:
    """A feature extractor for uint8 image batches (B, 3, H, W) → (B, dims), and what it is."""

    name: str                           # "inception" or "judge"
    dims: int
    extract: Callable[[Iterable[torch.Tensor]], np.ndarray]
    info: dict                          # the protocol: network, weights, hash, official, resize …
    image_size: int | None = None       # a judge scores only images of its training size


def inception_space(dims: int, weights: Path | None, allow_unofficial: bool, device: torch.device,
                    random_weights: bool = False) -> FeatureSpace:
    model, info = fidlib.load_inception(dims, weights, allow_unofficial, random_weights, device)
    info = {**info, "feature_space": "inception", "comparable": bool(info["official"])}
    return FeatureSpace("inception", dims, partial(fidlib.extract_features, model=model, device=device), info)


def batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    return (images[i:i + batch_size] for i in range(0, len(images), batch_size))


def statistics_of(features: np.ndarray, space: FeatureSpace, what: str) -> tuple[np.ndarray, np.ndarray]:
    if space.name == "judge" and len(features) <= space.dims:  # n points span at most n − 1 dimensions
        raise FalError(f"{what}: {len(features)} images for the judge's {space.dims}-dim features gives a singular "
                       f"covariance; use at least {space.dims + 1} images")
    try:
        return fidlib.statistics(features)
    except FalError as error:
        raise FalError(f"{what}: {error}") from None


def add_coverage(rows: list[dict], real: np.ndarray, fakes: list[np.ndarray], space: str, say) -> None:
    """Coverage next to quality, per step, in the same feature space as the FID: improved precision/recall
    (k = 3) and density/coverage (k = 5) as `<name>_<space>` (falcli/metrics/coverage.py)."""
    if min(len(real), *(len(f) for f in fakes)) <= COVERAGE_K:
        say(f"precision/recall/density/coverage in {space} space need more than {COVERAGE_K} images per side; "
            f"skipped")
        return
    balls = RealBalls(real)  # the real side once for every step
    for row, fake in zip(rows, fakes):
        for name, value in balls.score(fake).items():
            row[f"{name}_{space}"] = value
