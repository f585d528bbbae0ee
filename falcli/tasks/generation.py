"""The samples of every feedback step of a generator as uint8 images, for the image metrics (FID and its kin)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from falcli.core.batch import Batch
from falcli.core.feedback import unroll
from falcli.core.pictures import to_uint8
from falcli.errors import FalError
from falcli.tasks.base import latents_for


@torch.no_grad()
def generate_steps(task, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                   num_samples: int, batch_size: int = 100) -> tuple[list[torch.Tensor], list[float]]:
    """Samples of every feedback step as uint8 (N, 3, H, W) on the CPU, and D's mean logit per step.

    Inputs are the task's fixed batch, so plain and FAL runs of one seed are scored on the same latents.
    Quantised to uint8 exactly as saving PNGs would, so the FID equals that of the exported images.
    """
    if task.dims != 2:
        raise FalError(f"FID scores images; task {task.name!r} does not make 2D images")
    if num_samples < 1:
        raise FalError(f"--num-samples must be >= 1 (got {num_samples})")
    if task.conditional:  # conditioned on the val inputs
        inputs = task.fixed_batch(recipe, torch.device("cpu"), num_samples)
    else:  # the fixed batch's latents, without its real images: a checkpoint is scored without its data
        z = latents_for(recipe, num_samples, recipe.seed + 1)
        inputs = Batch(real=z, gen_input=z)
    images: list[list[torch.Tensor]] = [[] for _ in range(steps)]
    logit_sums = [0.0] * steps
    for start in range(0, num_samples, batch_size):
        part = slice(start, start + batch_size)
        chunk = Batch(real=inputs.real[part].to(device), gen_input=inputs.gen_input[part].to(device),
                      condition=None if inputs.condition is None else inputs.condition[part].to(device))
        out = unroll(G, D, chunk.gen_input, chunk.condition, steps, recipe.feedback,
                     partial(task.discriminator_input, batch=chunk))
        for t in range(steps):
            images[t].append(torch.from_numpy(to_uint8(out.samples[t])).permute(0, 3, 1, 2))
            logit_sums[t] += float(out.logits[t].float().mean(dim=tuple(range(1, out.logits[t].dim()))).sum())
    return [torch.cat(x) for x in images], [s / num_samples for s in logit_sums]
