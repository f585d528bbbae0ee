"""Everything issue 19 (Part B) asks of a GPU, in one run under one time budget: logs and JSON in one folder.

    python benchmarks/gpu_check.py                 # on a GPU machine; results in $OUT, else benchmarks/results/
    python benchmarks/gpu_check.py --dry           # the same steps, CPU-sized (to know the script itself runs)

Steps, in order of importance (a step that would overrun the budget gets what is left, then is cut off):
1. `pytest -m gpu -x -W always`, its log searched for the two warnings that mean a broken capture
   ("The AccumulateGrad node's stream does not match…", "The CUDA Graph is empty…");
2. `benchmarks/train_speed.py --cuda-graph --json` at batch 1 and 16, T = 1 and 3 (fal's step eager and
   graphed against the reference pix2pix step, same process), with its goals;
3. `benchmarks/fid_speed.py --n 10000 --dims 2048 --json` (fal against pytorch-fid end to end).
Writes env.json (GPU, driver, versions), one .log per step, train_speed.json, fid_speed.json and
summary.json (each step's command, exit status, seconds, whether it timed out, the warnings found, the
goals). Exit status 0 when every step ran and passed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROKEN_CAPTURE = {  # parts of the warnings' own texts (not of the tests' sources, which name them shorter)
    "accumulate_grad_stream": "stream does not match the stream of the node that produced the incoming",
    "empty_graph": "attempted to be captured on wrong device or stream",
}
TINY_TRAIN = ["--device", "cpu", "--size", "32", "--channels", "4", "--depth", "3", "--d-layers", "2",
              "--set", "feedback.encoder_channels=4", "--set", "feedback.hidden_channels=4", "--iters", "1",
              "--warmup", "0", "--pairs", "8", "--data-batches", "1"]


def steps(dry: bool, out: Path) -> list[tuple[str, list[str], int]]:
    """(name, command, timeout seconds) of every step."""
    python = sys.executable
    pytest = [python, "-m", "pytest", "-m", "gpu", "-x", "-W", "always", "-rs", "-q", "-p", "no:cacheprovider"]
    if dry:
        pytest += ["tests/test_graphs.py", "tests/test_benchmarks.py"]
    speed = [python, "benchmarks/train_speed.py", "--batch", "1", "16", "--steps", "1", "3",
             "--json", str(out / "train_speed.json")]
    speed += (TINY_TRAIN + ["--batch", "1", "2"]) if dry else ["--cuda-graph", "--data-batches", "30"]
    fid = [python, "benchmarks/fid_speed.py", "--json", str(out / "fid_speed.json")]
    fid += ["--n", "80", "--dims", "64", "--size", "32", "--device", "cpu", "--workers", "0"] if dry else \
        ["--n", "10000", "--dims", "2048"]
    return [("pytest_gpu", pytest, 200), ("train_speed", speed, 260), ("fid_speed", fid, 240)]


def environment() -> dict:
    import torch

    info = {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": str(torch.__version__),
            "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cuda_available": torch.cuda.is_available(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = None
    return info


def run_step(name: str, command: list[str], timeout: float, out: Path) -> dict:
    log = out / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        try:
            rc = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}).returncode
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    text = log.read_text(errors="replace")
    record = {"command": command, "rc": rc, "timed_out": timed_out, "timeout_s": round(timeout),
              "seconds": round(time.perf_counter() - start, 1), "log": log.name,
              "tail": text[-1500:]}
    if name == "pytest_gpu":
        record["broken_capture_warnings"] = {key: text.count(needle) for key, needle in BROKEN_CAPTURE.items()}
        summary = [line for line in text.splitlines() if " passed" in line or " failed" in line
                   or " skipped" in line]
        record["pytest_summary"] = summary[-1] if summary else None
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="CPU-sized steps: checks that this script runs")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: $OUT, else benchmarks/results/gpu-check-UTC)")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all steps together")
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps (by name)")
    args = parser.parse_args(argv)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else
                       ROOT / "benchmarks" / "results" / f"gpu-check-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    if any((out / name).exists() for name in ("summary.json", "train_speed.json", "fid_speed.json")):
        print(f"error: {out} already holds results; pass another --out", file=sys.stderr)
        return 2
    env = environment()
    (out / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    print(f"gpu_check: {env['gpus'] or 'no GPU'}, torch {env['torch']}; results in {out}", flush=True)

    deadline = time.perf_counter() + args.budget
    summary: dict = {"dry": args.dry, "environment": env, "steps": {}}
    for name, command, timeout in steps(args.dry, out):
        if args.only and name not in args.only:
            continue
        left = deadline - time.perf_counter()
        if left < 20:
            summary["steps"][name] = {"command": command, "skipped": f"budget spent ({left:.0f} s left)"}
            continue
        print(f"[{name}] timeout {min(timeout, left):.0f} s: {' '.join(command)}", flush=True)
        record = run_step(name, command, min(timeout, left), out)
        summary["steps"][name] = record
        print(f"[{name}] rc {record['rc']}, {record['seconds']} s"
              + (", TIMED OUT" if record["timed_out"] else ""), flush=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")  # kept if a later step hangs

    speed = out / "train_speed.json"
    if speed.exists():
        summary["train_speed_goals"] = json.loads(speed.read_text()).get("goals")
    fid = out / "fid_speed.json"
    if fid.exists():
        figures = json.loads(fid.read_text())
        summary["fid_goals"] = [
            {"goal": "fal ≥ 3× pytorch-fid end to end", "value": round(figures["speedup"], 3),
             "met": figures["speedup"] >= 3.0},
            {"goal": "|Δ FID| < 1e-3", "value": figures["abs_difference"], "met": figures["abs_difference"] < 1e-3}]
    warnings_found = summary["steps"].get("pytest_gpu", {}).get("broken_capture_warnings", {})
    summary["passed"] = (all(r.get("rc") == 0 for r in summary["steps"].values())
                         and not any(warnings_found.values()))
    if args.dry:  # CPU-sized figures: the goals (set for a GPU) mean nothing here
        summary["train_speed_goals"], summary["fid_goals"] = None, None
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for goal in summary.get("train_speed_goals") or []:
        print(f"goal: {goal['goal']}: {goal['value']} → {'met' if goal['met'] else 'NOT met'}")
    for goal in summary.get("fid_goals") or []:
        print(f"goal: {goal['goal']}: {goal['value']} → {'met' if goal['met'] else 'NOT met'}")
    print(f"gpu_check: {'every step passed' if summary['passed'] else 'FAILED (see summary.json)'}; "
          f"broken-capture warnings: {warnings_found or 'not searched'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
