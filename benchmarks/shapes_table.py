"""Per-step mean ± std over seeds of `fal evaluate all --ckpt RUN` (RUN/evaluate-all.json), for runs named
LABEL-sSEED: judge FID next to precision/recall/density/coverage in the judge's feature space.

    python benchmarks/shapes_table.py ROOT LABEL [LABEL ...] [--file NAME]   # e.g. runs/shapes plain fal plaincm

--file reads RUN/NAME instead (`fal evaluate all --ckpt RUN/checkpoints/iter-N.pt --json RUN/NAME`: an earlier
checkpoint of the same run).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from seedstats import spread

KEYS = [("fid_judge", ".1f"), ("precision_judge", ".3f"), ("recall_judge", ".3f"), ("density_judge", ".3f"),
        ("coverage_judge", ".3f"), ("d_logit", ".2f")]
SCORES = "evaluate-all.json"  # what `fal evaluate all --ckpt RUN` writes into RUN


def main(root: Path, labels: list[str], file: str = SCORES) -> None:
    print("| run | seeds | t | judge FID ↓ | precision | recall | density | coverage | D logit | FID per seed |")
    print("|---" * 10 + "|")
    for label in labels:
        found = sorted(root.glob(f"{label}-s*/{file}"))
        seeds = [path.parent.name.rsplit("-s", 1)[1] for path in found]
        rows = [json.loads(path.read_text())["rows"] for path in found]
        if not rows:
            continue
        for t in range(len(rows[0])):
            cells = [spread([r[t][key] for r in rows], fmt) for key, fmt in KEYS]
            per_seed = ", ".join(f"{r[t]['fid_judge']:.1f}" for r in rows)
            print(f"| {label} | {','.join(seeds)} | {t + 1} | " + " | ".join(cells) + f" | {per_seed} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--file", default=SCORES, help="the JSON of each run folder to read")
    args = parser.parse_args()
    main(args.root, args.labels, args.file)
