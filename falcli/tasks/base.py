"""What every task supplies to the one training loop, and the batch it hands back."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from falcli.core.feedback import Unrolled


@dataclass
class Batch:
    real: torch.Tensor                  # what D should call real, (B, C, *S)
    gen_input: torch.Tensor             # G's input: a latent (B, Z) or the condition image (B, C_in, H, W)
    condition: torch.Tensor | None = None  # shown to D next to every sample, and fed back (translation)
    extras: dict[str, Any] = field(default_factory=dict)  # task data: labels, names, depth in metres …


class Task(Protocol):
    name: str
    DataConfig: type                    # dataclass for the recipe's `data:` section
    ModelConfig: type                   # dataclass for the recipe's `model:` section
    dims: int                           # 0 = vectors (toy), 2 = images, 3 = voxels

    def validate(self, recipe) -> None:
        """Cross-section checks that need the whole recipe; raise FalError naming the key."""

    def make_dataset(self, recipe, split: str) -> Dataset:
        """Items are dicts of tensors; a `__getitems__` method makes batched fetching cheap."""

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        """G(gen_input, feedback | None) -> sample and D(discriminator_input) -> logits map (B, 1, *S_D)."""

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        """Turn a collated dict on the device into a Batch (augment, scale, draw latents from the global RNG)."""

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        """The same inputs every time (own RNG), for sample pictures and evaluation."""

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        """What D sees for a sample, e.g. the condition concatenated with it."""

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        """Task terms added to G's adversarial loss (already weighted), e.g. {"l1": 100·|y−x|}."""

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        """A picture of every step's samples (and D's maps) for `batch`."""

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int) -> list[dict[str, float]]:
        """The task's default metrics, one dict per feedback step t = 1..steps."""
