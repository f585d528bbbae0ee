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
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.judges import provision
from falcli.metrics import fid as fidlib
from falcli.metrics.coverage import coverage_metrics
from falcli.core.runtime import pick_device
from falcli.tasks.base import JudgeNeed
from falcli.tasks.image.task import IMAGE_SIZES

INCEPTION_MIN_IMAGES = 2048             # task evaluation reports Inception FID only from this many images per side
COVERAGE_K = 5                          # the largest k of the k-NN balls (density and coverage)


@dataclass
class FeatureSpace:
    """A feature extractor for uint8 image batches (B, 3, H, W) → (B, dims), and what it is."""

    name: str                           # "inception" or "judge"
    dims: int
    extract: Callable[[Iterable[torch.Tensor]], np.ndarray]
    info: dict                          # the protocol: network, weights, hash, official, resize …
    image_size: int | None = None       # a judge scores only images of its training size


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

def inception_space(dims: int, weights: Path | None, allow_unofficial: bool, device: torch.device,
                    random_weights: bool = False) -> FeatureSpace:
    model, info = fidlib.load_inception(dims, weights, allow_unofficial, random_weights, device)
    info = {**info, "feature_space": "inception", "comparable": bool(info["official"])}
    return FeatureSpace("inception", dims, partial(fidlib.extract_features, model=model, device=device), info)


def judge_space(path: Path | None, device: torch.device, image_size: int | None = None) -> FeatureSpace:
    """A judge's penultimate features; path None = the shapes judge for `image_size` (trained on first use)."""
    from falcli.judges.classifier import judge_features, load_judge

    if path is None:
        path, where = default_shapes_judge(image_size, device), "default shapes judge"
    else:
        where = str(path)
    net, size = load_judge(path, device)
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
        return judge_space(None, device, image_size)
    if spec.startswith("judge:"):
        return judge_space(Path(spec[len("judge:"):]), device)
    raise FalError(f"--feature-space {spec!r}: expected inception, judge or judge:PATH")


# --- samples of a checkpoint ---

@torch.no_grad()
def generate_steps(task, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                   num_samples: int, batch_size: int = 100) -> tuple[list[torch.Tensor], list[float]]:
    """Samples of every feedback step as uint8 (N, 3, H, W) on the CPU, and D's mean logit per step.

    Inputs are the task's fixed batch, so plain and FAL runs of one seed are scored on the same latents.
    Quantised to uint8 exactly as saving PNGs would, so the FID equals that of the exported images.
    """
    from falcli.core.pictures import to_uint8
    from falcli.tasks.base import Batch, latents_for

    if task.dims != 2:
        raise FalError(f"FID scores images; task {task.name!r} does not make 2D images")
    if num_samples < 1:
        raise FalError(f"--num-samples must be >= 1 (got {num_samples})")
    if task.conditional:  # conditioned on the val inputs
        inputs = task.fixed_batch(recipe, torch.device("cpu"), num_samples)
    else:  # the fixed batch's latents, without its real images: a checkpoint is scored without its data
        z = latents_for(recipe, num_samples, recipe.seed + 1)
        inputs = Batch(real=z, gen_input=z)
    images: list[list[torch.Tensor]] = [[] for _ in range(steps)]
    logit_sums = [0.0] * steps
    for start in range(0, num_samples, batch_size):
        part = slice(start, start + batch_size)
        chunk = Batch(real=inputs.real[part].to(device), gen_input=inputs.gen_input[part].to(device),
                      condition=None if inputs.condition is None else inputs.condition[part].to(device))
        out = unroll(G, D, chunk.gen_input, chunk.condition, steps, recipe.feedback,
                     partial(task.discriminator_input, batch=chunk))
        for t in range(steps):
            images[t].append(torch.from_numpy(to_uint8(out.samples[t])).permute(0, 3, 1, 2))
            logit_sums[t] += float(out.logits[t].float().mean(dim=tuple(range(1, out.logits[t].dim()))).sum())
    return [torch.cat(x) for x in images], [s / num_samples for s in logit_sums]


def _batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    return (images[i:i + batch_size] for i in range(0, len(images), batch_size))


def _statistics(features: np.ndarray, space: FeatureSpace, what: str) -> tuple[np.ndarray, np.ndarray]:
    if space.name == "judge" and len(features) <= space.dims:  # n points span at most n − 1 dimensions
        raise FalError(f"{what}: {len(features)} images for the judge's {space.dims}-dim features gives a singular "
                       f"covariance; use at least {space.dims + 1} images")
    try:
        return fidlib.statistics(features)
    except FalError as error:
        raise FalError(f"{what}: {error}") from None


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
    stats = [_statistics(features, space, str(path))] if with_stats else None
    return Side(f"folder {path} ({batches.count} images)", stats, [features], batches.count)


