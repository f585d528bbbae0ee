"""Score a finished toy sweep row (benchmarks/toy_sweep.py) with more feedback steps at test time than trained.

    python benchmarks/toy_test_steps.py NAME STEPS     # writes runs/toy-sweep/NAME-test<STEPS>/result.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from falcli import resolve
from falcli.core import checkpoint  # noqa: E402
from falcli.tasks import TASKS  # noqa: E402


def main(name: str, steps: int, root: Path = Path("runs/toy-sweep")) -> None:
    torch.set_num_threads(1)
    per_seed = []
    for run_dir in sorted((root / name).glob("seed*"), key=lambda p: int(p.name[4:])):
        recipe, G, D, _, _ = resolve.restore(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1],
                                                torch.device("cpu"))
        per_seed.append(TASKS["toy"].evaluate(G, D, recipe, torch.device("cpu"), steps,
                                              recipe.evaluate.num_samples))
    out = root / f"{name}-test{steps}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"name": out.name, "per_seed": per_seed}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
