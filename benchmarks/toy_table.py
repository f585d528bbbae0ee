"""Collect runs/toy-sweep/*/result.json (benchmarks/toy_sweep.py) into one markdown table: mean ± std over seeds.

    python benchmarks/toy_table.py NAME [NAME ...]
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

KEYS = [("modes_covered", ".1f"), ("high_quality", ".3f"), ("sliced_wasserstein", ".3f"), ("sw_to_mixture", ".4f"),
        ("precision", ".3f"), ("recall", ".3f"), ("density", ".3f"), ("coverage", ".3f")]


def cell(values, fmt):
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {std:{fmt}}"


def main(names, root=Path("runs/toy-sweep")):
    keys = None
    for name in names:
        result = json.loads((root / name / "result.json").read_text())
        per_seed = result["per_seed"]
        if keys is None:
            keys = [(k, f) for k, f in KEYS if k in per_seed[0][0]]
            print("| row | seeds | t | " + " | ".join(k for k, _ in keys) + " | 8/8 seeds |")
            print("|---" * (len(keys) + 4) + "|")
        for t in range(len(per_seed[0])):
            cells = [cell([s[t][k] for s in per_seed], f) for k, f in keys]
            full = sum(s[t]["modes_covered"] == s[t]["modes_total"] for s in per_seed)
            print(f"| {name} | {len(per_seed)} | {t + 1} | " + " | ".join(cells) + f" | {full}/{len(per_seed)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
