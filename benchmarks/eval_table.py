"""Collect `fal evaluate all` results (RUN/evaluate-all.json) of runs over seeds into one markdown table per step:
mean ± std over the seeds of each row.

    python benchmarks/eval_table.py ROOT ROW [ROW ...] [--keys coverage,mmd_iou,...]

ROW names runs ROOT/ROW-s<seed> (every seed found is used; rows must have the same seeds to be compared).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from seedstats import spread

DEFAULT_KEYS = {
    "voxel": ["coverage", "mmd_iou", "precision_judge", "recall_judge", "density_judge", "coverage_judge",
              "accuracy", "occupancy", "d_real_probability"],
    "translation": ["fcn/class_iou", "fcn/pixel_accuracy", "fcn/class_accuracy", "l1", "ssim", "ssim_gaussian",
                    "psnr", "d_real_probability"],
}


def cell(values: list[float]) -> str:
    return spread(values, ".4f" if abs(statistics.fmean(values)) < 1 else ".2f")


def runs_of(root: Path, row: str) -> list[tuple[int, dict]]:
    found = []
    for path in sorted(root.glob(f"{row}-s*/evaluate-all.json")):
        seed = int(path.parent.name.rsplit("-s", 1)[1])
        found.append((seed, json.loads(path.read_text())))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("rows", nargs="+")
    parser.add_argument("--keys", default=None)
    args = parser.parse_args()
    keys = args.keys.split(",") if args.keys else None
    per_seed_lines = []
    header_done = False
    for row in args.rows:
        runs = runs_of(args.root, row)
        if not runs:
            print(f"| {row} | (no finished runs) |")
            continue
        if keys is None:
            first = runs[0][1]["rows"][0]
            task = "translation" if "l1" in first else "voxel"
            keys = [k for k in DEFAULT_KEYS[task] if k in first]
        if not header_done:
            print("| row | seeds | t | " + " | ".join(keys) + " |")
            print("|---" * (len(keys) + 3) + "|")
            header_done = True
        seeds = [seed for seed, _ in runs]
        for t in range(len(runs[0][1]["rows"])):
            cells = [cell([r["rows"][t][k] for _, r in runs]) for k in keys]
            print(f"| {row} | {','.join(map(str, seeds))} | {t + 1} | " + " | ".join(cells) + " |")
        for seed, r in runs:
            values = " → ".join(" / ".join(f"{step[k]:.4f}" for k in keys[:2]) for step in r["rows"])
            per_seed_lines.append(f"- {row} seed {seed} ({keys[0]} / {keys[1]} per step): {values}")
    print()
    print("\n".join(per_seed_lines))


if __name__ == "__main__":
    main()
