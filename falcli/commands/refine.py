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
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from falcli.commands.sample import BATCH_SIZE, ProgressFn, WarnFn, _warn, check_batch_size, check_steps, \
    latent_width, latents_for, open_checkpoint, require_steps
from falcli.core import checkpoint
from falcli.core.feedback import Unrolled, unroll
from falcli.core.files import INPUTS, LATENTS, MANIFEST, POINTS, Files, PointFiles, VoxelFiles, check_fresh, \
    fresh_folder, item_names, list_files, match_names, read_latents, read_manifest, read_points
from falcli.errors import FalError
from falcli.methods import refinement
from falcli.tasks import TASKS
from falcli.tasks.base import Batch
from falcli.core.runtime import pick_device
from falcli.core.pictures import heatmap, save_png, tile, to_uint8
from falcli.tasks.toy import sample_mixture
from falcli.core.render import render_voxels
from falcli.tasks.voxel import occupancy

GRID_ROWS = 8                           # samples shown in the grid picture
TILE = 64                               # voxel renders and their heat maps in the grid, pixels
FINAL_LATENTS = "latents-final.npy"     # dot-latent: the latents it moved to
INVERT_LR = 0.05                        # Adam step size on z during inversion
INVERT_STREAM = 1_000_003               # inversion starts from latents of seed + this: a stream apart from
#                                         `fal sample --seed`, so inverting fal's own samples never starts at z
K_PAIRS = 256                           # DOT: random pairs the Lipschitz estimate takes its maximum over
K_STREAM = 2_000_003                    # DOT's pairs and DRS's draws: latent streams apart from --seed's samples
DRS_UNIFORMS = 3_000_017                # DRS: the acceptance uniforms' stream


@dataclass(frozen=True)
class RefineOptions:
    checkpoint: Path                    # a checkpoint file or its run folder (its newest checkpoint)
    input: Path | None = None           # samples: a `fal sample` folder, plain files, or (toy) a points .npy;
    #                                     None = the run's own `fal sample` folder of this checkpoint, else fresh draws
    out: Path | None = None             # None = a new numbered folder in the run: RUN/refine-1, refine-2, …
    steps: int | None = None            # fal: step 1 = the input sample, N - 1 passes of G follow; iterative
    #                                     methods: recorded points of the iteration; None = the recipe's / 2
    inputs: Path | None = None          # translation: the condition images of plain outputs, matched by name
    invert_iterations: int | None = None  # unconditional samples without latents: Adam iterations on z
    device: str = "auto"
    batch_size: int | None = None       # None = the samples' own (fal-samples.json) or BATCH_SIZE
    seed: int = 0                       # inversion's starting latents; fresh draws' latents
    method: str = "fal"                 # see falcli.methods.refinement.METHODS
    count: int | None = None            # fresh draws (and drs's accepted samples); None = evaluate.num_samples
    iterations: int | None = None       # dot-*, gradient: optimiser steps; None = the method's default
    lr: float | None = None             # dot-*: Adam's rate; gradient: the step size
    k_eff: float | None = None          # dot-*: the Lipschitz constant; None = estimated
    k_pairs: int = K_PAIRS              # dot-*: random pairs the estimate takes the maximum over
    drs_percentile: float = 80.0        # drs: γ = this percentile of F over the burn-in draws
    drs_burn_in: int = 10_000           # drs: draws that set l_M and γ (the paper's 10k)
    drs_max_draws: int | None = None    # drs: give up after this many draws; None = 100 × count


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
    looped_steps: int | None = None                 # `fal sample --steps T`: the samples are step T of the loop
    path: Path | None = None                        # the folder read (None: fresh draws)


@dataclass
class Collected:
    """Running results: D's score sums per step and the first GRID_ROWS samples of every step for the grid."""

    scores: list[float]
    logits: list[float] = field(default_factory=list)
    shown: list[Unrolled] = field(default_factory=list)
    conditions: list[torch.Tensor] = field(default_factory=list)
    reconstructions: list[torch.Tensor] = field(default_factory=list)
    points: list[list[torch.Tensor]] = field(default_factory=list)  # toy: every point of every step

    def shown_rows(self) -> int:
        return sum(len(u.samples[0]) for u in self.shown)

    def wants_rows(self) -> bool:
        return self.shown_rows() < GRID_ROWS


