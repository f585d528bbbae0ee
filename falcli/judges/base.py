"""Judges: small supervised networks that score generated samples — a voxel classifier (the paper's ShapeNet
metric), a segmenter (the FCN-score), a classifier whose features give an offline FID on built-in data.

A judge is trained from a recipe (`fal train recipes/voxel_classifier.yaml`) by one small supervised loop and
saved as `<run>/judge.pt`: state_dict + recipe, loadable with `weights_only=True`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from falcli.core import checkpoint
from falcli.config import recipe_to_yaml
from falcli.errors import FalError
from falcli.fileio import append_jsonl


@dataclass(frozen=True)
class JudgeTrainConfig:
    iterations: int = 2000              # optimizer updates
    batch_size: int = 64
    lr: float = 1e-3                    # Adam learning rate
    weight_decay: float = 0.0
    log_every: int = 100                # iterations between metrics.jsonl lines

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise FalError(f"train.{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0:
            raise FalError("train.lr must be > 0")


@dataclass(frozen=True)
class JudgeRecipe:
    task: str                           # key into falcli.judges.JUDGES
    name: str | None = None
    seed: int = 0
    data: Any = None                    # the judge's own DataConfig
    model: Any = None                   # the judge's own ModelConfig
    train: JudgeTrainConfig = field(default_factory=JudgeTrainConfig)


class Judge(Protocol):
    name: str
    DataConfig: type
    ModelConfig: type

    def make_net(self, recipe: JudgeRecipe) -> nn.Module:
        """inputs (B, C, *S) → logits (B, K) for classifiers or (B, K, *S) for segmenters."""

    def load_data(self, recipe: JudgeRecipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs float, targets int64) held in memory; targets 255 are ignored (segmentation)."""


def fit(judge: Judge, recipe: JudgeRecipe, out: Path, device: torch.device,
        on_progress: Callable[[int, int, dict | None], None] | None = None) -> Path:
    """Train a judge with cross-entropy, write `out/judge.pt`, `out/metrics.jsonl`; return the weights path."""
    torch.manual_seed(recipe.seed)
    net = judge.make_net(recipe).to(device)
    inputs, targets = judge.load_data(recipe, "train")
    cfg = recipe.train
    optimizer = torch.optim.Adam(net.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(recipe.seed)
    out.mkdir(parents=True, exist_ok=True)  # only once the data has loaded: a failed start leaves no folder
    (out / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    running = torch.zeros((), device=device)
    for iteration in range(cfg.iterations):
        index = torch.randint(len(inputs), (cfg.batch_size,), generator=generator)
        x, y = inputs[index].to(device), targets[index].to(device)
        loss = F.cross_entropy(net(x), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.detach()
        logged = None
        if (iteration + 1) % cfg.log_every == 0 or iteration + 1 == cfg.iterations:
            logged = {"loss": float(running) / cfg.log_every}
            running.zero_()
            append_jsonl(out / "metrics.jsonl", {"kind": "train", "iteration": iteration + 1, **logged})
        if on_progress is not None:
            on_progress(iteration + 1, cfg.iterations, logged)
    net.eval()
    val_inputs, val_targets = judge.load_data(recipe, "val")
    accuracy = accuracy_of(net, val_inputs, val_targets, device)
    append_jsonl(out / "metrics.jsonl", {"kind": "eval", "iteration": cfg.iterations, "val_accuracy": accuracy})
    path = out / "judge.pt"
    from falcli.config import recipe_to_dict
    checkpoint.atomic_save({"format": "fal-judge", "version": 1, "task": recipe.task,
                            "recipe": recipe_to_dict(recipe), "net": net.state_dict(),
                            "val_accuracy": accuracy}, path)
    return path


@torch.no_grad()
def predict(net: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Arg-max predictions, (N,) or (N, *S), on the CPU."""
    net.eval()
    return torch.cat([net(inputs[i:i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, len(inputs), batch_size)])


def accuracy_of(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, device: torch.device) -> float:
    """Share of correct predictions (pixels with target 255 are ignored)."""
    predictions = predict(net, inputs, device)
    valid = targets != 255
    return float((predictions[valid] == targets[valid]).float().mean())


def load(path: Path, device: torch.device, expect: str | None = None) -> tuple[nn.Module, JudgeRecipe, dict]:
    """Rebuild a judge network from `judge.pt`; FalError for a missing, corrupt or foreign file."""
    from falcli.resolve import recipe_from_dict
    from falcli.judges import JUDGES

    path = Path(path)
    if not path.is_file():
        raise FalError(f"{path}: no such judge file (train one with `fal train recipes/<judge>.yaml`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FalError(f"{path}: not a readable judge file ({type(error).__name__}); retrain it") from None
    if not isinstance(payload, dict) or payload.get("format") != "fal-judge":
        raise FalError(f"{path}: not a fal judge file")
    if expect is not None and payload["task"] != expect:
        raise FalError(f"{path}: a {payload['task']!r} judge, but a {expect!r} judge is needed")
    recipe = recipe_from_dict(payload["recipe"], source=str(path))
    net = JUDGES[recipe.task].make_net(recipe)
    net.load_state_dict(payload["net"])
    return net.to(device).eval(), recipe, payload
