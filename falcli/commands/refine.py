"""`fal refine`: test-time feedback on samples that already exist (methods.md §0, "Test-time refinement").

The FAL loop is unrolled from a given sample: step 1 *is* the sample, D scores it, and each further step is one
pass of G reading D's map of the previous step (`feedback.unroll(..., initial=sample)`). G's own input is what
made the sample: the condition image (translation), or a latent code — the one `fal sample` kept, or, for
samples without one, a latent found by inversion (optimise z so that G's first pass reproduces the sample, the
Image2StyleGAN idea) before feeding back.

Writes into --out (a new folder; written to a temporary one, then renamed): step-t/ with each step's samples
in the input's file format, heatmaps/step-t/ with D's map of each sample, a grid picture (toy: a scatter
figure), latents.npy (unconditional tasks) and refine.json with D's mean score σ(D) per step.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from falcli.core import checkpoint
from falcli.errors import FalError
from falcli.core.feedback import Unrolled, unroll
from falcli.commands.sample import BATCH_SIZE, ProgressFn, WarnFn, _warn, check_batch_size, check_steps, \
    latent_width, latents_for, open_checkpoint, require_steps
from falcli.core.files import INPUTS, LATENTS, POINTS, Files, PointFiles, VoxelFiles, check_fresh, \
    fresh_folder, item_names, list_files, match_names, read_latents, \
    read_manifest, read_points
from falcli.tasks import TASKS
from falcli.tasks.base import Batch

GRID_ROWS = 8                           # samples shown in the grid picture
TILE = 64                               # voxel renders and their heat maps in the grid, pixels
INVERT_LR = 0.05                        # Adam step size on z during inversion
INVERT_STREAM = 1_000_003               # inversion starts from latents of seed + this: a stream apart from
#                                         `fal sample --seed`, so inverting fal's own samples never starts at z


@dataclass(frozen=True)
class RefineOptions:
    checkpoint: Path
    input: Path                         # samples: a `fal sample` folder, plain files, or (toy) a points .npy
    out: Path
    steps: int                          # step 1 = the input sample; N - 1 passes of G follow
    inputs: Path | None = None          # translation: the condition images of plain outputs, matched by name
    invert_iterations: int | None = None  # unconditional samples without latents: Adam iterations on z
    device: str = "auto"
    batch_size: int | None = None       # None = the samples' own (fal-samples.json) or BATCH_SIZE
    seed: int = 0                       # inversion's starting latents


@dataclass
class Source:
    """What is refined: the samples (loaded a batch at a time) and what G reads to continue them."""

    names: list[str]
    files: Files
    load: Callable[[list[int]], torch.Tensor]       # rows → samples (b, C, *S) on the CPU
    load_conditions: Callable[[list[int]], torch.Tensor] | None = None  # translation: rows → inputs
    latents: torch.Tensor | None = None             # (N, Z), given by `fal sample`
    invert: bool = False                            # unconditional without latents: find them first
    batch_size: int = BATCH_SIZE
    kind: str = "files"


@dataclass
class Collected:
    """Running results: D's score sums per step and the first GRID_ROWS samples of every step for the grid."""

    scores: list[float]
    shown: list[Unrolled] = field(default_factory=list)
    conditions: list[torch.Tensor] = field(default_factory=list)
    reconstructions: list[torch.Tensor] = field(default_factory=list)
    points: list[list[torch.Tensor]] = field(default_factory=list)  # toy: every point of every step

    def shown_rows(self) -> int:
        return sum(len(u.samples[0]) for u in self.shown)

    def wants_rows(self) -> bool:
        return self.shown_rows() < GRID_ROWS


