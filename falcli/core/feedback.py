"""The FAL loop: unroll generator ↔ discriminator for T steps (methods.md §0).

Step 1 is a plain forward pass. At every later step the generator also reads the feedback: D's spatial map of
its previous output (as logits, σ(D) or the error 1−σ(D)), the previous output itself and, for translation,
the condition. Used identically by training, `fal refine` and `fal evaluate`.

What is detached and why:
- `detach_map` (default on): D's map is an input signal. No gradient flows back through it, so G cannot
  "steer" its feedback by changing how D scores its previous output.
- `detach_previous` (default on): truncated backprop. Step t's loss trains step t's pass only, which keeps
  memory flat in T; off = full backprop through all T passes.

`feedback.output: residual` makes each later step a correction: x_t = a(u_(t-1) + Δ_t), where a is the
generator's output activation (tanh, sigmoid or none; `output_activation` on the generator), u its
pre-activation, and Δ_t = G_pre(z, feedback_t) − G_pre(z, no feedback) what the feedback changes about G's
output. The feedback modules start as the identity, so Δ_t starts at 0 and every step starts as a copy of the
previous one; the backbone's gradient from a later step is then only through that difference. `direct` (the
paper's) outputs x_t = a(G_pre(z, feedback_t)) itself. `latent` moves G's input instead of its output:
z_t = z_(t-1) + Δz_t, with Δz_t predicted from the feedback and z_(t-1) (a learned latent DOT), and
x_t = G(z_t) — every step a sample of G itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from falcli.config import LATENT_REFUSED, FeedbackConfig
from falcli.errors import FalError
from falcli.nn.dims import resize_to
from falcli.nn.spatial_transform import FeedbackModules

# A generator's `output_activation` names its last nonlinearity and how to undo it (for `fal refine`'s
# residual loop, which starts from a finished sample). The inverses clamp: a saturated pixel stays finite.
OUTPUT_ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "identity": (lambda u: u, lambda x: x),
    "tanh": (torch.tanh, lambda x: torch.atanh(x.clamp(-1 + 1e-4, 1 - 1e-4))),
    "sigmoid": (torch.sigmoid, lambda x: torch.logit(x, eps=1e-4)),
}

SIGNALS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logits": lambda logits: logits,
    "sigmoid": torch.sigmoid,
    "error": lambda logits: 1 - torch.sigmoid(logits),  # high where D believes the sample is fake
}


@dataclass
class Unrolled:
    samples: list[torch.Tensor]         # x_1 … x_T, each shaped like a real sample
    logits: list[torch.Tensor]          # D's map of each sample, (B, 1, *S_D); one per step
    latents: list[torch.Tensor] | None = None  # `output: latent`: z_1 … z_T, the latent that drew each step


def feedback_channels(cfg: FeedbackConfig, out_channels: int, cond_channels: int) -> int:
    """Channels of the raw feedback tensor: 1 (D's map) + previous output + condition, as configured."""
    return 1 + (out_channels if cfg.feed_previous else 0) + (cond_channels if cfg.feed_condition else 0)


def make_feedback_modules(cfg: FeedbackConfig, stage_channels: dict[int, int], out_channels: int,
                          cond_channels: int, dims: int, seed: int,
                          latent_dim: int | None = None) -> FeedbackModules | None:
    """Encoder + ASTs for the chosen stages; None when feedback is off (steps: 1 builds the plain network).
    With `feedback.output: latent`, encoder + a latent step instead of the ASTs: `latent_dim` is the size of
    the generator's latent code (None: the generator reads a condition, and has no latent to move).

    The modules draw their initial weights from their own RNG stream, so the backbone and D get exactly the
    same initial weights whether feedback is on or off: plain and FAL runs start from the same networks.
    """
    if cfg.steps == 1:
        return None
    if cfg.output == "latent" and latent_dim is None:
        raise FalError(LATENT_REFUSED)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919)
        return FeedbackModules(stage_channels, feedback_channels(cfg, out_channels, cond_channels), dims,
                               cfg.encoder_channels, cfg.hidden_channels, cfg.transform,
                               latent_dim if cfg.output == "latent" else None)


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
    latents = [] if cfg.output == "latent" else None
    if latents is not None:
        next_sample = _latent_steps(G, gen_input, cfg, initial, latents)
    else:
        next_sample = (_residual_steps if cfg.output == "residual" else _direct_steps)(G, gen_input, cfg, initial)
    samples, logits = [], []
    feedback = None
    for t in range(steps):
        sample = next_sample(t, feedback)
        score = D(discriminator_input(sample))
        samples.append(sample)
        logits.append(score)
        if t + 1 < steps:
            feedback = feedback_input(score, sample, condition, cfg)
    return Unrolled(samples, logits, latents)


def output_activation(G: nn.Module) -> str:
    """The generator's output nonlinearity (a key of OUTPUT_ACTIVATIONS), through a DDP wrapper too."""
    return getattr(G, "module", G).output_activation


StepFn = Callable[[int, "torch.Tensor | None"], torch.Tensor]  # (t, feedback for step t) -> x_t


