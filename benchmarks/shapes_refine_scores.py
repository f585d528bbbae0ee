"""Score `fal refine` output folders of a shapes model in the judge's feature space, per step, and table them.

refine.json holds only D's numbers for images; this adds what `fal evaluate` reports for a checkpoint: judge
FID and precision/recall (k = 3) and density/coverage (k = 5) against the recipe's val split, for every
step-t/ folder, plus refine.json's seconds per 1000 samples and DRS acceptance.

    python benchmarks/shapes_refine_scores.py RECIPE OUT.json FOLDER [FOLDER ...]   # score (run from the folder
                                                                                     # holding runs/shapes_classifier)
    python benchmarks/shapes_refine_scores.py --table OUT.json                       # mean ± std per label

Folders named LABEL-sSEED are grouped by LABEL in the table.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

KEYS = ("fid_judge", "precision_judge", "recall_judge", "density_judge", "coverage_judge", "d_logit")


def score(recipe_path: str, out: str, folders: list[str]) -> None:
    import numpy as np
    import torch

    from falcli.commands.evaluate.fid import _statistics, folder_side, judge_space
    from falcli.config import load_recipe
    from falcli.metrics import fid as fidlib
    from falcli.metrics.coverage import coverage_metrics
    from falcli.tasks.image.task import load_images

    recipe = load_recipe(Path(recipe_path))
    device = torch.device("cpu")
    space = judge_space(None, device, recipe.data.image_size)
    reference = torch.from_numpy(np.array(load_images(recipe.data, "val")["images"])).permute(0, 3, 1, 2)
    real_features = space.extract([reference])
    real = _statistics(real_features, space, "val split")
    results = json.loads(Path(out).read_text()) if Path(out).is_file() else {}
    for folder in map(Path, folders):
        report = json.loads((folder / "refine.json").read_text())
        rows = []
        for t, metrics in enumerate(report["metrics"], start=1):
            fake = folder_side(folder / f"step-{t}", space, 100, 0).features[0]
            row = {"step": t, "fid_judge": fidlib.frechet_distance(*_statistics(fake, space, str(folder)), *real),
                   "d_logit": metrics.get("d_logit")}
            row.update({f"{k}_judge": v for k, v in coverage_metrics(real_features, fake).items()})
            rows.append(row)
        results[folder.name] = {"folder": str(folder), "method": report.get("method"), "steps": rows,
                                "seconds_per_1000": report.get("seconds_per_1000"),
                                "acceptance": (report.get("drs") or {}).get("acceptance")}
        print(folder.name, " | ".join(f"t={r['step']} FID {r['fid_judge']:.1f} R {r['recall_judge']:.3f}"
                                      for r in rows), flush=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")


def cell(values: list[float], fmt: str = ".3f") -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {std:{fmt}}"


def table(out: str) -> None:
    results = json.loads(Path(out).read_text())
    groups: dict[str, list[dict]] = {}
    for name, result in results.items():
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(result)
    print("| model · method | seeds | t | judge FID ↓ | precision | recall | density | coverage | D logit | "
          "s / 1000 | DRS acceptance |")
    print("|---" * 11 + "|")
    for label, runs in groups.items():
        seconds = [r["seconds_per_1000"] for r in runs if r["seconds_per_1000"] is not None]
        accept = [r["acceptance"] for r in runs if r["acceptance"] is not None]
        for t in range(len(runs[0]["steps"])):
            values = {k: [r["steps"][t][k] for r in runs if r["steps"][t].get(k) is not None] for k in KEYS}
            cells = [cell(values["fid_judge"], ".1f")] + [cell(values[k]) for k in KEYS[1:] if values[k]]
            last = t == len(runs[0]["steps"]) - 1
            print(f"| {label} | {len(runs)} | {t + 1} | " + " | ".join(cells) + " | "
                  f"{cell(seconds, '.2f') if seconds and last else ''} | "
                  f"{cell(accept) if accept and last else ''} |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        score(sys.argv[1], sys.argv[2], sys.argv[3:])