def refine(options: RefineOptions, on_progress: ProgressFn | None = None, warn: WarnFn = _warn) -> dict:
    """Run the loop from the given samples and write everything into options.out; returns refine.json's
    content (scores per step, inversion errors)."""
    from falcli.core.runtime import pick_device
    require_steps(options.steps)
    if options.invert_iterations is not None and options.invert_iterations < 1:
        raise FalError(f"--invert-iterations must be >= 1 (got {options.invert_iterations})")
    if options.batch_size is not None:
        check_batch_size(options.batch_size)
    check_fresh(options.out)
    device = pick_device(options.device)
    recipe, G, D, _ = open_checkpoint(options.checkpoint, device)
    check_steps(options.steps, recipe, warn)
    task = TASKS[recipe.task]
    source = plan(options, recipe, warn)
    count = len(source.names)
    batches = [list(range(s, min(count, s + source.batch_size))) for s in range(0, count, source.batch_size)]

    # Inversion first (all batches), so the refinement's progress bar is one pass.
    latents, inversion = source.latents, None
    if source.invert:
        latents, inversion = invert_all(G, source, batches, recipe, options, device, on_progress)

    collected = Collected(scores=[0.0] * options.steps)
    with fresh_folder(options.out) as tmp:
        for rows in batches:
            x = source.load(rows).to(device)
            condition = source.load_conditions(rows).to(device) if source.load_conditions else None
            gen_input = condition if condition is not None else latents[rows].to(device)
            batch = Batch(real=x, gen_input=gen_input, condition=condition)
            with torch.no_grad():
                out = unroll(G, D, gen_input, condition, options.steps, recipe.feedback,
                             partial(task.discriminator_input, batch=batch), initial=x)
                # After inversion the grid also shows G's first pass from z*: how well z* reproduces x.
                reconstruction = G(gen_input, None) if source.invert and collected.wants_rows() else None
            _write_steps(out, [source.names[i] for i in rows], source.files, tmp, collected)
            _collect(out, condition, reconstruction, collected)
            if on_progress:
                on_progress("refine", rows[-1] + 1, count)
        if latents is not None:
            np.save(tmp / LATENTS, latents.numpy())
        figure = _write_figure(recipe, source.files, collected, tmp)
        result = {
            "format": "fal-refine", "version": 1, "task": recipe.task,
            "checkpoint": str(checkpoint.resolve(options.checkpoint).resolve()),  # the file, not a run folder
            "input": str(options.input),
            "inputs": str(options.inputs) if options.inputs else None, "source": source.kind, "count": count,
            "steps": options.steps, "trained_steps": recipe.feedback.steps,
            "d_score": [s / count for s in collected.scores],  # mean σ(D) over the map and the samples, per step
            "inversion": inversion, "figure": figure,
        }
        (tmp / "refine.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# --- what to refine ---

def plan(options: RefineOptions, recipe, warn: WarnFn) -> Source:
    """Read --input (and --inputs): a `fal sample` folder, translation outputs + inputs, or plain samples."""
    path, files = Path(options.input), TASKS[recipe.task].sample_files(recipe)
    if not path.exists():
        raise FalError(f"--input {path}: no such file or folder")
    manifest = read_manifest(path) if path.is_dir() else None
    conditional = TASKS[recipe.task].conditional
    if options.inputs is not None and not conditional:
        raise FalError(f"--inputs is for translation checkpoints; {options.checkpoint} is of task {recipe.task!r}")
    if options.invert_iterations is not None and conditional:
        hint = "drop it" if options.inputs is not None else "pass --inputs DIR for outputs of another model"
        raise FalError(f"--invert-iterations: translation outputs are refined from their inputs; there is no "
                       f"latent to invert ({hint})")
    if manifest is not None:
        source = _from_manifest(path, manifest, options, recipe, files, warn)
    elif conditional:
        source = _from_translation_files(path, options, recipe, files)
    else:
        source = _from_plain_samples(path, options, recipe, files)
    if options.batch_size is not None:
        source.batch_size = options.batch_size
    return source


def _from_manifest(path: Path, manifest: dict, options: RefineOptions, recipe, files: Files,
                   warn: WarnFn) -> Source:
    task, names = manifest.get("task"), list(manifest.get("items") or [])
    if task != recipe.task:
        raise FalError(f"--input {path}: samples of task {task!r}, but --ckpt {options.checkpoint} is a "
                       f"checkpoint of task {recipe.task!r}; use the checkpoint that made them "
                       f"({manifest.get('checkpoint')})")
    if not names:
        raise FalError(f"--input {path}: its fal-samples.json lists no samples")
    made_by = manifest.get("checkpoint")
    if made_by and Path(made_by).resolve() != checkpoint.resolve(options.checkpoint).resolve():
        warn(f"these samples were made by {made_by}; continuing them with {options.checkpoint}")
    if options.inputs is not None:
        raise FalError(f"--inputs: {path} was written by `fal sample` and carries its inputs in {INPUTS}/; "
                       f"drop --inputs")
    if options.invert_iterations is not None:
        warn(f"--invert-iterations ignored: {path} carries the samples' latents ({LATENTS})")
    batch_size = int(manifest.get("batch_size") or BATCH_SIZE)
    if isinstance(files, PointFiles):
        points = torch.from_numpy(read_points(path / POINTS))
        if len(points) != len(names):
            raise FalError(f"{path / POINTS}: {len(points)} points, but fal-samples.json lists {len(names)}")
        return Source(names, files, lambda rows: points[rows], latents=read_latents(path, len(names),
                      latent_width(recipe)), batch_size=batch_size, kind="fal samples")
    if manifest.get("voxels"):  # `fal sample --voxels npy`: every grid in one array
        grids = torch.from_numpy(np.load(path / manifest["voxels"], allow_pickle=False).astype(np.float32))
        if grids.shape[0] != len(names):
            raise FalError(f"{path / manifest['voxels']}: {grids.shape[0]} grids, but fal-samples.json lists "
                           f"{len(names)}")
        return Source(names, files, lambda rows: grids[rows][:, None], latents=read_latents(
            path, len(names), latent_width(recipe)), batch_size=batch_size, kind="fal samples")
    found = list_files(path, files)
    missing = [n for n in names if n not in found]
    if missing:
        raise FalError(f"--input {path}: {len(missing)} samples listed in fal-samples.json are missing "
                       f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); write them again with "
                       f"`fal sample`")
    load = _loader(files, [found[n] for n in names])
    conditions = _condition_files(recipe)
    if conditions is not None:
        inputs = list_files(path / INPUTS, conditions, "inputs of")
        match_names({n: found[n] for n in names}, inputs, path, path / INPUTS)
        return Source(names, files, load, _loader(conditions, [inputs[n] for n in names]),
                      batch_size=batch_size, kind="fal samples")
    return Source(names, files, load, latents=read_latents(path, len(names), latent_width(recipe)),
                  batch_size=batch_size, kind="fal samples")


