"""`fal refine`'s options, constants and the two records its parts pass around: what is refined (Source) and
what is gathered while refining (Collected)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from falcli.commands.sample import BATCH_SIZE
from falcli.core.feedback import Unrolled
from falcli.core.files import Files

GRID_ROWS = 8                           # samples shown in the grid picture
TILE = 64                               # voxel renders and their heat maps in the grid, pixels
FINAL_LATENTS = "latents-final.npy"     # dot-latent, and FAL's loop with output latent: the latents moved to
INVERT_LR = 0.05                        # Adam step size on z during inversion
INVERT_STREAM = 1_000_003               # inversion starts from latents of seed + this: a stream apart from
#                                         `fal sample --seed`, so inverting fal's own samples never starts at z
K_PAIRS = 256                           # DOT: random pairs the Lipschitz estimate takes its maximum over
K_STREAM = 2_000_003                    # DOT's pairs and DRS's draws: latent streams apart from --seed's samples
DRS_UNIFORMS = 3_000_017                # DRS: the acceptance uniforms' stream


@dataclass(frozen=True)
class RefineOptions:
    checkpoint: Path                    # a checkpoint file or its run folder (its newest checkpoint)
    input: Path | None = None           # samples: a `fal sample` folder, plain files, or (toy) a points .npy;
    #                                     None = the run's own `fal sample` folder of this checkpoint, else fresh draws
    out: Path | None = None             # None = a new numbered folder in the run: RUN/refine-1, refine-2, …
    steps: int | None = None            # fal: step 1 = the input sample, N - 1 passes of G follow; iterative
    #                                     methods: recorded points of the iteration; None = the recipe's / 2
    inputs: Path | None = None          # translation: the condition images of plain outputs, matched by name
    invert_iterations: int | None = None  # unconditional samples without latents: Adam iterations on z
    device: str = "auto"
    batch_size: int | None = None       # None = the samples' own (fal-samples.json) or BATCH_SIZE
    seed: int = 0                       # inversion's starting latents; fresh draws' latents
    method: str = "fal"                 # see falcli.methods.refinement.METHODS
    count: int | None = None            # fresh draws (and drs's accepted samples); None = evaluate.num_samples
    iterations: int | None = None       # dot-*, gradient: optimiser steps; None = the method's default
    lr: float | None = None             # dot-*: Adam's rate; gradient: the step size
    k_eff: float | None = None          # dot-*: the Lipschitz constant; None = estimated
    k_pairs: int = K_PAIRS              # dot-*: random pairs the estimate takes the maximum over
    drs_percentile: float = 80.0        # drs: γ = this percentile of F over the burn-in draws
    drs_burn_in: int = 10_000           # drs: draws that set l_M and γ (the paper's 10k)
    drs_max_draws: int | None = None    # drs: give up after this many draws; None = 100 × count


@dataclass
class Source:
    """What is refined: the samples (loaded a batch at a time) and what G reads to continue them."""

    names: list[str]
    files: Files
    load: Callable[[list[int]], torch.Tensor]       # rows → samples (b, C, *S) on the CPU
    load_conditions: Callable[[list[int]], torch.Tensor] | None = None  # translation: rows → inputs
    latents: torch.Tensor | None = None             # (N, Z), given by `fal sample`
    invert: bool = False                            # unconditional without latents: find them first
    batch_size: int = BATCH_SIZE
    kind: str = "files"
    looped_steps: int | None = None                 # `fal sample --steps T`: the samples are step T of the loop
    latents_step: int = 1                           # … and `latents` drew step latents_step (T with output latent)
    path: Path | None = None                        # the folder read (None: fresh draws)


@dataclass
class Collected:
    """Running results: D's score sums per step, every step's samples (for the task's metrics; the toy's
    step-t/points.npy) and the first GRID_ROWS samples of every step for the grid."""

    scores: list[float]
    logits: list[float] = field(default_factory=list)
    shown: list[Unrolled] = field(default_factory=list)
    conditions: list[torch.Tensor] = field(default_factory=list)
    reconstructions: list[torch.Tensor] = field(default_factory=list)
    samples: list[list[torch.Tensor]] = field(default_factory=list)  # step → batches, on the CPU
    all_conditions: list[torch.Tensor] = field(default_factory=list)  # conditional tasks: every batch's inputs

    def steps(self) -> list[torch.Tensor]:
        return [torch.cat(batches) for batches in self.samples]

    def shown_rows(self) -> int:
        return sum(len(u.samples[0]) for u in self.shown)

    def wants_rows(self) -> bool:
        return self.shown_rows() < GRID_ROWS