def refine(options: RefineOptions, on_progress: ProgressFn | None = None, warn: WarnFn = _warn,
           say: WarnFn | None = None) -> dict:
    """Refine samples with options.method and write everything into options.out (or a new RUN/refine-K);
    returns refine.json's content (scores and metrics per step, inversion errors, the method's numbers).
    `say` receives one line saying what is refined (the run's samples or fresh draws) when --input is absent."""
    chosen = refinement.method(options.method)
    if options.steps is not None:
        require_steps(options.steps)
    if options.invert_iterations is not None and options.invert_iterations < 1:
        raise FalError(f"--invert-iterations must be >= 1 (got {options.invert_iterations})")
    if options.batch_size is not None:
        check_batch_size(options.batch_size)
    if options.count is not None and options.count < 1:
        raise FalError(f"--count must be >= 1 (got {options.count})")
    if options.out is not None:
        check_fresh(options.out)
    device = pick_device(options.device)
    recipe, G, D, _ = open_checkpoint(options.checkpoint, device)
    task = TASKS[recipe.task]
    conditional = task.conditional
    steps = _steps_for(chosen, options, recipe, warn)
    _check_method(chosen, options, conditional)
    say = say or (lambda message: None)

    if chosen.space == "rejection":
        source = None
        say(f"drs draws its samples from the checkpoint (--seed {options.seed}) until "
            f"{options.count or recipe.evaluate.num_samples} are accepted")
    else:
        source = plan(options, recipe, warn, chosen, say, G, device)
    out = Path(options.out) if options.out is not None else claim_numbered(run_folder(options.checkpoint))
    try:
        with fresh_folder(out) as tmp:
            if source is None:
                result = _rejection(options, recipe, task, G, D, device, tmp, on_progress)
            else:
                result = _refine_source(options, chosen, steps, recipe, task, source, G, D, device, tmp,
                                        on_progress, warn)
            result["out"] = str(out)  # where the folder ends up (it is written under a temporary name)
            (tmp / "refine.json").write_text(json.dumps(result, indent=2) + "\n")
    except BaseException:
        if options.out is None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the numbered folder claimed for this call, still empty
        raise
    return result


def _steps_for(chosen: refinement.Method, options: RefineOptions, recipe, warn: WarnFn) -> int:
    if chosen.space == "loop":
        steps = options.steps if options.steps is not None else recipe.feedback.sampling_steps
        if steps > 1 and recipe.feedback.steps == 1:
            raise FalError("this checkpoint was trained without feedback (feedback.steps: 1): its generator cannot "
                           "read D's map; use --steps 1, a checkpoint trained with feedback.steps >= 2, or a "
                           "method that refines with D alone (--method dot-latent, dot-sample, gradient or drs)")
        check_steps(steps, recipe, warn)
        return steps
    if chosen.space == "rejection":
        if options.steps not in (None, 2):
            raise FalError(f"--steps {options.steps}: drs has two steps, before and after rejection; drop --steps")
        return 2
    steps = options.steps if options.steps is not None else 2
    if steps < 2:
        raise FalError(f"--steps {steps}: {chosen.name} records the start and the final iterate at least "
                       f"(--steps 2, or more for points in between)")
    return steps


def _check_method(chosen: refinement.Method, options: RefineOptions, conditional: bool) -> None:
    """Where a method is not defined, one line naming the one that applies."""
    if conditional and chosen.name == "dot-latent":
        raise FalError("--method dot-latent: a translation generator has no latent to optimise; use --method "
                       "dot-sample (the same transport on the output itself)")
    if conditional and chosen.space == "rejection":
        raise FalError("--method drs: a translation generator makes one output per input, so there is nothing to "
                       "reject among; use --method dot-sample or gradient")
    if chosen.space == "rejection" and options.input is not None:
        raise FalError("--method drs draws its own samples from the checkpoint (it needs many more than it keeps); "
                       "drop --input")
    if not chosen.iterative and (options.iterations is not None or options.lr is not None):
        raise FalError(f"--iterations and --lr are for dot-latent, dot-sample and gradient, not {chosen.name}")
    if chosen.space != "latent" and chosen.name != "dot-sample" and options.k_eff is not None:
        raise FalError(f"--k-eff is for dot-latent and dot-sample, not {chosen.name}")
    if options.k_eff is not None and not options.k_eff > 0:
        raise FalError(f"--k-eff must be > 0 (got {options.k_eff})")