def _from_translation_files(path: Path, options: RefineOptions, recipe, files: Files) -> Source:
    if options.inputs is None:
        raise FalError(f"--input {path}: translation outputs without their inputs; pass --inputs DIR with the "
                       f"input images, matched to the outputs by file name")
    outputs = list_files(path, files, task=recipe.task)
    conditions = _condition_files(recipe)
    inputs = list_files(options.inputs, conditions, "--inputs")
    match_names(outputs, inputs, path, Path(options.inputs))
    names = sorted(outputs)
    return Source(names, files, _loader(files, [outputs[n] for n in names]),
                  _loader(conditions, [inputs[n] for n in names]), kind="translation outputs")


def _from_plain_samples(path: Path, options: RefineOptions, recipe, files: Files) -> Source:
    if isinstance(files, PointFiles):
        points = torch.from_numpy(read_points(path))
        source = Source(item_names(len(points)), files, lambda rows: points[rows], kind="points")
    else:
        if not path.is_dir():
            raise FalError(f"--input {path}: expected a folder of {files.what} ({', '.join(files.suffixes)})")
        found = list_files(path, files, task=recipe.task)
        names = sorted(found)
        source = Source(names, files, _loader(files, [found[n] for n in names]), kind="files")
    if options.invert_iterations is None:
        raise FalError(f"--input {path}: samples without latent codes (no fal-samples.json); pass "
                       f"--invert-iterations K (e.g. 300) to find them by inversion first")
    source.invert = True
    return source


def _condition_files(recipe) -> Files | None:
    return TASKS[recipe.task].condition_files(recipe)


def _loader(files: Files, paths: list[Path]) -> Callable[[list[int]], torch.Tensor]:
    return lambda rows: files.read([paths[i] for i in rows])


# --- inversion ---

