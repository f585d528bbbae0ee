"""torchrun on the CPU (gloo, 2 processes): same results as one process with the same global batch, and a
checkpoint written by 2 processes resumes in 1.

The comparison is at float level (atol 1e-5 on weights that differ by ~6e-8), so the run must have no
parameter whose gradient is analytically zero: Adam divides such a gradient's rounding noise by the square
root of its own (noise-sized) second moment and steps ~0.1·lr in the noise's direction, so 1 and 2 processes,
which round their gradient sums differently, part by ~1e-4 in that element within one update. A WGAN critic
has such parameters: a last-hidden-layer unit whose LeakyReLU is in one regime for every sample gets a bias
gradient w·s·(mean over fakes of 1 − mean over reals of 1) = 0, and the penalties do not depend on it. With
loss.adversarial=wgan-gp this test failed at iteration 8 — with or without a resume in between (measured: a
2-process run of 12 iterations also differs from 1 process by 1.4e-4 in one bias of D's net.2 at iteration 8,
while the 2-process checkpoint at 6 resumed in 1 process matches the uninterrupted 2-process run to 6e-8).
The toy recipe's own loss (vanilla, R1 on every iteration) has no such cancellation; the gradient penalty's
sharded draws are checked without processes in tests/test_losses.py.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from falcli.core import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512", "train.batch_size=64",
        "train.log_every=3", "train.checkpoint_every=6", "train.sample_every=0", "loss.adversarial=vanilla",
        # the run is extended 6 → 12 by the resume: a constant rate, and all steps training (DDP-compatible)
        "train.lr_decay_start_fraction=null", "feedback.later_steps_train=all"]


def fal_train(out: Path, processes: int, *extra: str, resume: bool = False) -> None:
    sets = [arg for item in TINY + list(extra) for arg in ("--set", item)]
    fal = [sys.executable, "-m", "falcli", "train", str(ROOT / "recipes/toy.yaml"), "--device", "cpu",
           "--out", str(out), *sets, *(["--resume", "auto"] if resume else [])]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                   "--standalone", "--no-python", *fal]
    else:
        command = fal
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def weights(run_dir: Path, iteration: int) -> dict:
    return checkpoint.load(run_dir / "checkpoints" / checkpoint.checkpoint_name(iteration))


def assert_close(a: dict, b: dict) -> None:
    for net in ("G", "D"):
        for name, tensor in a[net].items():
            assert torch.allclose(tensor, b[net][name], atol=1e-5), f"{net}.{name}"


# The toy's two corrective outputs: two passes of G through DDP per later step (latent), or one with the ASTs.
@pytest.mark.parametrize("output", ["latent", "residual"])
def test_two_processes_match_one_and_resume_in_one(tmp_path, output):
    fal_train(tmp_path / "one", 1, "train.iterations=12", f"feedback.output={output}")
    fal_train(tmp_path / "two", 2, "train.iterations=6", f"feedback.output={output}")
    assert_close(weights(tmp_path / "one", 6), weights(tmp_path / "two", 6))
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # only the main process writes

    fal_train(tmp_path / "two", 1, "train.iterations=12", f"feedback.output={output}", resume=True)  # in one
    assert_close(weights(tmp_path / "one", 12), weights(tmp_path / "two", 12))