def _refine_source(options: RefineOptions, chosen: refinement.Method, steps: int, recipe, task, source: Source,
                   G: nn.Module, D: nn.Module, device: torch.device, tmp: Path, on_progress: ProgressFn | None,
                   warn: WarnFn) -> dict:
    """FAL's loop or an iterative method over the source's batches; every step written into tmp."""
    count = len(source.names)
    batches = [list(range(s, min(count, s + source.batch_size))) for s in range(0, count, source.batch_size)]
    iterations = options.iterations if options.iterations is not None else chosen.iterations
    lr = options.lr if options.lr is not None else chosen.lr
    if chosen.iterative and iterations < steps - 1:
        raise FalError(f"--steps {steps} records {steps - 1} points after the start, but {chosen.name} runs only "
                       f"{iterations} iterations; lower --steps or raise --iterations")
    if chosen.space == "latent" and source.looped_steps and source.looped_steps > 1:
        warn(f"these samples are step {source.looped_steps} of the feedback loop; {chosen.name} moves the latent "
             f"of G's first pass, so its later steps are G(z), not a continuation of the sample")

    # Inversion first (all batches), so the refinement's progress bar is one pass.
    latents, inversion = source.latents, None
    if source.invert:
        latents, inversion = invert_all(G, source, batches, recipe, options, device, on_progress)

    spent = 0.0
    started = time.perf_counter()
    k, estimated = options.k_eff, False
    if chosen.name in ("dot-latent", "dot-sample") and k is None:
        k, estimated = _estimate_k(chosen, options, recipe, task, source, batches, G, D, device), True
    spent += time.perf_counter() - started

    collected = Collected(scores=[0.0] * steps, logits=[0.0] * steps)
    final_latents: list[torch.Tensor] = []
    recorded_iterations = None
    for rows in batches:
        x = source.load(rows).to(device)
        condition = source.load_conditions(rows).to(device) if source.load_conditions else None
        z = latents[rows].to(device) if latents is not None else None
        gen_input = condition if condition is not None else z
        batch = Batch(real=x, gen_input=gen_input if gen_input is not None else x, condition=condition)
        score_map = _score_map(task, D, batch)
        reconstruction = None
        started = time.perf_counter()
        if chosen.space == "loop":
            with torch.no_grad():
                out = unroll(G, D, gen_input, condition, steps, recipe.feedback,
                             partial(task.discriminator_input, batch=batch), initial=x)
        elif chosen.space == "latent":
            trace = refinement.dot_latent(G, score_map, z, iterations, lr, k, steps, free=recipe.model.latent_dim)
            with torch.no_grad():  # step 1 is the sample itself, as for FAL
                out = Unrolled([x] + trace.samples[1:], [score_map(x)] + trace.logits[1:])
            final_latents.append(trace.latents.cpu())
            recorded_iterations = trace.iterations
        else:
            bounds = _bounds(source.files)
            if chosen.name == "dot-sample":
                trace = refinement.dot_sample(score_map, x, iterations, lr, k, steps, bounds)
            else:
                trace = refinement.gradient_ascent(score_map, x, iterations, lr, steps, bounds)
            out = Unrolled(trace.samples, trace.logits)
            recorded_iterations = trace.iterations
        spent += time.perf_counter() - started
        with torch.no_grad():
            # After inversion the grid also shows G's first pass from z*: how well z* reproduces x.
            if source.invert and collected.wants_rows():
                reconstruction = G(gen_input, None)
        _write_steps(out, [source.names[i] for i in rows], source.files, tmp, collected)
        _collect(out, condition, reconstruction, collected)
        if on_progress:
            on_progress(f"refine ({chosen.name})", rows[-1] + 1, count)
    if latents is not None:
        np.save(tmp / LATENTS, latents.numpy())
    if final_latents:
        np.save(tmp / FINAL_LATENTS, torch.cat(final_latents).numpy())
    figure = _write_figure(recipe, source.files, collected, tmp)
    settings = None
    if chosen.iterative:
        settings = {"iterations": iterations, "lr": lr}
        if k is not None:
            settings.update({"k_eff": k, "k_estimated": estimated, "k_pairs": options.k_pairs if estimated else None})
    return _result(options, chosen, recipe, task, count, steps, collected, spent, {
        "input": str(source.path) if source.path is not None else None,
        "inputs": str(options.inputs) if options.inputs else None, "source": source.kind,
        "iterations": recorded_iterations, "settings": settings, "inversion": inversion, "figure": figure,
        "latents": LATENTS if latents is not None else None,
        "final_latents": FINAL_LATENTS if final_latents else None})


