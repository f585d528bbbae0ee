"""Test-time refinement with D: FAL's loop and the reference methods it is measured against (methods.md §6).

Pure functions of G, D, a scoring hook and tensors (no files, no recipes); `fal refine --method NAME` wires
them to checkpoints and sample folders (falcli/refine.py). D's *score* of a sample is its logit averaged over
D's spatial map: the one number every method below raises.

- `fal`: FAL's unrolled feedback loop (falcli/feedback.py); listed here so every method has one entry.
- `dot-latent`: Discriminator Optimal Transport in latent space (Tanaka, NeurIPS 2019). Per draw y, Adam on z
  minimising ‖z − y‖₂ − s(G(z)) / K_eff, output G(z*). K_eff estimates the Lipschitz constant of s∘G.
- `dot-sample`: the same in sample space, ‖x − x₀‖₂ − s(x) / K with K the Lipschitz constant of s.
- `gradient`: gradient ascent on s in sample space, x ← x + η ∇ₓ s(x) (collaborative sampling, Liu et al.
  AAAI 2020, without their discriminator shaping).
- `drs`: Discriminator Rejection Sampling (Azadi et al., ICLR 2019), without the paper's calibration
  fine-tuning of D: accept x with probability σ(F(x)), F = l − l_M − log(1 − exp(l − l_M − ε)) − γ.

Iterative methods return a Trace of a few evenly spaced iterations (the first = the start, the last = the
final iterate), so that `fal refine` writes them as steps like FAL's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from falcli.errors import FalError

ScoreMap = Callable[[torch.Tensor], torch.Tensor]   # samples (B, C, *S) → D's logit map (B, 1, *S_D)
Bounds = tuple[float, float] | None                  # the samples' valid range (images [-1, 1]); None = any

DRS_EPSILON = 1e-6                                   # the paper's ε: keeps log(1 − exp(·)) finite at l = l_M


@dataclass(frozen=True)
class Method:
    name: str
    space: str                          # "loop" (FAL), "latent", "sample" or "rejection"
    summary: str
    iterations: int | None = None       # default optimiser steps (iterative methods)
    lr: float | None = None             # default Adam rate (DOT) or step size (gradient)

    @property
    def needs_latent(self) -> bool:
        return self.space == "latent"

    @property
    def iterative(self) -> bool:
        return self.space in ("latent", "sample")


METHODS = {m.name: m for m in (
    Method("fal", "loop", "FAL's feedback loop: each step is one pass of G reading D's map"),
    Method("dot-latent", "latent", "Discriminator Optimal Transport in latent space (Tanaka 2019)", 30, 0.01),
    Method("dot-sample", "sample", "Discriminator Optimal Transport in sample space (Tanaka 2019)", 30, 0.01),
    Method("gradient", "sample", "gradient ascent on D's logit in sample space (Liu et al. 2020)", 20, 0.3),
    Method("drs", "rejection", "Discriminator Rejection Sampling (Azadi et al. 2019)"),
)}


def method(name: str) -> Method:
    if name not in METHODS:
        raise FalError(f"--method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


def score(logits: torch.Tensor) -> torch.Tensor:
    """D's score per sample: the logit averaged over its spatial map, (B, 1, *S_D) → (B,)."""
    return logits.float().flatten(1).mean(1)


@dataclass
class Trace:
    samples: list[torch.Tensor]         # the recorded iterates, first = the start
    logits: list[torch.Tensor]          # D's map of each
    iterations: list[int]               # which iteration each one is (0 = the start)
    latents: torch.Tensor | None = None  # dot-latent: the final z


def recorded(iterations: int, points: int) -> list[int]:
    """`points` iteration indices evenly spread over 0..iterations (0 and the last always among them)."""
    if points < 2:
        return [iterations]
    return sorted({math.floor(k * iterations / (points - 1) + 0.5) for k in range(points)})  # half up: distinct


def lipschitz(score_a: torch.Tensor, score_b: torch.Tensor, distance: torch.Tensor) -> float:
    """max |s_a − s_b| / d over the pairs with d > 0 (0.0 when no pair is apart)."""
    apart = distance > 0
    if not apart.any():
        return 0.0
    return float(((score_a - score_b).abs()[apart] / distance[apart]).max())


@torch.no_grad()
def estimate_k_latent(G: nn.Module, score_map: ScoreMap, z1: torch.Tensor, z2: torch.Tensor) -> float:
    """K_eff of s∘G (Tanaka 2019, §4): max over the pairs (z1[i], z2[i]) of |s(G(z1)) − s(G(z2))| / ‖z1 − z2‖."""
    s1, s2 = score(score_map(G(z1, None))), score(score_map(G(z2, None)))
    return lipschitz(s1, s2, (z1 - z2).flatten(1).norm(dim=1))


