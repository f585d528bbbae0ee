"""`fal sample`: draw samples from a checkpoint and write them as ordinary files plus what continues them.

Unconditional tasks draw latents from `--seed` (all at once, so they do not depend on the batch size) and keep
them in latents.npy (under `feedback.output: latent`, whose steps move the latent, the latents of the written
step); translation translates the first `--count` validation inputs and keeps those in inputs/.
`fal refine` reads such a folder and feeds back from the written samples (falcli/commands/refine.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from falcli.console import error_console
from falcli.core import checkpoint
from falcli.core.feedback import unroll
from falcli.core.files import INPUTS, LATENTS, VOXELS, PointFiles, check_fresh, \
    fresh_folder, item_names, write_manifest
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.resolve import restore
from falcli.tasks import TASKS
from falcli.tasks.base import Batch, latent_width, latents_for  # noqa: F401  (refine imports them here)

BATCH_SIZE = 16                         # samples per forward pass (voxel G normalises by its batch: keep it fixed)
ProgressFn = Callable[[str, int, int], None]   # (description, done, total)
WarnFn = Callable[[str], None]


def _warn(message: str) -> None:
    error_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def open_checkpoint(path: Path, device: torch.device):
    """resolve.restore: the generator to sample from is G_ema when the run kept one."""
    path = Path(path)
    try:
        restored = restore(path, device)
    except FalError:
        judge = _judge_task(path)
        if judge:
            raise FalError(f"--ckpt {path}: a {judge} judge, not a generator; pass a checkpoint written by "
                           f"`fal train` on a GAN recipe") from None
        raise
    return restored.recipe, restored.sampler, restored.D, restored.payload


def _judge_task(path: Path) -> str | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: restore's own message already says so
        return None
    if isinstance(payload, dict) and payload.get("format") == "fal-judge":
        return str(payload.get("task"))
    return None


def require_steps(steps: int) -> None:
    """Checked before the checkpoint is read, so a typo fails at once."""
    if steps < 1:
        raise FalError(f"--steps must be >= 1 (got {steps}); step 1 is the first sample, each further step is "
                       f"one pass of G reading D's map")


def refuse_feedback_of_plain_gan(steps: int, trained: int) -> None:
    """A plain GAN's generator has no feedback input: it can only be unrolled for one step."""
    if steps > 1 and trained == 1:
        raise FalError("this checkpoint was trained without feedback (feedback.steps: 1): its generator cannot "
                       "read D's map; use --steps 1, or a checkpoint trained with feedback.steps >= 2")


def check_steps(steps: int, recipe, warn: WarnFn) -> None:
    """`--steps` must be >= 1; more than the model was trained with is allowed, with a warning."""
    require_steps(steps)
    trained = recipe.feedback.steps
    refuse_feedback_of_plain_gan(steps, trained)
    if steps > trained:
        warn(f"--steps {steps} is more than the {trained} steps the model was trained with; steps beyond "
             f"{trained} are extrapolation")


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise FalError(f"--batch-size must be >= 1 (got {batch_size})")


@dataclass(frozen=True)
class SampleOptions:
    checkpoint: Path
    out: Path
    count: int
    steps: int | None = None            # None = the recipe's sampling steps (feedback.test_steps or steps)
    seed: int = 0                       # latents' seed (unconditional tasks)
    device: str = "auto"
    batch_size: int = BATCH_SIZE
    voxels: str = "binvox"              # voxel checkpoints: one .binvox per sample, or "npy": one voxels.npy


@torch.no_grad()
def sample(options: SampleOptions, on_progress: ProgressFn | None = None, warn: WarnFn = _warn) -> dict:
    """Write `count` samples of the last step into options.out; returns the manifest (fal-samples.json)."""
    if options.count < 1:
        raise FalError(f"--count must be >= 1 (got {options.count})")
    check_batch_size(options.batch_size)
    if options.steps is not None:
        require_steps(options.steps)
    check_fresh(options.out)
    device = pick_device(options.device)
    recipe, G, D, payload = open_checkpoint(options.checkpoint, device)
    steps = options.steps if options.steps is not None else recipe.feedback.sampling_steps
    check_steps(steps, recipe, warn)
    task = TASKS[recipe.task]
    files, conditional = task.sample_files(recipe), task.conditional
    if options.voxels not in ("binvox", "npy"):
        raise FalError(f"--voxels {options.voxels!r}: choose binvox or npy")
    in_one_array = options.voxels == "npy"
    if in_one_array and task.array_export is None:
        raise FalError(f"--voxels npy is for voxel checkpoints; {options.checkpoint} is of task {recipe.task!r}")

    count, latents, dataset = options.count, None, None
    latents_step = 1  # the step whose pass the kept latents draw: G's first, as every step reads z …
    if conditional:
        dataset = task.make_dataset(recipe, "val")  # translation samples are of the validation inputs
        available = len(dataset)
        if count > available:
            warn(f"--count {count}: the validation split has {available} inputs; writing {available}")
            count = available
    else:
        latents = latents_for(recipe, count, options.seed)
    names = item_names(count)

    with fresh_folder(options.out) as tmp:
        kept: list[torch.Tensor] = []  # toy: all points go to one file at the end
        for start in range(0, count, options.batch_size):
            rows = list(range(start, min(count, start + options.batch_size)))
            if conditional:
                raw = {k: v.to(device) for k, v in dataset.__getitems__(rows).items()}
                batch = task.make_batch(raw, recipe, training=False)
            else:
                z = latents[rows].to(device)
                batch = Batch(real=z, gen_input=z)
            out = unroll(G, D, batch.gen_input, batch.condition, steps, recipe.feedback,
                         partial(task.discriminator_input, batch=batch))
            final = out.samples[-1]
            if out.latents is not None:  # … unless the steps move it (output latent): keep the written step's
                latents[rows], latents_step = out.latents[-1].cpu(), len(out.latents)
            if isinstance(files, PointFiles) or in_one_array:
                kept.append(final.cpu())
            else:
                files.write(final, [names[i] for i in rows], tmp)
            if conditional:
                task.condition_files(recipe).write(batch.condition, [names[i] for i in rows], tmp / INPUTS)
            if on_progress:
                on_progress("sample", rows[-1] + 1, count)
        if kept and in_one_array:  # (N, R, R, R) uint8 in fal's frame (z up), as export_samples(fmt="npy")
            np.save(tmp / VOXELS, task.array_export(torch.cat(kept)))
        elif kept:
            files.write(torch.cat(kept), names, tmp)
        if latents is not None:
            np.save(tmp / LATENTS, latents.numpy())
        manifest = {"task": recipe.task,
                    "checkpoint": str(checkpoint.resolve(options.checkpoint).resolve()),  # the file, not a run folder
                    "iteration": payload.get("iteration"), "steps": steps, "count": count,
                    "seed": None if conditional else options.seed, "batch_size": options.batch_size,
                    "latents": None if conditional else LATENTS, "inputs": INPUTS if conditional else None,
                    "latents_step": latents_step,  # what `fal refine` continues from
                    "voxels": VOXELS if in_one_array else None, "items": names}
        write_manifest(tmp, manifest)
    return manifest
