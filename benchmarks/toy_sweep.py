"""One row of the toy's feedback measurement (docs/toy.md): train one variant of recipes/toy.yaml over seeds and
write its per-step metrics as JSON, so rows can run as separate background processes.

    OMP_NUM_THREADS=1 python benchmarks/toy_sweep.py NAME --seeds 5 [--plain] --set key=value ...

Writes runs/toy-sweep/NAME/result.json: {"name", "overrides", "per_seed": [[step metrics, ...], ...]}.
Seeds are the recipe seed, +1, … — the same data, latents and initial weights for every row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from falcli.commands import train  # noqa: E402
from falcli.resolve import load_recipe  # noqa: E402
from falcli.commands.toy_experiment import _evaluate, variants  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--plain", action="store_true", help="train the plain GAN (feedback.steps 1)")
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--recipe", default="recipes/toy.yaml")
    parser.add_argument("--out", default="runs/toy-sweep")
    parser.add_argument("--reevaluate", action="store_true", help="score a finished row's checkpoints again "
                                                                   "(after the metrics changed); no training")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.reevaluate:
        path = Path(args.out) / args.name / "result.json"
        result = json.loads(path.read_text())
        result["per_seed"] = [_evaluate(run_dir, "cpu")[0]
                              for run_dir in sorted(path.parent.glob("seed*"), key=lambda p: int(p.name[4:]))]
        path.write_text(json.dumps(result, indent=1))
        return
    recipe = load_recipe(args.recipe, args.set)
    out = Path(args.out) / args.name
    if out.exists():
        shutil.rmtree(out)
    per_seed, seconds = [], []
    for index in range(args.seeds):
        seeded = dataclasses.replace(recipe, seed=recipe.seed + index)
        variant = variants(seeded)["GAN" if args.plain else "FAL"]
        run_dir = out / f"seed{seeded.seed}"
        start = time.process_time()
        train.run(variant, train.RunOptions(out=run_dir, device="cpu"))
        seconds.append(time.process_time() - start)
        metrics, _ = _evaluate(run_dir, "cpu")
        per_seed.append(metrics)
        print(args.name, seeded.seed, [(m["modes_covered"], round(m["high_quality"], 3),
                                        round(m["sliced_wasserstein"], 3)) for m in metrics], flush=True)
    (out / "result.json").write_text(json.dumps({"name": args.name, "plain": args.plain, "overrides": args.set,
                                                 "cpu_seconds": seconds, "per_seed": per_seed}, indent=1))


if __name__ == "__main__":
    main()