@torch.no_grad()
def estimate_k_sample(score_map: ScoreMap, x1: torch.Tensor, x2: torch.Tensor) -> float:
    """K of s in sample space: max over the pairs (x1[i], x2[i]) of |s(x1) − s(x2)| / ‖x1 − x2‖, both scored
    through the same hook (for translation: under x1's condition)."""
    return lipschitz(score(score_map(x1)), score(score_map(x2)), (x1 - x2).flatten(1).norm(dim=1))


def _gradient(value: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    # Only the optimised tensor's gradient: G's and D's parameters keep no .grad.
    grad, = torch.autograd.grad(value, [wrt])
    return grad


def dot_latent(G: nn.Module, score_map: ScoreMap, y: torch.Tensor, iterations: int, lr: float, k_eff: float,
               points: int, free: int | None = None) -> Trace:
    """Latent DOT: Adam on z from y minimising Σᵢ ‖zᵢ − yᵢ‖₂ − s(G(zᵢ)) / K_eff (each sample on its own: Adam is
    elementwise and the terms are per sample). Only the first `free` numbers move (EqGAN-SA's heatmap code
    stays as drawn). A larger K_eff weights the proximity term more: z* stays closer to y."""
    _check(iterations, lr)
    if not k_eff > 0:
        raise FalError(f"dot-latent: K_eff must be > 0 (got {k_eff}); D's score does not change over G's "
                       f"latents — an untrained D?")
    free = y.shape[1] if free is None else free
    anchor, fixed = y[:, :free].detach(), y[:, free:].detach()
    z = anchor.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    keep = recorded(iterations, points)
    trace = Trace([], [], [])

    def record(i: int) -> None:
        with torch.no_grad():
            x = G(torch.cat([z, fixed], dim=1), None)
            trace.samples.append(x), trace.logits.append(score_map(x)), trace.iterations.append(i)

    if 0 in keep:
        record(0)
    for i in range(1, iterations + 1):
        with torch.enable_grad():
            s = score(score_map(G(torch.cat([z, fixed], dim=1), None)))
            loss = ((z - anchor).norm(dim=1) - s / k_eff).sum()
            z.grad = _gradient(loss, z)
        optimizer.step()
        if i in keep:
            record(i)
    trace.latents = torch.cat([z.detach(), fixed], dim=1)
    return trace


def dot_sample(score_map: ScoreMap, x0: torch.Tensor, iterations: int, lr: float, k: float, points: int,
               bounds: Bounds = None) -> Trace:
    """Sample-space DOT: Adam on x from x₀ minimising Σᵢ ‖xᵢ − x₀ᵢ‖₂ − s(xᵢ) / K, kept within `bounds`."""
    _check(iterations, lr)
    if not k > 0:
        raise FalError(f"dot-sample: K must be > 0 (got {k}); D's score does not change between samples")
    anchor = x0.detach()
    x = anchor.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return ((x - anchor).flatten(1).norm(dim=1) - score(score_map(x)) / k).sum()

    return _iterate(score_map, x, iterations, points, bounds, lambda: optimizer.step(), loss_of)


def gradient_ascent(score_map: ScoreMap, x0: torch.Tensor, iterations: int, step: float, points: int,
                    bounds: Bounds = None) -> Trace:
    """x ← x + step · ∇ₓ s(x), `iterations` times, kept within `bounds` (each sample on its own)."""
    _check(iterations, step)
    x = x0.detach().clone().requires_grad_(True)

    def ascend() -> None:
        with torch.no_grad():
            x.sub_(step * x.grad)  # x.grad holds ∇(−Σ s)

    return _iterate(score_map, x, iterations, points, bounds, ascend, lambda x: -score(score_map(x)).sum())


def _iterate(score_map: ScoreMap, x: torch.Tensor, iterations: int, points: int, bounds: Bounds,
             update: Callable[[], None], loss_of: Callable[[torch.Tensor], torch.Tensor]) -> Trace:
    keep = recorded(iterations, points)
    trace = Trace([], [], [])

    def record(i: int) -> None:
        with torch.no_grad():
            trace.samples.append(x.detach().clone()), trace.logits.append(score_map(x)), trace.iterations.append(i)

    if 0 in keep:
        record(0)
    for i in range(1, iterations + 1):
        with torch.enable_grad():
            x.grad = _gradient(loss_of(x), x)
        update()
        if bounds is not None:
            with torch.no_grad():
                x.clamp_(*bounds)
        if i in keep:
            record(i)
    return trace


def _check(iterations: int, lr: float) -> None:
    if iterations < 1:
        raise FalError(f"--iterations must be >= 1 (got {iterations})")
    if not lr > 0:
        raise FalError(f"--lr must be > 0 (got {lr})")


# --- Discriminator Rejection Sampling ---

def drs_f(logits: torch.Tensor, l_max: float | torch.Tensor) -> torch.Tensor:
    """F(x) + γ = l − l_M − log(1 − exp(l − l_M − ε)) for D's logits l (one per sample), in float64."""
    d = logits.double() - l_max
    return d - torch.log1p(-torch.exp(d - DRS_EPSILON))


def drs_acceptance(logits: torch.Tensor, l_max: float | torch.Tensor, gamma: float) -> torch.Tensor:
    """The probability DRS accepts each sample: σ(F(x)), F = l − l_M − log(1 − exp(l − l_M − ε)) − γ."""
    return torch.sigmoid(drs_f(logits, l_max) - gamma)


class TooFewAccepted(FalError):
    def __init__(self, accepted: int, count: int, draws: int):
        self.accepted, self.count, self.draws = accepted, count, draws
        super().__init__(f"drs accepted {accepted} of the {count} samples asked for in {draws} draws "
                         f"(acceptance {accepted / max(draws, 1):.2%})")


@dataclass
class Rejection:
    first: torch.Tensor                 # the first `count` draws after burn-in, unfiltered (G as it is)
    first_logits: torch.Tensor
    accepted: torch.Tensor              # the first `count` accepted draws
    accepted_logits: torch.Tensor
    draws: int                          # draws after burn-in until `count` were accepted
    gamma: float
    l_max: float                        # after burn-in
    l_max_final: float                  # the running maximum at the end

    @property
    def acceptance(self) -> float:
        return len(self.accepted) / self.draws


@torch.no_grad()
def rejection_sample(draw: Callable[[int], torch.Tensor], score_map: ScoreMap, count: int, batch_size: int,
                     burn_in: int, percentile: float, max_draws: int, generator: torch.Generator,
                     on_draws: Callable[[int], None] | None = None) -> Rejection:
    """DRS (Azadi et al. 2019, Algorithm 1): l_M = the largest logit of `burn_in` draws, γ = the `percentile`-th
    percentile of F(x) + γ over those draws; then draw in batches, raise l_M whenever a larger logit appears,
    and accept each draw with probability σ(F(x)) (uniforms from `generator`) until `count` are accepted.
    `draw(n)` returns n fresh samples. TooFewAccepted after `max_draws` draws past the burn-in."""
    if not 0 <= percentile <= 100:
        raise FalError(f"--drs-percentile must be in [0, 100] (got {percentile})")
    if burn_in < 1:
        raise FalError(f"--drs-burn-in must be >= 1 (got {burn_in})")
    burn = []
    for start in range(0, burn_in, batch_size):
        burn.append(score(score_map(draw(min(batch_size, burn_in - start)))))
    burn_scores = torch.cat(burn)
    l_max = float(burn_scores.max())
    gamma = float(torch.quantile(drs_f(burn_scores, l_max), percentile / 100))
    running = l_max
    first, first_maps, kept, kept_maps = [], [], [], []
    drawn = accepted = 0
    while accepted < count:
        if drawn >= max_draws:
            raise TooFewAccepted(accepted, count, drawn)
        x = draw(min(batch_size, max_draws - drawn))
        maps = score_map(x)
        s = score(maps)
        running = max(running, float(s.max()))
        accept = torch.rand(len(x), generator=generator, dtype=torch.float64) < drs_acceptance(s.cpu(), running,
                                                                                                gamma)
        if drawn < count:
            take = count - drawn
            first.append(x[:take].cpu()), first_maps.append(maps[:take].cpu())
        chosen = accept.nonzero().flatten()[:count - accepted]
        # The acceptance rate counts the draws up to the last one needed, not the rest of its batch.
        drawn += int(chosen[-1]) + 1 if accepted + len(chosen) == count else len(x)
        chosen = chosen.to(x.device)
        kept.append(x[chosen].cpu()), kept_maps.append(maps[chosen].cpu())
        accepted += len(chosen)
        if on_draws:
            on_draws(accepted)
    return Rejection(torch.cat(first), torch.cat(first_maps), torch.cat(kept), torch.cat(kept_maps), drawn, gamma,
                     l_max, running)
