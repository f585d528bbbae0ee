"""Training FLOPs of one iteration of a recipe, counted by `torch.utils.flop_counter`: `fal ablate`'s compute-matched
plain GAN is given the T-step model's training FLOPs (issue 18), not T times its iterations — a FAL step's cost
depends on its output (the latent step's extra passes are small; the toy measures 1.83× the plain GAN at T = 3, the
paper's direct step 3.4×).
"""
from __future__ import annotations

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from falcli.commands import train
from falcli.config import Recipe
from falcli.data.loader import batch_stream
from falcli.tasks import TASKS

COUNTED_BATCH = 2                       # FLOPs grow with the batch alike for both models: the ratio needs no more


def iteration_flops(recipe: Recipe, batch_size: int = COUNTED_BATCH) -> float | None:
    """FLOPs of one training iteration (G step and D step) on the CPU, with the recipe's seed, networks and a batch
    of `batch_size` from its training data; None where the counter cannot follow the step.

    R1 is left out: the counter cannot follow its double backward, and it costs the plain and the FAL model the
    same, so a ratio without it gives the plain GAN at least the FAL model's compute. The caller's RNG state is
    kept: planning an ablation draws no random number of the runs it plans.
    """
    counted = dataclasses.replace(recipe, loss=dataclasses.replace(recipe.loss, r1_weight=0.0),
                                  train=dataclasses.replace(recipe.train, batch_size=batch_size))
    task, device = TASKS[counted.task], torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        G, D = train.build_networks(task, counted, device)
        opt_G, opt_D = train.make_optimizers(G, D, counted.train, device, counted.feedback.lr)
        step = train.TrainStep(task, counted, G, D, G, D, opt_G, opt_D, False, device)
        raw = next(batch_stream(task.make_dataset(counted, "train"), batch_size, counted.seed))
        batch = task.make_batch(raw, counted, training=True)
        try:
            with FlopCounterMode(display=False) as counter:
                step(batch, 1)
        except RuntimeError:  # a double backward the counter cannot follow (WGAN-GP's penalty, EqGAN-SA's CAM)
            return None
    return float(counter.get_total_flops())