def invert(G: nn.Module, x: torch.Tensor, start: torch.Tensor, iterations: int, free: int | None = None,
           step: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G's inputs whose first pass reproduces x: Adam on z minimising mean (G(z) − x)² (G's weights untouched).

    Only the first `free` numbers of each input are optimised (None = all); the rest (EqGAN-SA's heatmap code,
    whose values have a valid range) stay as drawn. Returns (inputs, error before, error after), the errors per
    sample: mean squared error over pixels / voxels / coordinates.
    """
    free = start.shape[1] if free is None else free
    z, fixed = start[:, :free].detach().clone().requires_grad_(True), start[:, free:].detach()
    optimizer = torch.optim.Adam([z], lr=INVERT_LR)
    before = _errors(G, torch.cat([z, fixed], dim=1), x)
    for _ in range(iterations):
        with torch.enable_grad():
            loss = (G(torch.cat([z, fixed], dim=1), None) - x).square().mean()
            grad, = torch.autograd.grad(loss, [z])  # only z's gradient: G's parameters keep no .grad
        z.grad = grad
        optimizer.step()
        if step:
            step()
    found = torch.cat([z.detach(), fixed], dim=1)
    return found, before, _errors(G, found, x)


@torch.no_grad()
def _errors(G: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (G(z, None) - x).square().flatten(1).mean(1)


def invert_all(G: nn.Module, source: Source, batches: list[list[int]], recipe, options: RefineOptions,
               device: torch.device, on_progress: ProgressFn | None) -> tuple[torch.Tensor, dict]:
    """Invert every batch, starting from random latents (--seed). Returns the latents (N, Z) and a summary."""
    iterations = options.invert_iterations
    start = latents_for(recipe, len(source.names), options.seed + INVERT_STREAM)
    found, before, after = torch.empty_like(start), [], []
    total, done = len(batches) * iterations, 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress("invert", done, total)

    for rows in batches:
        z, error_before, error_after = invert(G, source.load(rows).to(device), start[rows].to(device),
                                              iterations, recipe.model.latent_dim, step)
        found[rows] = z.cpu()
        before.append(error_before.cpu()), after.append(error_after.cpu())
    before, after = torch.cat(before), torch.cat(after)
    return found, {"iterations": iterations, "lr": INVERT_LR, "seed": options.seed, "metric": "mse",
                   "error_start": float(before.mean()), "error": float(after.mean()),
                   "error_max": float(after.max())}


# --- outputs ---

def _write_steps(out: Unrolled, names: list[str], files: Files, folder: Path, collected: Collected) -> None:
    """Each step's samples into step-t/, D's map of each into heatmaps/step-t/; scores summed per step."""
    from falcli.core.pictures import save_png

    for t, (x, logits) in enumerate(zip(out.samples, out.logits), start=1):
        collected.scores[t - 1] += float(torch.sigmoid(logits.float()).flatten(1).mean(1).sum())
        if isinstance(files, PointFiles):
            if len(collected.points) < t:
                collected.points.append([])
            collected.points[t - 1].append(x.cpu())
            continue
        files.write(x, names, folder / f"step-{t}")
        for name, picture in zip(names, _heatmaps(logits, x)):
            save_png(picture, folder / "heatmaps" / f"step-{t}" / f"{name}.png")


def _heatmaps(logits: torch.Tensor, x: torch.Tensor, size: int | None = None) -> np.ndarray:
    """D's map as (b, H, W, 3) pictures: images at their size; voxel maps seen from above (mean over z)."""
    from falcli.core.pictures import heatmap

    if logits.dim() == 5:
        return heatmap(logits.float().mean(dim=-1), (size or x.shape[-1],) * 2)
    return heatmap(logits, (size or x.shape[-2], size or x.shape[-1]))


def _collect(out: Unrolled, condition: torch.Tensor | None, reconstruction: torch.Tensor | None,
             collected: Collected) -> None:
    if not collected.wants_rows():
        return
    keep = GRID_ROWS - collected.shown_rows()
    collected.shown.append(Unrolled([x[:keep].cpu() for x in out.samples], [m[:keep].cpu() for m in out.logits]))
    if condition is not None:
        collected.conditions.append(condition[:keep].cpu())
    if reconstruction is not None:
        collected.reconstructions.append(reconstruction[:keep].cpu())


def _write_figure(recipe, files: Files, collected: Collected, folder: Path) -> str:
    """Toy: every step's points (step-t/points.npy) and a scatter figure; others: the grid picture."""
    if isinstance(files, PointFiles):
        from falcli.core.plots import toy_steps_figure
        from falcli.tasks.toy import sample_mixture

        steps = [torch.cat(points) for points in collected.points]
        for t, points in enumerate(steps, start=1):
            files.write(points, [], folder / f"step-{t}")
        real = sample_mixture(recipe.data, 2000, torch.Generator().manual_seed(recipe.seed + 1))
        toy_steps_figure(real, Unrolled(steps, []), folder / "scatter.png")
        return "scatter.png"
    from falcli.core.pictures import save_png, tile

    save_png(tile(grid_rows(files, collected)), folder / "grid.png")
    return "grid.png"


def grid_rows(files: Files, collected: Collected) -> list[list[np.ndarray]]:
    """One row per sample: input (translation) | G(z*) (after inversion) | t = 1..T | D's map at t = 1..T."""
    from falcli.core.pictures import to_uint8

    def pictures(x: torch.Tensor) -> list[np.ndarray]:
        if isinstance(files, VoxelFiles):
            from falcli.core.render import render_voxels
            from falcli.tasks.voxel import occupancy

            return [render_voxels(g, TILE) for g in occupancy(x)]
        return list(to_uint8(x))

    steps = len(collected.shown[0].samples)
    samples = [torch.cat([u.samples[t] for u in collected.shown]) for t in range(steps)]
    maps = [torch.cat([u.logits[t] for u in collected.shown]) for t in range(steps)]
    columns: list[list[np.ndarray]] = []
    if collected.conditions:
        columns.append(list(to_uint8(torch.cat(collected.conditions))))
    if collected.reconstructions:
        columns.append(pictures(torch.cat(collected.reconstructions)))
    columns += [pictures(x) for x in samples]
    size = TILE if isinstance(files, VoxelFiles) else None
    columns += [list(_heatmaps(m, x, size)) for m, x in zip(maps, samples)]
    return [list(row) for row in zip(*columns)]
