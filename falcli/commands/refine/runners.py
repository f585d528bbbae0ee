"""The methods' runners: FAL's loop and the iterative methods over a Source's batches, and DRS's own draws.
Each writes every step (falcli/commands/refine/writing.py) and returns refine.json's content."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from falcli.commands.refine.common import BATCH_SIZE, DRS_UNIFORMS, FINAL_LATENTS, K_STREAM, Collected, \
    RefineOptions, Source
from falcli.commands.refine.metrics import task_metrics
from falcli.commands.refine.sources import invert_all
from falcli.commands.refine.writing import collect, write_figure, write_steps
from falcli.commands.sample import ProgressFn, WarnFn, latents_for
from falcli.core import checkpoint
from falcli.core.feedback import Unrolled, unroll
from falcli.core.files import LATENTS, Files, PointFiles, VoxelFiles, item_names
from falcli.errors import FalError
from falcli.methods import refinement
from falcli.tasks import TASKS
from falcli.tasks.base import Batch

def refine_source(options: RefineOptions, chosen: refinement.Method, steps: int, recipe, task, source: Source,
                  G: nn.Module, D: nn.Module, device: torch.device, tmp: Path, on_progress: ProgressFn | None,
                  warn: WarnFn, note: WarnFn) -> dict:
    """FAL's loop or an iterative method over the source's batches; every step written into tmp."""
    count = len(source.names)
    batches = [list(range(s, min(count, s + source.batch_size))) for s in range(0, count, source.batch_size)]
    iterations = options.iterations if options.iterations is not None else chosen.iterations
    lr = options.lr if options.lr is not None else chosen.lr
    if chosen.iterative and iterations < steps - 1:
        raise FalError(f"--steps {steps} records {steps - 1} points after the start, but {chosen.name} runs only "
                       f"{iterations} iterations; lower --steps or raise --iterations")
    if chosen.space == "latent" and source.looped_steps and source.looped_steps > source.latents_step:
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
            if out.latents is not None:  # output latent: the loop moved the latent too
                final_latents.append(out.latents[-1].cpu())
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
        write_steps(out, [source.names[i] for i in rows], source.files, tmp, collected)
        collect(out, condition, reconstruction, collected)
        if on_progress:
            on_progress(f"refine ({chosen.name})", rows[-1] + 1, count)
    if latents is not None:
        np.save(tmp / LATENTS, latents.numpy())
    if final_latents:
        np.save(tmp / FINAL_LATENTS, torch.cat(final_latents).numpy())
    what = ("t=1 the sample, then G's passes" if chosen.space == "loop" else
            f"t = iterations {', '.join(map(str, recorded_iterations))}")
    figure = write_figure(recipe, source.files, collected, tmp, f"{chosen.name}: {what}")
    settings = None
    if chosen.iterative:
        settings = {"iterations": iterations, "lr": lr}
        if k is not None:
            settings.update({"k_eff": k, "k_estimated": estimated, "k_pairs": options.k_pairs if estimated else None})
    return _result(options, chosen, recipe, task, D, device, count, steps, collected, spent, note, {
        "input": str(source.path) if source.path is not None else None,
        "inputs": str(options.inputs) if options.inputs else None, "source": source.kind,
        "iterations": recorded_iterations, "settings": settings, "inversion": inversion, "figure": figure,
        "latents": LATENTS if latents is not None else None,
        "final_latents": FINAL_LATENTS if final_latents else None})


def refine_rejection(options: RefineOptions, recipe, task, G: nn.Module, D: nn.Module, device: torch.device,
                     tmp: Path, on_progress: ProgressFn | None, note: WarnFn) -> dict:
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
        write_steps(out, names[part], files, tmp, collected)
        collect(out, None, None, collected)
    figure = write_figure(recipe, files, collected, tmp, f"drs: t=1 G's draws, t=2 accepted "
                          f"({options.drs_percentile:g}th pct)")
    drs = {"percentile": options.drs_percentile, "burn_in": options.drs_burn_in, "epsilon": refinement.DRS_EPSILON,
           "gamma": rejection.gamma, "l_max": rejection.l_max, "l_max_final": rejection.l_max_final,
           "draws": rejection.draws, "accepted": count, "acceptance": rejection.acceptance,
           "max_draws": max_draws, "seed": options.seed}
    return _result(options, refinement.METHODS["drs"], recipe, task, D, device, count, 2, collected, spent, note, {
        "input": None, "inputs": None, "source": "fresh draws", "iterations": None, "settings": None,
        "drs": drs, "inversion": None, "figure": figure, "latents": None, "final_latents": None})


def _result(options: RefineOptions, chosen: refinement.Method, recipe, task, D: nn.Module, device: torch.device,
            count: int, steps: int, collected: Collected, spent: float, note: WarnFn, extra: dict) -> dict:
    """refine.json: per step D's mean score and logit over the samples, next to the task's own metrics of them."""
    own = [{"d_real_probability": s / count, "d_logit": lg / count} for s, lg in zip(collected.scores, collected.logits)]
    conditions = torch.cat(collected.all_conditions) if collected.all_conditions else None
    scored = task_metrics(task, recipe, D, collected.steps(), conditions, device, note)
    metrics = [{**task_row, **row} for row, task_row in zip(own, scored)] if scored else own
    return {
        "format": "fal-refine", "version": 1, "task": recipe.task,
        "checkpoint": str(checkpoint.resolve(options.checkpoint).resolve()),  # the file, not a run folder
        "method": chosen.name, "count": count, "steps": steps, "trained_steps": recipe.feedback.steps,
        "d_real_probability": [row["d_real_probability"] for row in metrics],  # mean σ(D) over the map and the samples, per step
        "metrics": metrics, "task_metrics": bool(scored), "seconds": spent, "seconds_per_1000": 1000 * spent / count, **extra,
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


