"""What every task supplies to the one training loop and to the commands, and the batch it hands back.

Commands ask the task, never its name: whether G reads a condition, which methods it supports, how its samples
are stored as files, how its checkpoints are scored. Unconditional tasks draw G's inputs with `latents_for`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from falcli.core.batch import Batch
from falcli.core.feedback import Unrolled
from falcli.methods.eqgan_sa import CODE_SIZE, fixed_code


@dataclass(frozen=True)
class EvaluatePaths:
    """What `fal evaluate` lets a user point a task's evaluation at; the defaults are what training uses.

    Judges are paths here: the command fills the empty ones from the task's `judge_needs`
    (falcli/judges/provision.py); a metric left without its judge is skipped with a note."""

    weights: Path | None = None         # LPIPS (translation) or Inception (image) weights; None = search
    seg_weights: Path | None = None     # translation's FCN-score: a segmenter judge.pt
    judge: Path | None = None           # voxel: a voxel-classifier judge.pt; image (shapes): a shapes-classifier one
    allow_unofficial_weights: bool = False  # accept weights with another hash (the value is labelled)
    note: Callable[[str], None] | None = None  # one line per skipped part and why; None = a warning
    class_means: str = "pix2pix"        # translation's FCN-score: pix2pix's get_scores, or "present" classes only


@dataclass(frozen=True)
class JudgeNeed:
    """A judge the task's evaluation uses when none is given: the shipped judge recipe to train it from, with
    the run's data set on it (`fal evaluate` trains it on first use, falcli/judges/provision.py)."""

    slot: str                           # the EvaluatePaths field its judge.pt fills: "judge" or "seg_weights"
    recipe: str                         # a shipped judge recipe, e.g. "voxel_classifier.yaml"
    overrides: dict[str, Any]           # dotted recipe keys → values, e.g. {"data.resolution": 32}


def latents_for(recipe, count: int, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """G's inputs (count, Z [+ code]) from their own generator, the same for any batch size and device: standard
    normal latents, followed under EqGAN-SA by a heatmap code (drawn after them, as the task's fixed batch does).
    `generator` (instead of a seed) continues a stream: `fal refine --method drs` draws batch after batch."""
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    z = torch.randn(count, recipe.model.latent_dim, generator=generator)
    if recipe.method.eqgan_sa:
        z = torch.cat([z, fixed_code(count, generator)], dim=1)
    return z


def latent_width(recipe) -> int:
    """Numbers per sample in G's input: Z, plus the heatmap code under EqGAN-SA."""
    if recipe.method.eqgan_sa:
        return recipe.model.latent_dim + CODE_SIZE
    return recipe.model.latent_dim


class Task(Protocol):
    name: str
    DataConfig: type                    # dataclass for the recipe's `data:` section
    ModelConfig: type                   # dataclass for the recipe's `model:` section
    dims: int                           # 0 = vectors (toy), 2 = images, 3 = voxels
    conditional: bool                   # G reads a condition from the data (translation), not a latent code
    supports_methods: frozenset[str]    # training-time methods (falcli/methods) its networks implement
    checkpoint_metrics: tuple[str, ...]  # `fal evaluate` metrics (besides fid, kid, all) that score its checkpoints
    samples_caption: str                # what its sample pictures show, for `fal report`
    array_export: Callable[[torch.Tensor], Any] | None  # samples → one array (`fal sample --voxels npy`), if any

    def validate(self, recipe) -> None:
        """Cross-section checks that need the whole recipe; raise FalError naming the key."""

    def make_dataset(self, recipe, split: str) -> Dataset:
        """Items are dicts of tensors; a `__getitems__` method makes batched fetching cheap."""

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        """G(gen_input, feedback | None) -> sample and D(discriminator_input) -> logits map (B, 1, *S_D)."""

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        """G and D as make_networks builds them, and the shape of one item of G's input, without reading data:
        falcli/nn/budget.py runs them on the meta device to estimate a training step's memory. FalError when
        the shapes depend on data that is not there."""

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
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        """The task's default metrics, one dict per feedback step t = 1..steps."""

    def judge_needs(self, recipe) -> tuple[JudgeNeed, ...]:
        """The judges `evaluate` uses for this recipe (none: an empty tuple); FalError where they cannot apply."""

    def evaluation_pool(self, recipe) -> int | None:
        """How many items evaluation can draw from (translation: the val pairs); None = unlimited (latents)."""

    def sample_files(self, recipe):
        """How its samples are stored as files (falcli/core/files.py: ImageFiles, VoxelFiles, PointFiles)."""

    def condition_files(self, recipe):
        """Conditional tasks: how G's condition images are stored (inputs/ of a samples folder); else None."""
