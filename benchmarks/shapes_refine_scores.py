"""Score `fal refine` output folders of a shapes model in the judge's feature space, per step, and table them.

refine.json holds only D's numbers for images; this adds what `fal evaluate` reports for a checkpoint: judge
FID and precision/recall (k = 3) and density/coverage (k = 5) against the recipe's val split, for every
step-t/ folder, plus refine.json's seconds per 1000 samples and DRS acceptance.

    python benchmarks/shapes_refine_scores.py RECIPE OUT.json FOLDER [FOLDER ...]   # score (run from the folder
                                                                                     # holding runs/shapes_classifier)
    python benchmarks/shapes_refine_scores.py --table OUT.json      # t=1 → last step, mean ± std per label

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
    if len(values) == 1:  # one seed: no spread to show
        return f"{values[0]:{fmt}}"
    return f"{statistics.fmean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def table(out: str) -> None:
    """One line per LABEL: each metric at the first and the last recorded step (t=1 → last), mean ± std."""
    results = json.loads(Path(out).read_text())
    groups: dict[str, list[dict]] = {}
    for name, result in sorted(results.items()):
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(result)
    print("| model · method | seeds | steps | judge FID ↓ t=1 → last | precision | recall | density | coverage | "
          "D logit | s / 1000 | DRS acceptance |")
    print("|---" * 11 + "|")
    formats = dict(zip(KEYS, (".1f", ".3f", ".3f", ".3f", ".3f", ".2f")))
    for label, runs in groups.items():
        seeds = ",".join(re.sub(r".*-s", "", Path(r["folder"]).name) for r in runs)
        cells = []
        for key in KEYS:
            first = [r["steps"][0][key] for r in runs]
            last = [r["steps"][-1][key] for r in runs]
            cells.append(f"{cell(first, formats[key])} → {cell(last, formats[key])}")
        seconds = [r["seconds_per_1000"] for r in runs if r["seconds_per_1000"] is not None]
        accept = [r["acceptance"] for r in runs if r["acceptance"] is not None]
        print(f"| {label} | {seeds} | {len(runs[0]['steps'])} | " + " | ".join(cells) + " | "
              f"{cell(seconds, '.0f') if seconds else '—'} | {cell(accept) if accept else '—'} |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table(sys.argv[2])
    else:
        score(sys.argv[1], sys.argv[2], sys.argv[3:])
