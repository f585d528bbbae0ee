"""The memory estimate of falcli/nn/budget.py against the measured peak of the training step it estimates.

    OMP_NUM_THREADS=1 python benchmarks/train_memory.py shapes --set train.batch_size=64 --device cpu
    python benchmarks/train_memory.py celeba shapenet_car cityscapes --device cuda --precision fp32 bf16

For each recipe (each in a fresh subprocess, so that one peak does not hide another): G and D built as the
recipe says (`memory_probe`, so that no prepared data is needed), their optimizers as `fal train` makes them,
and `--steps` calls of `falcli.commands.train.TrainStep` (the very step `fal train` runs) on a random batch of
the right shapes. Measured: on CUDA, `torch.cuda.max_memory_allocated` over building and training; on the CPU
the growth of the process's peak resident set (VmHWM) over its resident set before the networks were built.
Printed: one JSON line per recipe with the estimate's parts and the measured peak.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key))


def measure(recipe_name: str, overrides: list[str], device_name: str, precision: str, steps: int) -> dict:
    import torch

    from falcli.commands.train import TrainStep, make_optimizers
    from falcli.core.batch import Batch
    from falcli.nn import budget
    from falcli.resolve import load_recipe
    from falcli.tasks import TASKS

    recipe = load_recipe(recipe_name, overrides + [f"train.precision={precision}"])
    task = TASKS[recipe.task]
    found = budget.estimate(recipe, task)
    device = torch.device(device_name)
    bf16 = device.type == "cuda" and precision in ("auto", "bf16")
    torch.manual_seed(0)
    before = _status("VmRSS") if device.type == "cpu" else 0
    G, D, input_shape = task.memory_probe(recipe)
    G, D = G.to(device), D.to(device)
    if task.dims == 2 and device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_G, opt_D = make_optimizers(G, D, recipe.train, device, recipe.feedback.lr)
    gen_input = torch.randn(recipe.train.batch_size, *input_shape, device=device)
    with torch.no_grad():
        real = G(gen_input, None).clamp(-1, 1).float()
    batch = Batch(real=real, gen_input=gen_input, condition=gen_input if task.conditional else None)
    step = TrainStep(task, recipe, G, D, G, D, opt_G, opt_D, bf16, device)
    for iteration in range(steps):
        step(batch, iteration)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _status("VmHWM") - before
    return {"recipe": recipe_name, "overrides": overrides, "device": device_name, "precision": precision,
            "batch": recipe.train.batch_size, "steps": recipe.feedback.steps,
            "estimate_MiB": round(found.total_bytes / 2**20, 1) if not isinstance(found, str) else found,
            "estimate_parameters_MiB": round(found.parameter_bytes / 2**20, 1) if not isinstance(found, str) else None,
            "estimate_activations_MiB": round(found.activation_bytes / 2**20, 1) if not isinstance(found, str) else None,
            "measured_MiB": round(peak / 2**20, 1),
            "measured_over_estimate": round(peak / found.total_bytes, 2) if not isinstance(found, str) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the measuring subprocess
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.recipes[0], args.overrides, args.device, args.precision[0], args.steps)))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in args.recipes:
        for precision in args.precision:
            command = [sys.executable, __file__, name, "--one", "--device", args.device, "--precision", precision,
                       "--steps", str(args.steps)] + [a for o in args.overrides for a in ("--set", o)]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            print(done.stdout.strip() or done.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main()