def _rejection(options: RefineOptions, recipe, task, G: nn.Module, D: nn.Module, device: torch.device, tmp: Path,
               on_progress: ProgressFn | None) -> dict:
    """DRS: step 1 = the first --count draws as G makes them, step 2 = the first --count accepted draws."""
    count = options.count if options.count is not None else recipe.evaluate.num_samples
    batch_size = options.batch_size or BATCH_SIZE
    max_draws = options.drs_max_draws if options.drs_max_draws is not None else 100 * count
    if max_draws < count:
        raise FalError(f"--drs-max-draws {max_draws} is fewer than the {count} samples asked for")
    draws = torch.Generator().manual_seed(options.seed + K_STREAM)
    uniforms = torch.Generator().manual_seed(options.seed + DRS_UNIFORMS)

    @torch.no_grad()
    def draw(n: int) -> torch.Tensor:
        return G(latents_for(recipe, n, generator=draws).to(device), None)

    def score_map(x: torch.Tensor) -> torch.Tensor:
        return D(task.discriminator_input(x, Batch(real=x, gen_input=x)))

    started = time.perf_counter()
    try:
        rejection = refinement.rejection_sample(draw, score_map, count, batch_size, options.drs_burn_in,
                                                options.drs_percentile, max_draws, uniforms,
                                                lambda done: on_progress and on_progress("drs", done, count))
    except refinement.TooFewAccepted as error:
        raise FalError(f"{error}; lower --drs-percentile (now {options.drs_percentile:g}) or raise --drs-max-draws "
                       f"(now {max_draws})") from None
    spent = time.perf_counter() - started
    files = TASKS[recipe.task].sample_files(recipe)
    collected = Collected(scores=[0.0] * 2, logits=[0.0] * 2)
    names = item_names(count)
    for start in range(0, count, batch_size):
        part = slice(start, start + batch_size)
        out = Unrolled([rejection.first[part], rejection.accepted[part]],
                       [rejection.first_logits[part], rejection.accepted_logits[part]])
        _write_steps(out, names[part], files, tmp, collected)
        _collect(out, None, None, collected)
    figure = _write_figure(recipe, files, collected, tmp)
    drs = {"percentile": options.drs_percentile, "burn_in": options.drs_burn_in, "epsilon": refinement.DRS_EPSILON,
           "gamma": rejection.gamma, "l_max": rejection.l_max, "l_max_final": rejection.l_max_final,
           "draws": rejection.draws, "accepted": count, "acceptance": rejection.acceptance,
           "max_draws": max_draws, "seed": options.seed}
    return _result(options, refinement.METHODS["drs"], recipe, task, count, 2, collected, spent, {
        "input": None, "inputs": None, "source": "fresh draws", "iterations": None, "settings": None,
        "drs": drs, "inversion": None, "figure": figure, "latents": None, "final_latents": None})


def _result(options: RefineOptions, chosen: refinement.Method, recipe, task, count: int, steps: int,
            collected: Collected, spent: float, extra: dict) -> dict:
    metrics = [{"d_real_probability": s / count, "d_logit": lg / count} for s, lg in zip(collected.scores, collected.logits)]
    if hasattr(task, "sample_metrics") and collected.points:  # tasks that score given samples (toy)
        for row, task_row in zip(metrics, task.sample_metrics([torch.cat(p) for p in collected.points], recipe)):
            row.update(task_row)
    return {
        "format": "fal-refine", "version": 1, "task": recipe.task,
        "checkpoint": str(checkpoint.resolve(options.checkpoint).resolve()),  # the file, not a run folder
        "method": chosen.name, "count": count, "steps": steps, "trained_steps": recipe.feedback.steps,
        "d_real_probability": [row["d_real_probability"] for row in metrics],  # mean σ(D) over the map and the samples, per step
        "metrics": metrics, "seconds": spent, "seconds_per_1000": 1000 * spent / count, **extra,
    }


def _score_map(task, D: nn.Module, batch: Batch) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: D(task.discriminator_input(x, batch))


def _bounds(files: Files) -> refinement.Bounds:
    """The range a sample may take while it is moved: images in [-1, 1], occupancy in [0, 1], points anywhere."""
    if isinstance(files, PointFiles):
        return None
    return (0.0, 1.0) if isinstance(files, VoxelFiles) else (-1.0, 1.0)


