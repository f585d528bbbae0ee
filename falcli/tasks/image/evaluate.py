"""The image task's per-step metrics (D's mean logit, FID in the shapes judge's and in Inception's feature
spaces, with coverage next to each), and the judge feature space they share with `fal evaluate fid`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from falcli.console import console
from falcli.errors import FalError
from falcli.judges.classifier import judge_features, load_judge
from falcli.metrics import fid as fidlib
from falcli.metrics.feature_space import INCEPTION_MIN_IMAGES, FeatureSpace, add_coverage, batches, \
    inception_space, statistics_of
from falcli.metrics.weights import INCEPTION_FID, _candidates, _missing_message
from falcli.tasks.generation import generate_steps
from falcli.tasks.image.data import load_images


def judge_space(path: Path, device: torch.device, where: str | None = None) -> FeatureSpace:
    """The penultimate features of the shapes-classifier judge at `path` (the default one is found or trained
    by the command that needs it: falcli/judges/provision.py); `where` names it in the protocol."""
    net, size = load_judge(path, device)
    where = where or str(path)
    dims = net.embed.out_features

    def extract(batches: Iterable[torch.Tensor]) -> np.ndarray:
        rows = [judge_features(batch, net, device) for batch in batches]
        if not rows:
            raise FalError("no images to extract judge features from; check the folder is not empty")
        return np.concatenate(rows)

    info = {"feature_space": "judge", "network": f"shapes-classifier penultimate features ({where})",
            "weights": str(path), "dims": dims, "resize": f"none (the judge scores {size}² images only)",
            "official": False, "comparable": False, "note": "comparable only between runs scored by this judge"}
    return FeatureSpace("judge", dims, extract, info, image_size=size)


def evaluate_image_steps(task, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                         num_samples: int, say=None, weights: Path | None = None,
                         allow_unofficial: bool = False, judge: Path | None = None) -> list[dict[str, float]]:
    """Per step: `d_logit` (D's mean logit on the samples), `fid_judge` (in the feature space of `judge`, a
    shapes-classifier judge.pt: `fal evaluate` gives the default one for shapes runs), `fid_inception` (when
    the weights are on disk, or given as `weights`, and both sides have >= 2048 images). The reference is the
    val split (train when a prepared folder has no val split). `say` receives one line per part that was
    skipped and why."""
    if say is None:
        say = lambda message: console.print(f"note: {message}", markup=False)  # noqa: E731
    if weights is not None and not Path(weights).is_file():  # before any work, even if too few images use it
        raise FalError(f"--weights {weights}: no such file; {_missing_message(INCEPTION_FID.filename, INCEPTION_FID.url)}")
    space = judge_space(Path(judge), device) if judge is not None else None
    if space is not None and space.image_size != recipe.data.image_size:
        raise FalError(f"{judge}: a judge for {space.image_size}² images, but this run makes "
                       f"{recipe.data.image_size}² images; pass a judge trained at that size")
    images, logits = generate_steps(task, G, D, recipe, device, steps, num_samples)
    rows: list[dict[str, float]] = [{"d_logit": value} for value in logits]
    reference = torch.from_numpy(np.array(load_images(recipe.data, "val")["images"])).permute(0, 3, 1, 2)

    if space is None and recipe.data.source == "shapes":
        say("no fid_judge: no shapes judge given (`fal evaluate` trains the default one on first use; or pass "
            "--judge PATH)")
    elif space is not None:
        real_features = space.extract([reference])
        fake_features = [space.extract([x]) for x in images]
        if min(num_samples, len(reference)) <= space.dims:  # a covariance of fewer points is singular
            say(f"fid_judge needs more than {space.dims} images per side ({num_samples} samples, {len(reference)} "
                f"val images); skipped: raise evaluate.num_samples and data.shapes_val")
        else:
            real = statistics_of(real_features, space, "val split")
            for row, fake in zip(rows, fake_features):
                row["fid_judge"] = fidlib.frechet_distance(*statistics_of(fake, space, "samples"), *real)
        add_coverage(rows, real_features, fake_features, "judge", say)

    if weights is None and not any(p.is_file() for p in _candidates(INCEPTION_FID.filename)):
        say(f"no Inception FID: {_missing_message(INCEPTION_FID.filename, INCEPTION_FID.url)}")
    elif min(num_samples, len(reference)) < INCEPTION_MIN_IMAGES:
        say(f"Inception FID needs >= {INCEPTION_MIN_IMAGES} images per side ({num_samples} samples, "
            f"{len(reference)} references); skipped")
    else:
        space = inception_space(2048, weights, allow_unofficial, device)
        if not space.info["official"]:
            say(f"fid_inception from unofficial weights {space.info['weights']}: not comparable with published FIDs")
        real_features = space.extract(batches(reference, 50))
        fake_features = [space.extract(batches(x, 50)) for x in images]
        real = fidlib.statistics(real_features)
        for row, fake in zip(rows, fake_features):
            row["fid_inception"] = fidlib.frechet_distance(*fidlib.statistics(fake), *real)
        add_coverage(rows, real_features, fake_features, "inception", say)
    return rows
