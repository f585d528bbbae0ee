"""`fal toy`: the paper's 2D experiment. Trains the plain GAN (feedback.steps: 1) and FAL with the same seed and
budget, then writes the poster-style figure and a per-step table (modes covered, high-quality share, sliced
Wasserstein distance, mean D score), over one or more seeds. Where FAL's step 1 trains exactly as the plain GAN
(`gan_is_fal_step_one`), the plain GAN is that step, and is not trained a second time."""
from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import torch
from rich.table import Table

from falcli.core import checkpoint
from falcli.commands import train
from falcli.config import Recipe
from falcli.resolve import restore
from falcli.console import progress_bar
from falcli.core.plots import toy_poster_figure
from falcli.core.runtime import pick_device
from falcli.tasks import TASKS
from falcli.tasks.toy import ToyTask
from falcli.core.feedback import unroll
from falcli.errors import FalError

METRICS = ("modes_covered", "high_quality", "sliced_wasserstein", "sw_to_mixture", "precision", "recall", "density",
           "coverage", "d_logit")


def variants(recipe: Recipe) -> dict[str, Recipe]:
    """The two models compared: the plain GAN and FAL, identical but for the feedback steps."""
    return {"GAN": dataclasses.replace(recipe, feedback=recipe.feedback.plain()), "FAL": recipe}


def gan_is_fal_step_one(recipe: Recipe) -> bool:
    """Does FAL's training leave D and step 1 exactly as the plain GAN's (weight for weight)?

    It does when D trains on step 1's fakes only and the later steps' losses reach only the feedback modules
    (falcli/commands/train.py `TrainStep`) and step 1's loss keeps the plain GAN's weight 1: nothing of steps ≥ 2
    then reaches D or the backbone — the toy task adds no generator losses of its own and supports no methods,
    and its later steps draw no random numbers. tests/test_feedback_correction.py checks the weights bit for bit;
    the toy recipe's defaults satisfy it, so `fal toy` trains one model where it used to train two.
    """
    fb = recipe.feedback
    return (fb.steps > 1 and fb.discriminate == "first" and fb.later_steps_train == "feedback_only"
            and fb.weights[0] == 1.0)


def quick_recipe(recipe: Recipe) -> Recipe:
    """A few-second version for tests: fewer iterations and points, same models."""
    return dataclasses.replace(
        recipe,
        data=dataclasses.replace(recipe.data, points=4096),
        train=dataclasses.replace(recipe.train, iterations=150, log_every=50, sample_every=0,
                                  checkpoint_every=150,
                                  lr_decay_start=None if recipe.train.lr_decay_start is None else 75),  # (or
                                  # lr_decay_start_fraction, which scales by itself)
        evaluate=dataclasses.replace(recipe.evaluate, num_samples=500),
    )


def run(recipe: Recipe, out: Path, device: str = "cpu", seeds: int = 1, quick: bool = False,
        share_gan: bool = True) -> dict:
    """Train both variants for each seed (the plain GAN only where it is not FAL's step 1, or `share_gan` is
    off), evaluate per step, write toy_table.json and toy_figure.png."""
    if not isinstance(TASKS[recipe.task], ToyTask):
        raise FalError(f"`fal toy` runs toy recipes; this recipe's task is {recipe.task!r} (use `fal train`)")
    if out.exists() and any(out.iterdir()):  # never mixed with (or written over) an earlier experiment
        raise FalError(f"{out} holds an earlier experiment; choose another --out or delete that folder")
    if quick:
        recipe = quick_recipe(recipe)
    if pick_device(device).type == "cpu":
        # A 2D MLP GAN is bound by per-operation overhead: a second CPU thread does no useful work, it only
        # spins (measured: 541 s of CPU for the default run on 2 cores with both threads, against ~100 s with
        # one). The tables in docs/toy.md were measured with one thread too.
        torch.set_num_threads(1)
    shared = share_gan and gan_is_fal_step_one(recipe)
    rows: dict[str, list[list[dict]]] = {"GAN": [], "FAL": []}  # label → per seed → per step metrics
    figure_runs = {}
    for index in range(seeds):
        seeded = dataclasses.replace(recipe, seed=recipe.seed + index)
        models = variants(seeded)
        for label, variant in models.items():
            if label == "GAN" and shared:
                continue
            run_dir = out / f"seed{seeded.seed}" / label.lower()
            with progress_bar(f"{label} seed {seeded.seed}", variant.train.iterations) as update:
                train.run(variant, train.RunOptions(out=run_dir, device=device), on_progress=update)
            result, views = _evaluate(run_dir, device)
            rows[label].append(result)
            if index == 0:
                figure_runs[label] = views
        if shared:  # the same latents, G and D: the plain GAN's evaluation is FAL's at t = 1
            rows["GAN"].append(rows["FAL"][-1][:1])
            if index == 0:
                _, G, D = figure_runs["FAL"]
                figure_runs = {"GAN": (models["GAN"], G, D), **figure_runs}
    table = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    gan = "FAL's step 1 (gan_is_fal_step_one)" if shared else "trained"
    (out / "toy_table.json").write_text(json.dumps({"recipe": recipe.name, "seeds": seeds, "gan": gan,
                                                    "rows": table, "per_seed": rows}, indent=2))
    _figure(recipe, figure_runs, out / "toy_figure.png")
    return {"rows": table, "seeds": seeds, "gan_shared": shared}