def _estimate_k(chosen: refinement.Method, options: RefineOptions, recipe, task, source: Source,
                batches: list[list[int]], G: nn.Module, D: nn.Module, device: torch.device) -> float:
    """DOT's Lipschitz constant over options.k_pairs random pairs: of latents (dot-latent: both from their own
    stream; EqGAN-SA's heatmap code shared within a pair, as only z moves), or of the samples themselves
    (dot-sample: each sample against another, scored under the first one's condition)."""
    pairs, batch_size = options.k_pairs, source.batch_size
    if pairs < 1:
        raise FalError(f"--k-pairs must be >= 1 (got {pairs})")
    if chosen.space == "latent":
        z = latents_for(recipe, 2 * pairs, options.seed + K_STREAM)
        z1, z2 = z[:pairs], z[pairs:].clone()
        z2[:, recipe.model.latent_dim:] = z1[:, recipe.model.latent_dim:]
        k = 0.0
        for start in range(0, pairs, batch_size):
            part = slice(start, start + batch_size)
            a = z1[part].to(device)
            score_map = _score_map(task, D, Batch(real=a, gen_input=a))
            k = max(k, refinement.estimate_k_latent(G, score_map, a, z2[part].to(device)))
        return k
    k, done = 0.0, 0
    for rows in batches:
        if done >= pairs or len(rows) < 2:
            break
        x = source.load(rows).to(device)
        condition = source.load_conditions(rows).to(device) if source.load_conditions else None
        score_map = _score_map(task, D, Batch(real=x, gen_input=x, condition=condition))
        k = max(k, refinement.estimate_k_sample(score_map, x, x.roll(1, dims=0)))
        done += len(rows)
    return k


# --- where results go ---

def run_folder(ckpt: Path) -> Path:
    """The run a checkpoint belongs to: the folder given, or RUN for RUN/checkpoints/iter-*.pt."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        return ckpt
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def claim_numbered(run: Path, prefix: str = "refine") -> Path:
    """Create RUN/refine-K for the smallest free K and return it. mkdir(exist_ok=False) is atomic, so two calls
    at once get different folders; an existing folder is never touched."""
    numbers = [int(p.name[len(prefix) + 1:]) for p in run.glob(f"{prefix}-*")
               if p.name[len(prefix) + 1:].isdigit()]
    k = max(numbers, default=0) + 1
    while True:
        folder = run / f"{prefix}-{k}"
        try:
            folder.mkdir(exist_ok=False)
            return folder
        except FileExistsError:
            k += 1


# --- what to refine ---

def plan(options: RefineOptions, recipe, warn: WarnFn, chosen: refinement.Method | None = None,
         say: WarnFn | None = None, G: nn.Module | None = None, device: torch.device | None = None) -> Source:
    """Read --input (and --inputs): a `fal sample` folder, translation outputs + inputs, or plain samples.
    Without --input: the run's own `fal sample` folder of this checkpoint, else fresh draws from G."""
    chosen = chosen or refinement.METHODS["fal"]
    files = TASKS[recipe.task].sample_files(recipe)
    conditional = TASKS[recipe.task].conditional
    if options.inputs is not None and not conditional:
        raise FalError(f"--inputs is for translation checkpoints; {options.checkpoint} is of task {recipe.task!r}")
    if options.invert_iterations is not None and conditional:
        hint = "drop it" if options.inputs is not None else "pass --inputs DIR for outputs of another model"
        raise FalError(f"--invert-iterations: translation outputs are refined from their inputs; there is no "
                       f"latent to invert ({hint})")
    if options.input is None:
        if options.inputs is not None:
            raise FalError("--inputs pairs with --input (the outputs they belong to); pass both")
        found = run_samples(run_folder(options.checkpoint), checkpoint.resolve(options.checkpoint), recipe.task)
        if found is not None:
            (say or warn)(f"refining the samples this checkpoint wrote to {found} (fal-samples.json)")
            options = replace(options, input=found)
        else:
            source = fresh_source(options, recipe, files, G, device)
            (say or warn)(f"no `fal sample` folder of this checkpoint in {run_folder(options.checkpoint)}; "
                          f"refining {len(source.names)} fresh samples drawn from it (--seed {options.seed})")
            if options.batch_size is not None:
                source.batch_size = options.batch_size
            return source
    path = Path(options.input)
    if not path.exists():
        raise FalError(f"--input {path}: no such file or folder")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None:
        source = _from_manifest(path, manifest, options, recipe, files, warn)
    elif conditional:
        source = _from_translation_files(path, options, recipe, files)
    else:
        source = _from_plain_samples(path, options, recipe, files, needs_latent=chosen.space in ("loop", "latent"))
    source.path = path
    if manifest is not None:
        source.looped_steps = manifest.get("steps")
    if options.batch_size is not None:
        source.batch_size = options.batch_size
    return source


