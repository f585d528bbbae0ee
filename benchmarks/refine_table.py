"""Table `fal refine` output folders: per checkpoint and method, mean ± std over seeds of each metric at the first
step and the last, seconds per 1000 samples, and DRS's acceptance.

    python benchmarks/refine_table.py FOLDER [FOLDER ...] [--keys fid_judge,recall_judge,...]

Each FOLDER is one `fal refine --out` folder; its refine.json holds the task's metrics per step (`metrics`).
Folders are grouped into rows by their name without the seed: `plain-dot-latent-s0`, `plain-dot-latent-s1` →
row `plain-dot-latent`, seeds 0, 1 (or by the run folder above, for `RUN-sS/refine-METHOD`).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from seedstats import spread

DEFAULT_KEYS = {"toy": ["modes_covered", "high_quality", "sw_to_mixture", "recall"],
                "image": ["fid_judge", "precision_judge", "recall_judge", "density_judge", "coverage_judge"],
                "voxel": ["coverage", "mmd_iou", "precision_judge", "recall_judge", "coverage_judge"],
                "translation": ["fcn/class_iou", "fcn/pixel_accuracy", "l1", "ssim"]}
SEEDED = re.compile(r"^(?P<label>.+)-s(?P<seed>\d+)$")


def read(folder: Path) -> tuple[str, str, dict]:
    """(row label, seed, refine.json: its `metrics` are the task's metrics per step) of one refine folder."""
    doc = json.loads((folder / "refine.json").read_text())
    named = SEEDED.match(folder.name)
    if named:
        return named["label"], named["seed"], doc
    named = SEEDED.match(folder.parent.name)  # RUN-sS/refine-METHOD
    if not named:
        raise SystemExit(f"{folder}: no seed in its name (NAME-sS) or its run's (RUN-sS/…)")
    return f"{named['label']}-{folder.name.removeprefix('refine-')}", named["seed"], doc


def format_of(key: str) -> str:
    return ".1f" if key.startswith("fid") or key in ("psnr", "modes_covered") else ".3f"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--keys", default=None, help="comma-separated metric names (default: the task's)")
    args = parser.parse_args()
    rows: dict[str, list[tuple[str, dict]]] = {}
    for folder in args.folders:
        label, seed, doc = read(folder)
        rows.setdefault(label, []).append((seed, doc))
    first = next(iter(rows.values()))[0][1]
    keys = args.keys.split(",") if args.keys else DEFAULT_KEYS[first["task"]]
    print("| checkpoint · method | seeds | steps | " + " | ".join(f"{k} t=1 → last" for k in keys)
          + " | s / 1000 samples | DRS acceptance |")
    print("|---" * (len(keys) + 5) + "|")
    for label, runs in sorted(rows.items()):
        runs.sort(key=lambda run: int(run[0]))
        docs = [doc for _, doc in runs]
        cells = []
        for key in keys:
            if any(key not in doc["metrics"][0] for doc in docs):
                cells.append("—")
                continue
            start = spread([doc["metrics"][0][key] for doc in docs], format_of(key))
            last = spread([doc["metrics"][-1][key] for doc in docs], format_of(key))
            cells.append(f"{start} → {last}")
        seconds = spread([doc["seconds_per_1000"] for doc in docs], ".1f")
        drs = spread([doc["drs"]["acceptance"] for doc in docs], ".3f") if docs[0].get("drs") else "—"
        print(f"| {label} | {','.join(seed for seed, _ in runs)} | {len(docs[0]['metrics'])} | " + " | ".join(cells)
              + f" | {seconds} | {drs} |")


if __name__ == "__main__":
    main()
