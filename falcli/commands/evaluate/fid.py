"""`fal evaluate fid A B`: FID (and KID) between image folders, pytorch-fid `.npz` statistics and checkpoints.

A and B are each a folder of images, an `.npz` with mu and sigma, or a `.pt` checkpoint — whose samples are
generated on the fly, one FID per feedback step. Features come from pytorch-fid's FID Inception (weights from
the torch hub cache or --weights, checked against the official SHA-256) or from a judge's feature space.

Faster than pytorch-fid's own pipeline with the same value: images are decoded to uint8 in parallel workers
and resized on the device inside the network (4× less data than float batches), and the trace term is taken
from eigenvalues instead of scipy's sqrtm (falcli/metrics/fid.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.judges import provision
from falcli.metrics import fid as fidlib
# The feature spaces, the samples of a checkpoint and the image task's evaluation live below the commands
# (metrics/feature_space.py, tasks/generation.py, tasks/image/evaluate.py); their names stay importable here.
from falcli.metrics.feature_space import COVERAGE_K, INCEPTION_MIN_IMAGES, FeatureSpace, add_coverage, batches, \
    inception_space, statistics_of  # noqa: F401
from falcli.resolve import restore
from falcli.tasks import TASKS
from falcli.tasks.base import JudgeNeed
from falcli.tasks.generation import generate_steps
from falcli.tasks.image.config import IMAGE_SIZES
from falcli.tasks.image.evaluate import evaluate_image_steps, judge_space  # noqa: F401


@dataclass
class Side:
    """One side of the comparison: statistics per step (one entry unless it is a checkpoint)."""

    label: str                          # what it is, for the report
    stats: list[tuple[np.ndarray, np.ndarray]] | None  # None when only KID is asked for (no covariance needed)
    features: list[np.ndarray] | None   # None for .npz statistics (no KID possible)
    count: int | None                   # images per step (None for .npz)
    steps: list[int] | None = None      # feedback steps of a checkpoint's samples
    stats_label: str | None = None      # .npz written by fal: the label of the weights that made it


# --- feature spaces ---

def default_shapes_judge(image_size: int | None, device: torch.device) -> Path:
    """The shapes judge for `image_size`-pixel images, from the user cache or trained there now; refused before
    anything is trained where it cannot apply."""
    if image_size is None:
        raise FalError("--feature-space judge needs images to know the judge's size; pass judge:PATH")
    if image_size not in IMAGE_SIZES:
        raise FalError(f"--feature-space judge: the shapes judge scores {', '.join(f'{s}²' for s in IMAGE_SIZES)} "
                       f"images, but these are {image_size}²; use --feature-space inception")
    need = JudgeNeed("judge", "shapes_classifier.yaml", {"data.image_size": image_size})
    return provision.provide(provision.judge_recipe(need), device)


def make_feature_space(spec: str, dims: int, weights: Path | None, allow_unofficial: bool,
                       device: torch.device, image_size: int | None = None) -> FeatureSpace:
    """'inception', 'judge' (the default shapes judge) or 'judge:PATH'."""
    if spec == "inception":
        return inception_space(dims, weights, allow_unofficial, device)
    if spec == "judge":
        return judge_space(default_shapes_judge(image_size, device), device, "default shapes judge")
    if spec.startswith("judge:"):
        return judge_space(Path(spec[len("judge:"):]), device)
    raise FalError(f"--feature-space {spec!r}: expected inception, judge or judge:PATH")


# --- the sides A and B ---

def _kind(path: Path) -> str:
    if path.suffix == ".npz":
        if not path.is_file():  # said before any weights are asked for or features extracted
            raise FalError(f"{path}: no such statistics file (write one with `fal evaluate fid IMAGES {path} "
                           f"--save-stats`)")
        return "stats"
    if path.suffix == ".pt" or (path / "checkpoints").is_dir():  # a checkpoint, or a run folder (its newest)
        return "checkpoint"
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise FalError(f"{path}: no such folder or file (pass a folder of images, a .npz or a .pt checkpoint)")
    raise FalError(f"{path}: not a folder of images, a .npz statistics file or a .pt checkpoint")


def folder_side(path: Path, space: FeatureSpace, batch_size: int, workers: int, with_stats: bool = True) -> Side:
    batches = fidlib.image_folder_batches(path, batch_size, workers)
    if space.image_size is not None and batches.image_size != (space.image_size, space.image_size):
        width, height = batches.image_size
        raise FalError(f"{path}: {width}×{height} images, but the judge scores {space.image_size}² images only")
    features = space.extract(batches)
    stats = [statistics_of(features, space, str(path))] if with_stats else None
    return Side(f"folder {path} ({batches.count} images)", stats, [features], batches.count)


def checkpoint_side(path: Path, space_for: Callable[[int], FeatureSpace], device: torch.device,
                    steps: int | None, num_samples: int | None, batch_size: int,
                    with_stats: bool = True) -> tuple[Side, FeatureSpace]:
    restored = restore(path, device)  # G_ema when the run kept one
    recipe, G, D, payload = restored.recipe, restored.sampler, restored.D, restored.payload
    task = TASKS[recipe.task]
    steps = steps or recipe.feedback.sampling_steps
    num_samples = num_samples or recipe.evaluate.num_samples
    images, _ = generate_steps(task, G, D, recipe, device, steps, num_samples)
    space = space_for(images[0].shape[-1])
    if space.image_size is not None and images[0].shape[-1] != space.image_size:
        raise FalError(f"{path}: makes {images[0].shape[-1]}² images, but the judge scores {space.image_size}² "
                       f"images only")
    if with_stats and len(images[0]) <= space.dims:  # before the extraction, not after it
        other = f", or a smaller --dims{_JUDGE_HINT}" if space.name == "inception" else ""  # --dims is Inception's
        raise FalError(f"{path}: {len(images[0])} samples for {space.dims}-dim features gives a singular covariance; "
                       f"pass --num-samples {space.dims + 1} or more{other}")
    features = [space.extract(batches(x, batch_size)) for x in images]
    stats = [statistics_of(f, space, f"{path} step {t}") for t, f in enumerate(features, 1)] if with_stats else None
    label = f"checkpoint {path} (iteration {payload['iteration']}, {restored.generator}, {num_samples} samples per step)"
    return Side(label, stats, features, num_samples, list(range(1, steps + 1))), space


def stats_side(path: Path) -> Side:
    mu, sigma = fidlib.load_stats(path)
    return Side(f"statistics {path} (dims {mu.shape[0]})", [(mu, sigma)], None, None,
                stats_label=fidlib.stats_label(path))


# --- the command ---

def fid_command(a: str | Path, b: str | Path, dims: int = 2048, weights: Path | None = None,
                allow_unofficial: bool = False, kid: bool = False, save_stats: bool = False,
                device: str = "auto", batch_size: int = 50, workers: int | None = None,
                steps: int | None = None, num_samples: int | None = None,
                feature_space: str = "inception", fid: bool = True, kid_subset_size: int = 1000,
                started: Callable[[], None] | None = None) -> dict:
    """FID (and KID) between A and B; one row per feedback step when a side is a checkpoint.

    save_stats: as pytorch-fid's --save-stats, A is the source (folder or checkpoint) and B the `.npz` to
    write (a checkpoint with several steps writes B-step1.npz, B-step2.npz, …); nothing is compared.
    `started` is called once the inputs are checked, before weights are loaded or features extracted.
    Returns {"rows": [{"step", ["fid"], ["kid", "kid_std"]}], "protocol": {...}, "saved": [paths]}; `fid=False`
    (`fal evaluate kid`) skips the covariances, which KID does not need. Image counts too small for FID's
    covariance (<= dims) or KID's subsets (< kid_subset_size) are refused before any features are extracted.
    """
    if batch_size < 1:
        raise FalError(f"--batch-size must be >= 1 (got {batch_size})")
    if workers is None:
        workers = min(8, os.cpu_count() or 1)  # pytorch-fid's default
    torch_device = pick_device(device)
    a, b = Path(a), Path(b)
    kinds = [_kind(a), "stats" if save_stats else _kind(b)]
    if save_stats:
        if kinds[0] == "stats":
            raise FalError(f"--save-stats: {a} already holds statistics; pass a folder of images or a checkpoint")
        if b.suffix != ".npz":
            raise FalError(f"--save-stats: the output {b} must end in .npz (pytorch-fid's format)")
        if b.exists():  # before the features are extracted, not after
            raise FalError(f"{b}: already exists; choose another output or delete it")
    elif kinds.count("checkpoint") == 2:
        raise FalError("compare one checkpoint at a time: pass a folder or .npz as the other side")
    if kid and "stats" in kinds and not save_stats:
        which = a if kinds[0] == "stats" else b
        raise FalError(f"--kid needs images on both sides, but {which} holds only statistics (mu, sigma)")

    with_stats = fid or save_stats  # KID alone needs no covariance, so it works with fewer images than dims
    _check_counts([_planned_count(path, kind, batch_size, num_samples) for path, kind in zip((a, b), kinds)],
                  (a, b), dims if with_stats and feature_space == "inception" else None,
                  kid_subset_size if kid and not save_stats else None)

    if feature_space == "judge":  # the default judge must fit every folder before one is trained or read
        sizes = {path: fidlib.image_folder_batches(path, batch_size).image_size
                 for path, kind in zip((a, b), kinds) if kind == "folder"}
        for path, (width, height) in sizes.items():
            if width != height or width not in IMAGE_SIZES:
                raise FalError(f"--feature-space judge: the shapes judge scores "
                               f"{', '.join(f'{s}²' for s in IMAGE_SIZES)} images, but {path} holds {width}×{height} "
                               f"images; use --feature-space inception")
        if len(set(sizes.values())) > 1:
            (pa, sa), (pb, sb) = sizes.items()
            raise FalError(f"{pa} holds {sa[0]}×{sa[1]} images but {pb} {sb[0]}×{sb[1]}; a judge scores one size")

    if started is not None:  # every refusal above comes before the caller's bar is drawn
        started()
    built: list[FeatureSpace] = []

    def space_for(image_size: int | None) -> FeatureSpace:  # built once, when the first images need it
        if not built:
            built.append(make_feature_space(feature_space, dims, weights, allow_unofficial, torch_device,
                                            image_size))
        return built[0]

    def resolve(path: Path, kind: str) -> Side:
        if kind == "stats":
            return stats_side(path)
        if kind == "checkpoint":
            return checkpoint_side(path, space_for, torch_device, steps, num_samples, batch_size, with_stats)[0]
        if feature_space == "judge":  # the default judge follows the folder's image size
            space_for(fidlib.image_folder_batches(path, batch_size).image_size[0])
        return folder_side(path, space_for(None), batch_size, workers, with_stats)

    side_a = resolve(a, kinds[0])
    if save_stats:
        protocol = _protocol(built[0], side_a, None)
        return {"rows": [], "saved": _save(side_a, b, protocol.get("label")), "protocol": protocol}
    side_b = resolve(b, kinds[1])
    space = built[0] if built else None
    rows = []
    for t in range(max(len(side.stats or side.features) for side in (side_a, side_b))):
        row: dict = {"step": t + 1 if (side_a.steps or side_b.steps) else None}
        if fid:
            sa, sb = side_a.stats[min(t, len(side_a.stats) - 1)], side_b.stats[min(t, len(side_b.stats) - 1)]
            row["fid"] = fidlib.frechet_distance(*sa, *sb)
        if kid:
            fa = side_a.features[min(t, len(side_a.features) - 1)]
            fb = side_b.features[min(t, len(side_b.features) - 1)]
            row["kid"], row["kid_std"] = fidlib.kid(fa, fb, subset_size=kid_subset_size)
        rows.append(row)
    return {"rows": rows, "saved": [], "protocol": _protocol(space, side_a, side_b)}


def _planned_count(path: Path, kind: str, batch_size: int, num_samples: int | None) -> int | None:
    """Images a side will give, when known without extracting anything (None: statistics, or a checkpoint
    scored at its recipe's sample count, which is checked once generated)."""
    if kind == "folder":
        return fidlib.image_folder_batches(path, batch_size).count
    if kind == "checkpoint":
        return num_samples
    return None


# Every --dims is an Inception block (weights to download); fal's own images have a space that needs none.
_JUDGE_HINT = f"; for fal's {'/'.join(f'{s}²' for s in IMAGE_SIZES)} images, --feature-space judge (128-d) needs no download"


def _check_counts(counts: list[int | None], paths: tuple[Path, Path], dims: int | None,
                  kid_subset_size: int | None) -> None:
    """Refuse up front what FID's covariance or KID's subsets would refuse after minutes of extraction."""
    for count, path in zip(counts, paths):
        if dims is not None and count is not None and count <= dims:
            raise FalError(f"{path}: {count} samples for {dims}-dim features gives a singular covariance; use "
                           f"more images (>= {dims + 1}) or a smaller --dims ({'/'.join(map(str, fidlib.FID_DIMS))})"
                           f"{_JUDGE_HINT}")
    if kid_subset_size is not None:
        fidlib.check_kid_counts(*(kid_subset_size if c is None else c for c in counts), kid_subset_size)


def _save(side: Side, out: Path, label: str | None) -> list[str]:
    """pytorch-fid --save-stats: write (mu, sigma); refuse to overwrite, as pytorch-fid 0.3.0 does."""
    if len(side.stats) == 1:
        targets = [out]
    else:
        targets = [out.with_name(f"{out.stem}-step{t}.npz") for t in side.steps]
    for target in targets:
        if target.exists():
            raise FalError(f"{target}: already exists; choose another output or delete it")
    return [str(fidlib.save_stats(target, *stats, label=label)) for target, stats in zip(targets, side.stats)]


def _protocol(space: FeatureSpace | None, a: Side, b: Side | None) -> dict:
    info = dict(space.info) if space is not None else {"feature_space": "from the .npz files"}
    if space is not None and space.name == "inception":
        info["label"] = ("official pytorch-fid Inception weights: comparable with published FIDs"
                         if info["official"] else "NOT COMPARABLE: unofficial Inception weights")
    elif space is not None:
        info["label"] = "judge feature space: comparable only between runs scored by the same judge"
    for side in (a, b):  # statistics made with unofficial weights keep the result not comparable
        if side is not None and side.stats_label and (side.stats_label.startswith("NOT COMPARABLE")
                                                      or "label" not in info):
            info["label"] = f"{side.stats_label} ({side.label})"
    info["a"] = a.label
    info["n_a"] = a.count
    if b is not None:
        info["b"] = b.label
        info["n_b"] = b.count
    return info


def protocol_lines(protocol: dict) -> list[str]:
    """What `fal evaluate fid` prints before its table: the comparability label, then how it was measured."""
    lines = [protocol.get("label", protocol.get("feature_space", ""))]
    keys = ("network", "weights", "sha256_prefix", "dims", "resize", "a", "n_a", "b", "n_b")
    return lines + [f"{key}: {protocol[key]}" for key in keys if key in protocol]
