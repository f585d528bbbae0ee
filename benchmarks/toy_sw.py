"""Score finished toy_sweep rows by the sliced W1 to the mixture itself on many samples (docs/toy.md,
"Measuring SW"): at the evaluation's 2500 points the distance carries a sampling noise as large as the
differences between the rows, at 50 000 about a tenth of it.

    OMP_NUM_THREADS=1 python benchmarks/toy_sw.py NAME [NAME ...] [--samples 50000] [--dot NAME ...] [--steps T]

For each seed of runs/toy-sweep/NAME, its final checkpoint draws `--samples` latents (the same for every row) and
unrolls them; every step's sw_to_mixture and high-quality share go to runs/toy-sweep/NAME/sw.json, and one
markdown table to stdout: mean ± std over seeds of both, next to the row's recall and coverage from its own
evaluation (result.json, 2500 points: the k-NN metrics grow with the square of the points). `--dot NAME` adds a
row NAME+dot: `fal refine --method dot-latent` (its defaults: 30 Adam steps, lr 0.01, K estimated) of the same
latents — meant for a plain row, whose t = 1 it repeats —, its recall and coverage from a second refine of 2500
points scored by refine's own toy metrics (against the evaluation's real points, as result.json's rows are).
`--steps T` unrolls the feedback rows T steps instead of the recipe's (more than trained is allowed, as for
`fal evaluate --steps`); their sw.json is then sw-tT.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # seedstats, also when loaded from elsewhere (tests)

from falcli.commands.refine import runners  # noqa: E402
from falcli.commands.refine.common import RefineOptions  # noqa: E402
from falcli.commands.refine.run import refine  # noqa: E402
from falcli.core import checkpoint  # noqa: E402
from falcli.core.feedback import unroll  # noqa: E402
from falcli.metrics.toy import mode_metrics, sw_to_mixture  # noqa: E402
from falcli.resolve import restore  # noqa: E402
from falcli.tasks.base import latents_for  # noqa: E402
from falcli.tasks.toy import mixture_centers  # noqa: E402
from seedstats import spread  # noqa: E402

LATENT_SEED = 0         # one stream for every row and seed (fal refine's fresh draws with --seed 0): the rows
                        # differ only by their networks


def scores(x: torch.Tensor, recipe) -> dict[str, float]:
    centers = mixture_centers(recipe.data)
    return {"sw_to_mixture": sw_to_mixture(x, centers, recipe.data.sigma),
            "high_quality": mode_metrics(x, centers, recipe.data.sigma)["high_quality"]}


def feedback_steps(run_dir: Path, count: int, steps: int | None = None) -> list[dict[str, float]]:
    recipe, G, D, _, _ = restore(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1], torch.device("cpu"))
    steps = recipe.feedback.sampling_steps if steps is None or recipe.feedback.steps == 1 else steps
    with torch.no_grad():
        out = unroll(G, D, latents_for(recipe, count, LATENT_SEED), None, steps, recipe.feedback, lambda x: x)
    return [scores(x, recipe) for x in out.samples]


def dot_steps(run_dir: Path, count: int) -> list[dict[str, float]]:
    """Latent DOT through `fal refine` itself, on its fresh draws of seed LATENT_SEED (the latents feedback_steps
    unrolls); refine's own metrics (k-NN, quadratic in the count) are skipped: only the written points are scored."""
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    recipe = restore(path, torch.device("cpu")).recipe
    task_metrics, runners.task_metrics = runners.task_metrics, lambda *args, **kwargs: []
    try:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "dot"
            refine(RefineOptions(checkpoint=path, out=out, method="dot-latent", count=count, batch_size=5000,
                                 seed=LATENT_SEED, device="cpu"), warn=lambda message: None)
            steps = sorted(out.glob("step-*/points.npy"), key=lambda p: int(p.parent.name[5:]))
            return [scores(torch.from_numpy(np.load(p)), recipe) for p in steps]
    finally:
        runners.task_metrics = task_metrics


def dot_coverage(run_dir: Path, count: int = 2500) -> list[dict[str, float]]:
    """Latent DOT's recall and coverage per step by `fal refine`'s own toy metrics: `count` fresh draws of seed
    LATENT_SEED, scored against the evaluation's real points (the k-NN metrics of the other rows' result.json)."""
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    with tempfile.TemporaryDirectory() as folder:
        result = refine(RefineOptions(checkpoint=path, out=Path(folder) / "dot", method="dot-latent", count=count,
                                      batch_size=count, seed=LATENT_SEED, device="cpu"), warn=lambda message: None)
    return result["metrics"]


def table_rows(label: str, per_seed: list[list[dict]], evaluated: list[list[dict]] | None) -> list[str]:
    lines = []
    for t in range(len(per_seed[0])):
        scored = evaluated and t < len(evaluated[0])  # steps past the trained ones have no 2500-point evaluation
        own = [spread([seed[t][k] for seed in evaluated], ".3f") if scored else "—" for k in ("recall", "coverage")]
        hq, sw = (spread([seed[t][k] for seed in per_seed], f) for k, f in (("high_quality", ".3f"),
                                                                             ("sw_to_mixture", ".4f")))
        lines.append(f"| {label} | {len(per_seed)} | {t + 1} | {hq} | {sw} | {own[0]} | {own[1]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="+")
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--dot", nargs="*", default=[], metavar="NAME",
                        help="rows (plain ones) whose runs latent DOT also refines")
    parser.add_argument("--coverage-samples", type=int, default=2500,
                        help="points of DOT's recall and coverage [the evaluation's 2500]")
    parser.add_argument("--root", default="runs/toy-sweep")
    parser.add_argument("--steps", type=int, default=None, help="feedback steps to unroll [the recipe's]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"| row | seeds | t | high_quality ({args.samples}) | sw_to_mixture ({args.samples}) | recall (2500) "
          f"| coverage (2500) |\n|---|---|---|---|---|---|---|")
    for name in args.names:
        folder = Path(args.root) / name
        seeds = sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:]))
        if not seeds:
            sys.exit(f"{folder}: no seed folders (run benchmarks/toy_sweep.py {name} first)")
        rows = {name: [feedback_steps(run, args.samples, args.steps) for run in seeds]}
        dot_evaluated = None
        if name in args.dot:
            rows[name + "+dot"] = [dot_steps(run, args.samples) for run in seeds]
            dot_evaluated = [dot_coverage(run, args.coverage_samples) for run in seeds]
        result = {"samples": args.samples, "seeds": [int(p.name[4:]) for p in seeds], "rows": rows}
        if dot_evaluated is not None:  # DOT's own 2500-point evaluation per seed and step (recall, coverage, …)
            result["dot_evaluated"] = dot_evaluated
        (folder / ("sw.json" if args.steps is None else f"sw-t{args.steps}.json")).write_text(json.dumps(result,
                                                                                                    indent=1))
        own = folder / "result.json"
        evaluated = json.loads(own.read_text())["per_seed"] if own.exists() else None
        for label, per_seed in rows.items():
            print("\n".join(table_rows(label, per_seed, evaluated if label == name else dot_evaluated)), flush=True)


if __name__ == "__main__":
    main()
