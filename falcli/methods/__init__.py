"""FAL's successors as training-time methods that combine with feedback (recipe section `method:`).

- EqGAN-SA (Wang et al., CVPR 2022; methods.md §2): random multi-level heatmaps drive spatial encoding layers
  in G, and G is also trained to align D's Grad-CAM attention with those heatmaps.
- GLeaD (Bai et al., CVPR 2023; methods.md §3): D gets a decoder whose output the frozen G turns back into the
  input image; the reconstruction loss trains D only.

The loop calls `generator_terms` in the G step and `discriminator_terms` in the D step; both return {} when
every method is off, so the plain GAN and FAL are untouched. A task that supports a method says so through
`supports_methods` (a set of names) and provides the networks' hooks the method needs.
"""
from __future__ import annotations

import torch

from falcli.errors import FalError
from falcli.methods import eqgan_sa, glead

METHOD_NAMES = ("eqgan_sa", "glead")


def check(task, recipe) -> None:
    """Refuse a method the task's networks do not implement, before anything is built or written."""
    supported = getattr(task, "supports_methods", frozenset())
    for name in METHOD_NAMES:
        if getattr(recipe.method, name) and name not in supported:
            raise FalError(f"method.{name}: not available for the {recipe.task!r} task "
                           f"(supported: {', '.join(sorted(supported)) or 'none'}); set it to false")


def prepare(recipe, device) -> list[str]:
    """Open what a method needs from disk before the run folder is written (GLeaD's LPIPS trunk), so that a
    wrong file fails the start, not the first step. Returns notes for the run's log (a fallback taken)."""
    if not recipe.method.glead:
        return []
    distance = glead.distance_for(recipe.method.glead_distance, device)
    if recipe.method.glead_distance == "lpips" and distance is glead.mse:
        return ["GLeaD's reconstruction distance is MSE: method.glead_distance is lpips, but the AlexNet trunk "
                "was not found when this run started"]
    return []


def generator_terms(recipe, G, D, unrolled, batch) -> dict[str, torch.Tensor]:
    """Weighted loss terms added to G's loss (G step; D frozen)."""
    if not recipe.method.eqgan_sa:
        return {}
    return eqgan_sa.generator_terms(recipe, G, D, unrolled, batch)


def discriminator_terms(recipe, G, D, real_input, fakes, batch) -> dict[str, torch.Tensor]:
    """Weighted loss terms added to D's loss (D step; G frozen)."""
    if not recipe.method.glead:
        return {}
    return glead.discriminator_terms(recipe, G, D, real_input, fakes, batch)
