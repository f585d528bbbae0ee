"""2D toy: mixtures of Gaussians (ring of 8, grid of 25), the paper's demonstration that samples D believes
are fake get fixed by feedback. The smallest complete task, and the template for new ones."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from falcli.errors import FalError
from falcli.core.feedback import Unrolled, make_feedback_modules, unroll
from falcli.metrics.toy import reference_balls, toy_metrics
from falcli.core.runtime import randn_shard
from falcli.core.files import PointFiles
from falcli.tasks.base import Batch, EvaluatePaths, JudgeNeed, latent_width


@dataclass(frozen=True)
class DataConfig:
    mixture: Literal["ring", "grid"] = "ring"  # 8 modes on a circle of radius 2, or 25 on a 5×5 grid (spacing 2)
    std: float | None = None            # mode standard deviation; None = 0.02 (ring) or 0.05 (grid)
    points: int = 50_000                # size of the training set drawn from the mixture

    def __post_init__(self) -> None:
        if self.std is not None and self.std <= 0:
            raise FalError(f"data.std must be > 0 (got {self.std})")
        if self.points < 1:
            raise FalError(f"data.points must be >= 1 (got {self.points})")

    @property
    def sigma(self) -> float:
        return self.std if self.std is not None else {"ring": 0.02, "grid": 0.05}[self.mixture]


MAX_DEPTH = 64


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 16                # size of z
    hidden: int = 128                   # width of every hidden layer of G and D
    depth: int = 3                      # hidden layers in G and in D

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.hidden, self.depth) < 1:
            raise FalError("model.latent_dim, model.hidden and model.depth must be >= 1")
        if self.depth > MAX_DEPTH:  # an MLP this deep would not train (and takes minutes just to build)
            raise FalError(f"model.depth {self.depth} is above {MAX_DEPTH}; the paper's toy MLPs have 3 hidden layers")


def mixture_centers(data: DataConfig) -> torch.Tensor:
    """Mode centres, (K, 2)."""
    if data.mixture == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([2 * angles.cos(), 2 * angles.sin()], dim=1).float()
    coords = torch.arange(-4.0, 5.0, 2.0)
    return torch.cartesian_prod(coords, coords)


def sample_mixture(data: DataConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    centers = mixture_centers(data)
    index = torch.randint(len(centers), (n,), generator=generator)
    return centers[index] + data.sigma * torch.randn(n, 2, generator=generator)


class PointsDataset(torch.utils.data.Dataset):
    """A fixed draw from the mixture; `__getitems__` lets the DataLoader fetch a whole batch in one index."""

    def __init__(self, points: torch.Tensor):
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"real": self.points[index]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {"real": self.points[torch.as_tensor(indices)]}


class PointGenerator(nn.Module):
    """MLP z → (x, y); with feedback, an AST modulates every hidden layer's pre-activation features."""

    output_activation = "identity"      # points are unbounded: the residual loop adds in point space

    def __init__(self, model: ModelConfig, feedback: nn.Module | None):
        super().__init__()
        widths = [model.latent_dim] + [model.hidden] * model.depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(model.hidden, 2)
        self.feedback = feedback

    def forward(self, z: torch.Tensor, feedback: torch.Tensor | None = None,
                pre_activation: bool = False, move_latent: bool = False) -> torch.Tensor:
        if move_latent:  # feedback.output: latent (falcli/core/feedback.py): this pass moves z, it draws nothing
            return self.feedback.move_latent(z, feedback)
        encoded = self.feedback.encode(feedback) if feedback is not None and self.feedback else None
        h = z
        for stage, layer in enumerate(self.hidden):
            h = layer(h)
            if self.feedback is not None:
                h = self.feedback.apply(stage, h, encoded)
            h = torch.relu(h)
        return self.out(h)  # (B, 2)


class PointDiscriminator(nn.Module):
    def __init__(self, model: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for _ in range(model.depth):
            layers += [nn.Linear(width, model.hidden), nn.LeakyReLU(0.2)]
            width = model.hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2) -> (B, 1)
        return self.net(x)


class ToyTask:
    name = "toy"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 0
    conditional = False
    supports_methods: frozenset[str] = frozenset()
    checkpoint_metrics = ("toy",)
    samples_caption = "One panel per feedback step: real points in grey, the step's samples in blue."
    array_export = None                 # the points already are one array (points.npy)

    def validate(self, recipe) -> None:
        if recipe.loss.l1_weight:
            raise FalError("loss.l1_weight: the toy task has no targets to compare with; remove the key")
        placement = recipe.feedback.placement
        if placement is not None and any(not 0 <= s < recipe.model.depth for s in placement):
            raise FalError(f"feedback.placement: toy stages are 0..{recipe.model.depth - 1} (hidden layers)")

    def make_dataset(self, recipe, split: str) -> torch.utils.data.Dataset:
        generator = torch.Generator().manual_seed(recipe.seed * 3 + {"train": 0, "val": 1}.get(split, 2))
        return PointsDataset(sample_mixture(recipe.data, recipe.data.points, generator))

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(recipe.seed)
        placement = recipe.feedback.placement
        stages = range(recipe.model.depth) if placement is None else placement
        feedback = make_feedback_modules(recipe.feedback, {s: recipe.model.hidden for s in stages},
                                         out_channels=2, cond_channels=0, dims=0, seed=recipe.seed,
                                         latent_dim=recipe.model.latent_dim)
        return PointGenerator(recipe.model, feedback), PointDiscriminator(recipe.model)

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        return (*self.make_networks(recipe), (latent_width(recipe),))

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        real = raw["real"]
        z = randn_shard(len(real), recipe.model.latent_dim, device=real.device)
        return Batch(real=real, gen_input=z)

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        generator = torch.Generator().manual_seed(recipe.seed + 1)
        z = torch.randn(count, recipe.model.latent_dim, generator=generator)
        real = sample_mixture(recipe.data, count, generator)
        return Batch(real=real.to(device), gen_input=z.to(device))

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sample

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        return {}

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        from falcli.core.plots import toy_steps_figure  # keeps --help fast (and every run: matplotlib loads here)

        toy_steps_figure(batch.real, unrolled, path)

    def evaluation_pool(self, recipe) -> int | None:
        return None

    def sample_files(self, recipe) -> PointFiles:
        return PointFiles()

    def condition_files(self, recipe) -> None:
        return None

    def judge_needs(self, recipe) -> tuple[JudgeNeed, ...]:
        return ()  # points are scored against the mixture itself

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        batch = self.fixed_batch(recipe, device, num_samples)
        with torch.no_grad():
            result = unroll(G, D, batch.gen_input, None, steps, recipe.feedback,
                            lambda x: self.discriminator_input(x, batch))
        centers, balls = mixture_centers(recipe.data), reference_balls(batch.real)
        return [toy_metrics(x, centers, recipe.data.sigma, batch.real, logits, balls)
                for x, logits in zip(result.samples, result.logits)]