def _evaluate(run_dir: Path, device: str):
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    recipe, G, D, G_ema, _ = restore(path, pick_device(device))
    task = TASKS[recipe.task]
    steps = recipe.feedback.sampling_steps
    metrics = task.evaluate(G, D, recipe, next(G.parameters()).device, steps, recipe.evaluate.num_samples)
    return metrics, (recipe, G, D)


def summarise(rows: dict[str, list[list[dict]]]) -> list[dict]:
    """Mean and std over seeds for each (model, step)."""
    table = []
    for label, per_seed in rows.items():
        for t in range(len(per_seed[0])):
            row = {"model": label, "step": t + 1}
            for key in METRICS:
                values = [seed_rows[t][key] for seed_rows in per_seed]
                row[key] = statistics.fmean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row["modes_total"] = per_seed[0][t]["modes_total"]
            table.append(row)
    return table


def print_table(result: dict, console) -> None:
    seeds = result["seeds"]
    table = Table(title=f"toy: per-step metrics ({seeds} seed{'s' if seeds > 1 else ''}, mean ± std)")
    table.caption = ("HQ: share within 3σ of a mode · SW: sliced Wasserstein to the mixture itself "
                     "(sliced_wasserstein, to a reference draw, is in toy_table.json) · P, R: improved precision "
                     "and recall (k = 3) in point space · D: mean logit; density and coverage are in toy_table.json")
    if result.get("gan_shared"):
        table.caption += (" · GAN = FAL's step 1: with D on step 1's fakes and the later steps training only the "
                          "feedback modules, D and step 1 train exactly as the plain GAN, so it was trained once "
                          "(--set feedback.discriminate=all trains both)")
    for column in ("model", "t", "modes covered ↑", "HQ ↑", "SW ↓", "P ↑", "R ↑", "D"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        def cell(key, fmt):
            return f"{row[key]:{fmt}} ± {row[key + '_std']:{fmt}}" if seeds > 1 else f"{row[key]:{fmt}}"
        table.add_row(row["model"], str(row["step"]),
                      f"{cell('modes_covered', '.1f')} / {row['modes_total']}", cell("high_quality", ".3f"),
                      cell("sw_to_mixture", ".4f"), cell("precision", ".3f"), cell("recall", ".3f"),
                      cell("d_logit", ".2f"))
    console.print(table)


def _figure(recipe: Recipe, figure_runs: dict, path: Path) -> None:
    task = TASKS[recipe.task]
    extent = 3.0 if recipe.data.mixture == "ring" else 5.5
    axis = torch.linspace(-extent, extent, 200)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    runs, surfaces = {}, {}
    for label, (variant, G, D) in figure_runs.items():
        device = next(G.parameters()).device
        batch = task.fixed_batch(variant, device, 1000)
        with torch.no_grad():
            runs[label] = (unroll(G, D, batch.gen_input, None, variant.feedback.sampling_steps, variant.feedback,
                                  lambda x: x), None)
            surfaces[label] = D(grid.to(device)).reshape(200, 200).cpu()
        real = batch.real
    toy_poster_figure(real, runs, surfaces, extent, path)
