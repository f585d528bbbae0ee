"""Adversarial losses and penalties, as small functions of logits of any shape.

Every loss averages over all positions of D's map, so (B, 1), (B, 1, H, W) and (B, 1, D, H, W) logits are
treated alike: a patch or voxel discriminator is a set of local discriminators (pix2pix §3.2.2).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from falcli.core.runtime import rand_shard  # the same draws with one process or several

LossFn = Callable[[torch.Tensor], torch.Tensor]


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean()


# Vanilla GAN (Goodfellow et al. 2014, Eq. 1) with the non-saturating generator loss (§3).
def d_real_vanilla(logits): return _mean(F.softplus(-logits.float()))
def d_fake_vanilla(logits): return _mean(F.softplus(logits.float()))
def g_vanilla(logits): return _mean(F.softplus(-logits.float()))


# Least-squares GAN (Mao et al. 2017, Eq. 9 with a=0, b=c=1).
def d_real_lsgan(logits): return _mean((logits.float() - 1) ** 2)
def d_fake_lsgan(logits): return _mean(logits.float() ** 2)
def g_lsgan(logits): return _mean((logits.float() - 1) ** 2)


# Hinge loss (Lim & Ye 2017; Miyato et al. 2018, Eq. 16-17).
def d_real_hinge(logits): return _mean(F.relu(1 - logits.float()))
def d_fake_hinge(logits): return _mean(F.relu(1 + logits.float()))
def g_hinge(logits): return _mean(-logits.float())


# Wasserstein critic (Arjovsky et al. 2017); its gradient penalty is `gradient_penalty` below.
def d_real_wgan(logits): return _mean(-logits.float())
def d_fake_wgan(logits): return _mean(logits.float())
def g_wgan(logits): return _mean(-logits.float())


ADVERSARIAL: dict[str, tuple[LossFn, LossFn, LossFn]] = {  # name → (D on reals, D on fakes, G)
    "vanilla": (d_real_vanilla, d_fake_vanilla, g_vanilla),
    "lsgan": (d_real_lsgan, d_fake_lsgan, g_lsgan),
    "hinge": (d_real_hinge, d_fake_hinge, g_hinge),
    "wgan-gp": (d_real_wgan, d_fake_wgan, g_wgan),
}


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017, Eq. 3): E[(‖∇D(x̂)‖₂ − 1)²] on random interpolates x̂."""
    alpha = rand_shard(real.shape[0], *(1,) * (real.dim() - 1), device=real.device).to(real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits = D(mixed)  # under the caller's autocast, as D's other passes
    with _no_autocast(mixed):
        (grad,) = torch.autograd.grad(logits.float().sum(), mixed, create_graph=True)
        return ((grad.float().flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, Eq. 9): E[‖∇D(x)‖²] on real samples."""
    real = real.detach().requires_grad_(True)
    logits = D(real)
    with _no_autocast(real):
        (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
        return grad.float().flatten(1).pow(2).sum(dim=1).mean()


def _no_autocast(inputs: torch.Tensor):
    """The penalties' input gradient (a backward pass, differentiable for the penalty's own backward) and the
    penalty on it in fp32, with autocast off: the AMP docs advise against backward passes under autocast
    (their gradient-penalty example takes autograd.grad outside it). D's forward keeps the caller's autocast."""
    return torch.autocast(inputs.device.type, enabled=False)
