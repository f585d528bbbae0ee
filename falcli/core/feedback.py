"""The FAL loop: unroll generator ↔ discriminator for T steps (methods.md §0).

Step 1 is a plain forward pass. At every later step the generator also reads the feedback: D's spatial map of
its previous output (as logits, σ(D) or the error 1−σ(D)), the previous output itself and, for translation,
the condition. Used identically by training, `fal refine` and `fal evaluate`.

What is detached and why:
- `detach_map` (default on): D's map is an input signal. No gradient flows back through it, so G cannot
  "steer" its feedback by changing how D scores its previous output.
- `detach_previous` (default on): truncated backprop. Step t's loss trains step t's pass only, which keeps
  memory flat in T; off = full backprop through all T passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from falcli.config import FeedbackConfig
from falcli.nn.dims import resize_to
from falcli.nn.spatial_transform import FeedbackModules

SIGNALS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logits": lambda logits: logits,
    "sigmoid": torch.sigmoid,
    "error": lambda logits: 1 - torch.sigmoid(logits),  # high where D believes the sample is fake
}


@dataclass
class Unrolled:
    samples: list[torch.Tensor]         # x_1 … x_T, each shaped like a real sample
    logits: list[torch.Tensor]          # D's map of each sample, (B, 1, *S_D); one per step


def feedback_channels(cfg: FeedbackConfig, out_channels: int, cond_channels: int) -> int:
    """Channels of the raw feedback tensor: 1 (D's map) + previous output + condition, as configured."""
    return 1 + (out_channels if cfg.feed_previous else 0) + (cond_channels if cfg.feed_condition else 0)


def make_feedback_modules(cfg: FeedbackConfig, stage_channels: dict[int, int], out_channels: int,
                          cond_channels: int, dims: int, seed: int) -> FeedbackModules | None:
    """Encoder + ASTs for the chosen stages; None when feedback is off (steps: 1 builds the plain network).

    The modules draw their initial weights from their own RNG stream, so the backbone and D get exactly the
    same initial weights whether feedback is on or off: plain and FAL runs start from the same networks.
    """
    if cfg.steps == 1:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919)
        return FeedbackModules(stage_channels, feedback_channels(cfg, out_channels, cond_channels), dims,
                               cfg.encoder_channels, cfg.hidden_channels, cfg.transform)


def feedback_input(logits: torch.Tensor, previous: torch.Tensor, condition: torch.Tensor | None,
                   cfg: FeedbackConfig) -> torch.Tensor:
    """Raw feedback for the next step, at the sample's resolution: (B, 1 [+ C_out] [+ C_cond], *S)."""
    signal = SIGNALS[cfg.signal](logits)
    if cfg.detach_map:
        signal = signal.detach()
    parts = [resize_to(signal.to(previous.dtype), tuple(previous.shape[2:]))]
    if cfg.feed_previous:
        parts.append(previous.detach() if cfg.detach_previous else previous)
    if cfg.feed_condition and condition is not None:
        parts.append(condition.to(previous.dtype))
    return torch.cat(parts, dim=1)


def unroll(G: nn.Module, D: nn.Module, gen_input: torch.Tensor, condition: torch.Tensor | None, steps: int,
           cfg: FeedbackConfig, discriminator_input: Callable[[torch.Tensor], torch.Tensor],
           initial: torch.Tensor | None = None) -> Unrolled:
    """Run G for `steps` passes, each after the first reading D's map of the previous output.

    D scores every step once; those maps serve both as the next step's feedback and as the G loss's logits,
    so a training step costs T generator and T discriminator passes. `initial`, when given, stands in for
    step 1's output: `fal refine` starts the loop from a sample that already exists.
    """
    samples, logits = [], []
    feedback = None
    for t in range(steps):
        sample = initial if t == 0 and initial is not None else G(gen_input, feedback)
        score = D(discriminator_input(sample))
        samples.append(sample)
        logits.append(score)
        if t + 1 < steps:
            feedback = feedback_input(score, sample, condition, cfg)
    return Unrolled(samples, logits)