def _direct_steps(G: nn.Module, gen_input: torch.Tensor, cfg: FeedbackConfig,
                  initial: torch.Tensor | None) -> StepFn:
    """The paper's step: x_t = G(z, feedback_t) (x_1 = `initial` when given)."""
    def step(t: int, feedback: torch.Tensor | None) -> torch.Tensor:
        return initial if t == 0 and initial is not None else G(gen_input, feedback)
    return step


def _residual_steps(G: nn.Module, gen_input: torch.Tensor, cfg: FeedbackConfig,
                    initial: torch.Tensor | None) -> StepFn:
    """`feedback.output: residual`: u_t = u_(t-1) + G_pre(z, feedback_t) − G_pre(z), x_t = a(u_t).

    G_pre(z) is step 1's own pass (one extra pass only when `initial` replaces step 1). u_(t-1) is detached
    with `detach_previous`, like the previous output fed back; the base pass is not, so a later step's loss
    reaches the backbone only through what the feedback changes.
    """
    activation, inverse = OUTPUT_ACTIVATIONS[output_activation(G)]
    base = G(gen_input, None, pre_activation=True)
    state: dict[str, torch.Tensor] = {}  # "pre": u of the last step

    def step(t: int, feedback: torch.Tensor | None) -> torch.Tensor:
        if t == 0:
            state["pre"] = inverse(initial) if initial is not None else base
            return initial if initial is not None else activation(state["pre"])
        previous = state["pre"].detach() if cfg.detach_previous else state["pre"]
        state["pre"] = previous + (G(gen_input, feedback, pre_activation=True) - base)
        return activation(state["pre"])
    return step


def _latent_steps(G: nn.Module, gen_input: torch.Tensor, cfg: FeedbackConfig, initial: torch.Tensor | None,
                  latents: list[torch.Tensor]) -> StepFn:
    """`feedback.output: latent`: z_t = z_(t-1) + Δz(feedback_t, z_(t-1)), x_t = G(z_t) without feedback; each
    z_t is appended to `latents` (z_1 = gen_input, also when `initial` stands in for G(z_1)).

    Two passes of G a step — one that moves the latent, one that draws it — both through G's forward, so a
    DDP wrapper sees them. z_(t-1) is detached with `detach_previous`, as the residual output's u_(t-1) is.
    """
    def step(t: int, feedback: torch.Tensor | None) -> torch.Tensor:
        if t == 0:
            latents.append(gen_input)
            return initial if initial is not None else G(gen_input, None)
        previous = latents[-1].detach() if cfg.detach_previous else latents[-1]
        latents.append(G(previous, feedback, move_latent=True))
        return G(latents[-1], None)
    return step


def proximity_loss(out: Unrolled, cfg: FeedbackConfig) -> torch.Tensor | None:
    """λ · Σ_(t≥2) mean over samples and locations of w · Σ_channels (x_t − x_(t-1))², x_(t-1) detached.

    w = 1 (`uniform`), or σ(D's map of x_(t-1)) resized to the sample (`spatial`, detached): a location D
    believed real is expensive to change, one it called fake is free. None when off or with one step.
    """
    if not cfg.proximity_weight or len(out.samples) < 2:
        return None
    total = None
    for t in range(1, len(out.samples)):
        change = (out.samples[t] - out.samples[t - 1].detach()).pow(2)
        per_location = change.sum(dim=1, keepdim=True)  # (B, 1, *S); (B, 1) for vectors
        if cfg.proximity == "spatial":
            per_location = per_location * proximity_weights(out.logits[t - 1], per_location)
        term = per_location.mean()
        total = term if total is None else total + term
    return cfg.proximity_weight * total


def diversity_loss(out: Unrolled, cfg: FeedbackConfig) -> torch.Tensor | None:
    """w · Σ_(t≥2) mean_i relu(d_(t-1)(i) − d_t(i)) / mean_i d_(t-1)(i), x_(t-1) detached.

    d_t(i) is the distance between samples i and i−1 of the batch at step t (the batch rolled by one: latents are
    random, so the pairs are too, and no random number is drawn). A step may move samples apart or keep them as
    they were, but pays, in proportion, for every pair it pulls together: the paper's later steps turn every
    latent into one template on voxels (docs/voxel.md). None when off, with one step or one sample.
    """
    if not cfg.diversity_weight or len(out.samples) < 2 or out.samples[0].shape[0] < 2:
        return None
    total = None
    before = _pair_distances(out.samples[0].detach())
    for t in range(1, len(out.samples)):
        after = _pair_distances(out.samples[t])
        term = torch.relu(before - after).mean() / before.mean().clamp_min(1e-8)
        total = term if total is None else total + term
        before = after.detach()
    return cfg.diversity_weight * total


def _pair_distances(x: torch.Tensor) -> torch.Tensor:
    # At two bit-identical samples the norm's gradient is 0, not NaN: such a pair is charged but not pushed apart.
    flat = x.flatten(1).float()
    return (flat - flat.roll(1, dims=0)).norm(dim=1)


def proximity_weights(logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """σ(D's map), detached, at the resolution of `like` (B, 1, *S): D's belief that each location is real."""
    return resize_to(torch.sigmoid(logits.detach().to(like.dtype)), tuple(like.shape[2:]))
