"""Collect benchmarks/score_refine.py results (ROOT/ROW-s<seed>/refine-METHOD/scores.json) into markdown: per
checkpoint row and method, mean ± std over seeds of each metric at the first step and the last, seconds per 1000
samples, and DRS's acceptance.

    python benchmarks/refine_table.py ROOT ROW[,ROW...] METHOD[,METHOD...] [--keys coverage,mmd_iou,...]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

DEFAULT_KEYS = {"voxel": ["coverage", "mmd_iou", "precision_judge", "recall_judge", "coverage_judge"],
                "translation": ["fcn/class_iou", "fcn/pixel_accuracy", "l1", "ssim"]}


def spread(values: list[float], digits: int = 3) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("rows")
    parser.add_argument("methods")
    parser.add_argument("--keys", default=None)
    args = parser.parse_args()
    keys = args.keys.split(",") if args.keys else None
    printed = False
    for row in args.rows.split(","):
        for method in args.methods.split(","):
            found = sorted(args.root.glob(f"{row}-s*/refine-{method}/scores.json"))
            if not found:
                continue
            results = [json.loads(p.read_text()) for p in found]
            seeds = [p.parent.parent.name.rsplit("-s", 1)[1] for p in found]
            if keys is None:
                keys = DEFAULT_KEYS["translation" if "l1" in results[0]["rows"][0] else "voxel"]
            if not printed:
                print("| checkpoint | method | seeds | " + " | ".join(f"{k} t=1 → last" for k in keys)
                      + " | s / 1000 samples | DRS acceptance |")
                print("|---" * (len(keys) + 5) + "|")
                printed = True
            cells = [f"{spread([r['rows'][0][k] for r in results])} → {spread([r['rows'][-1][k] for r in results])}"
                     for k in keys]
            seconds = spread([r["seconds_per_1000"] for r in results], 1)
            drs = spread([r["drs"]["acceptance"] for r in results]) if results[0].get("drs") else "—"
            print(f"| {row} | {method} | {','.join(seeds)} | " + " | ".join(cells) + f" | {seconds} | {drs} |")


if __name__ == "__main__":
    main()