def run_samples(run: Path, ckpt_file: Path, task: str) -> Path | None:
    """The newest folder directly inside the run that `fal sample` wrote from this very checkpoint."""
    if not run.is_dir():
        return None
    found = []
    for folder in run.iterdir():
        manifest_path = folder / MANIFEST
        if not folder.is_dir() or not manifest_path.is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except FalError:
            continue  # not ours to judge here: --input names it if the user wants it
        made_by = manifest.get("checkpoint")
        if manifest.get("task") == task and made_by and Path(made_by).resolve() == ckpt_file.resolve():
            found.append((manifest_path.stat().st_mtime, folder))
    return max(found)[1] if found else None


def fresh_source(options: RefineOptions, recipe, files: Files, G: nn.Module, device: torch.device) -> Source:
    """Samples drawn from the checkpoint now: G's first pass from latents of --seed (as `fal sample --steps 1`),
    or for translation G's output for the first --count validation inputs."""
    count = options.count if options.count is not None else recipe.evaluate.num_samples
    if not TASKS[recipe.task].conditional:
        latents = latents_for(recipe, count, options.seed)

        @torch.no_grad()
        def load(rows: list[int]) -> torch.Tensor:
            return G(latents[rows].to(device), None).cpu()

        return Source(item_names(count), files, load, latents=latents, kind="fresh draws")
    task = TASKS[recipe.task]
    dataset = task.make_dataset(recipe, "val")
    if count > len(dataset):
        count = len(dataset)  # the whole split: said in the line that names the source
    cache: dict[tuple[int, ...], Batch] = {}

    def batch_of(rows: list[int]) -> Batch:
        key = tuple(rows)
        if key not in cache:
            cache.clear()
            raw = {k: v.to(device) for k, v in dataset.__getitems__(rows).items()}
            cache[key] = task.make_batch(raw, recipe, training=False)
        return cache[key]

    @torch.no_grad()
    def load(rows: list[int]) -> torch.Tensor:
        return G(batch_of(rows).gen_input, None).cpu()

    return Source(item_names(count), files, load, lambda rows: batch_of(rows).condition.cpu(),
                  kind="fresh draws")


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


def _from_plain_samples(path: Path, options: RefineOptions, recipe, files: Files,
                        needs_latent: bool = True) -> Source:
    if isinstance(files, PointFiles):
        points = torch.from_numpy(read_points(path))
        source = Source(item_names(len(points)), files, lambda rows: points[rows], kind="points")
    else:
        if not path.is_dir():
            raise FalError(f"--input {path}: expected a folder of {files.what} ({', '.join(files.suffixes)})")
        found = list_files(path, files, task=recipe.task)
        names = sorted(found)
        source = Source(names, files, _loader(files, [found[n] for n in names]), kind="files")
    if not needs_latent:  # sample-space methods move the samples themselves
        return source
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
    for t, (x, logits) in enumerate(zip(out.samples, out.logits), start=1):
        collected.scores[t - 1] += float(torch.sigmoid(logits.float()).flatten(1).mean(1).sum())
        if collected.logits:
            collected.logits[t - 1] += float(refinement.score(logits).sum())
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
        from falcli.core.plots import toy_steps_figure  # keeps --help fast (and refine off toy: matplotlib)

        steps = [torch.cat(points) for points in collected.points]
        for t, points in enumerate(steps, start=1):
            files.write(points, [], folder / f"step-{t}")
        real = sample_mixture(recipe.data, 2000, torch.Generator().manual_seed(recipe.seed + 1))
        toy_steps_figure(real, Unrolled(steps, []), folder / "scatter.png")
        return "scatter.png"
    save_png(tile(grid_rows(files, collected)), folder / "grid.png")
    return "grid.png"


def grid_rows(files: Files, collected: Collected) -> list[list[np.ndarray]]:
    """One row per sample: input (translation) | G(z*) (after inversion) | t = 1..T | D's map at t = 1..T."""
    def pictures(x: torch.Tensor) -> list[np.ndarray]:
        if isinstance(files, VoxelFiles):
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