def checkpoint_side(path: Path, space_for: Callable[[int], FeatureSpace], device: torch.device,
                    steps: int | None, num_samples: int | None, batch_size: int,
                    with_stats: bool = True) -> tuple[Side, FeatureSpace]:
    from falcli.core import checkpoint
    from falcli.tasks import TASKS

    recipe, G, D, G_ema, payload = checkpoint.restore(path, device)
    task = TASKS[recipe.task]
    steps = steps or recipe.feedback.sampling_steps
    num_samples = num_samples or recipe.evaluate.num_samples
    images, _ = generate_steps(task, G_ema if G_ema is not None else G, D, recipe, device, steps, num_samples)
    space = space_for(images[0].shape[-1])
    if space.image_size is not None and images[0].shape[-1] != space.image_size:
        raise FalError(f"{path}: makes {images[0].shape[-1]}² images, but the judge scores {space.image_size}² "
                       f"images only")
    if with_stats and len(images[0]) <= space.dims:  # before the extraction, not after it
        raise FalError(f"{path}: {len(images[0])} samples for {space.dims}-dim features gives a singular covariance; "
                       f"pass --num-samples {space.dims + 1} or more, or a smaller --dims")
    features = [space.extract(_batches(x, batch_size)) for x in images]
    stats = [_statistics(f, space, f"{path} step {t}") for t, f in enumerate(features, 1)] if with_stats else None
    which = "G_ema" if G_ema is not None else "G"
    label = f"checkpoint {path} (iteration {payload['iteration']}, {which}, {num_samples} samples per step)"
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
                feature_space: str = "inception", fid: bool = True, kid_subset_size: int = 1000) -> dict:
    """FID (and KID) between A and B; one row per feedback step when a side is a checkpoint.

    save_stats: as pytorch-fid's --save-stats, A is the source (folder or checkpoint) and B the `.npz` to
    write (a checkpoint with several steps writes B-step1.npz, B-step2.npz, …); nothing is compared.
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


def _check_counts(counts: list[int | None], paths: tuple[Path, Path], dims: int | None,
                  kid_subset_size: int | None) -> None:
    """Refuse up front what FID's covariance or KID's subsets would refuse after minutes of extraction."""
    for count, path in zip(counts, paths):
        if dims is not None and count is not None and count <= dims:
            raise FalError(f"{path}: {count} samples for {dims}-dim features gives a singular covariance; use "
                           f"more images (>= {dims + 1}) or a smaller --dims ({'/'.join(map(str, fidlib.FID_DIMS))})")
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


# --- the image task's default evaluation ---

def evaluate_image_steps(task, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                         num_samples: int, say=None, weights: Path | None = None,
                         allow_unofficial: bool = False, judge: Path | None = None) -> list[dict[str, float]]:
    """Per step: `d_logit` (D's mean logit on the samples), `fid_judge` (in the feature space of `judge`, a
    shapes-classifier judge.pt: `fal evaluate` gives the default one for shapes runs), `fid_inception` (when
    the weights are on disk, or given as `weights`, and both sides have >= 2048 images). The reference is the
    val split (train when a prepared folder has no val split). `say` receives one line per part that was
    skipped and why."""
    from falcli.metrics.weights import INCEPTION_FID, _candidates, _missing_message
    from falcli.tasks.image import load_images

    if say is None:
        from falcli.console import console
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
            real = _statistics(real_features, space, "val split")
            for row, fake in zip(rows, fake_features):
                row["fid_judge"] = fidlib.frechet_distance(*_statistics(fake, space, "samples"), *real)
        _add_coverage(rows, real_features, fake_features, "judge", say)

    if weights is None and not any(p.is_file() for p in _candidates(INCEPTION_FID.filename)):
        say(f"no Inception FID: {_missing_message(INCEPTION_FID.filename, INCEPTION_FID.url)}")
    elif min(num_samples, len(reference)) < INCEPTION_MIN_IMAGES:
        say(f"Inception FID needs >= {INCEPTION_MIN_IMAGES} images per side ({num_samples} samples, "
            f"{len(reference)} references); skipped")
    else:
        space = inception_space(2048, weights, allow_unofficial, device)
        if not space.info["official"]:
            say(f"fid_inception from unofficial weights {space.info['weights']}: not comparable with published FIDs")
        real_features = space.extract(_batches(reference, 50))
        fake_features = [space.extract(_batches(x, 50)) for x in images]
        real = fidlib.statistics(real_features)
        for row, fake in zip(rows, fake_features):
            row["fid_inception"] = fidlib.frechet_distance(*fidlib.statistics(fake), *real)
        _add_coverage(rows, real_features, fake_features, "inception", say)
    return rows


def _add_coverage(rows: list[dict], real: np.ndarray, fakes: list[np.ndarray], space: str, say) -> None:
    """Coverage next to quality, per step, in the same feature space as the FID: improved precision/recall
    (k = 3) and density/coverage (k = 5) as `<name>_<space>` (falcli/metrics/coverage.py)."""
    if min(len(real), *(len(f) for f in fakes)) <= COVERAGE_K:
        say(f"precision/recall/density/coverage in {space} space need more than {COVERAGE_K} images per side; "
            f"skipped")
        return
    for row, fake in zip(rows, fakes):
        for name, value in coverage_metrics(real, fake).items():
            row[f"{name}_{space}"] = value


def protocol_lines(protocol: dict) -> list[str]:
    """What `fal evaluate fid` prints before its table: the comparability label, then how it was measured."""
    lines = [protocol.get("label", protocol.get("feature_space", ""))]
    keys = ("network", "weights", "sha256_prefix", "dims", "resize", "a", "n_a", "b", "n_b")
    return lines + [f"{key}: {protocol[key]}" for key in keys if key in protocol]
