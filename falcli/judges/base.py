"""Judges: small supervised networks that score generated samples — a voxel classifier (the paper's ShapeNet
metric), a segmenter (the FCN-score), a classifier whose features give an offline FID on built-in data.

A judge is trained from a recipe by one small supervised loop (`fit`, resumable) and saved as `judge.pt`:
state_dict + recipe, loadable with `weights_only=True`. `fal train recipes/<judge>.yaml` trains one into a run
folder; `fal evaluate` trains the default ones on first use into the user cache (falcli/judges/provision.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from falcli.core import checkpoint
from falcli.config import assemble, check_keys, recipe_to_dict, recipe_to_yaml
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

    def data_folder(self, recipe: JudgeRecipe) -> Path | None:
        """The prepared folder the judge trains on, None for built-in data (which the recipe alone defines)."""


def judge_recipe_from_dict(judge: Judge, raw: dict, source: str = "recipe") -> JudgeRecipe:
    """`judge`'s typed recipe from a plain dict (a shipped YAML, a judge.pt's copy), as falcli/resolve.py
    builds it for `fal train`; here, so that judges need not import the resolver above them."""
    if not isinstance(raw, dict):
        raise FalError(f"{source}: a judge recipe must be a mapping with at least a `task:` key")
    check_keys(raw, source)
    return assemble(raw, JudgeRecipe, {"data": judge.DataConfig, "model": judge.ModelConfig}, source)


STATE = "state.pt"                     # a judge's training checkpoint, next to its metrics.jsonl until judge.pt is written
WEIGHTS = "judge.pt"


def fit(judge: Judge, recipe: JudgeRecipe, out: Path, device: torch.device,
        on_progress: Callable[[int, int, dict | None], None] | None = None) -> Path:
    """Train a judge with cross-entropy, write `out/judge.pt`, `out/metrics.jsonl`; return the weights path.

    Resumable like a GAN run: every `log_every` iterations the net, Adam and the batch generator are saved to
    `out/state.pt`, and a fit that finds one continues from it (metrics.jsonl cut back to it), so the judge
    equals one trained in one go. A judge with an `augment(recipe, x, y, generator)` (the voxel classifier's
    reject class) rewrites each batch from the same generator, so resuming replays it too.
    """
    torch.manual_seed(recipe.seed)
    net = judge.make_net(recipe).to(device)
    inputs, targets = judge.load_data(recipe, "train")
    cfg = recipe.train
    optimizer = torch.optim.Adam(net.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(recipe.seed)
    augment = getattr(judge, "augment", None)
    out.mkdir(parents=True, exist_ok=True)  # only once the data has loaded: a failed start leaves no folder
    start = _resume(out, recipe, net, optimizer, generator)
    if start == 0:
        (out / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    running = torch.zeros((), device=device)
    for iteration in range(start, cfg.iterations):
        index = torch.randint(len(inputs), (cfg.batch_size,), generator=generator)
        x, y = inputs[index], targets[index]
        if augment is not None:
            x, y = augment(recipe, x, y, generator)
        loss = F.cross_entropy(net(x.to(device)), y.to(device), ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.detach()
        logged = None
        if (iteration + 1) % cfg.log_every == 0 or iteration + 1 == cfg.iterations:
            logged = {"loss": float(running) / cfg.log_every}
            running.zero_()
            append_jsonl(out / "metrics.jsonl", {"kind": "train", "iteration": iteration + 1, **logged})
            if iteration + 1 < cfg.iterations:  # the last one is followed by judge.pt itself
                checkpoint.atomic_save({"iteration": iteration + 1, "recipe": recipe_to_dict(recipe),
                                        "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                        "generator": generator.get_state()}, out / STATE)
        if on_progress is not None:
            on_progress(iteration + 1, cfg.iterations, logged)
    net.eval()
    val_inputs, val_targets = judge.load_data(recipe, "val")
    accuracy = accuracy_of(net, val_inputs, val_targets, device)
    append_jsonl(out / "metrics.jsonl", {"kind": "eval", "iteration": cfg.iterations, "val_accuracy": accuracy})
    path = out / WEIGHTS
    checkpoint.atomic_save({"format": "fal-judge", "version": 1, "task": recipe.task,
                            "recipe": recipe_to_dict(recipe), "net": net.state_dict(),
                            "val_accuracy": accuracy}, path)
    (out / STATE).unlink(missing_ok=True)
    return path


def resume_point(out: Path) -> int:
    """The iteration a fit into `out` would continue from (0: a fresh start)."""
    path = Path(out) / STATE
    if not path.is_file():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])
    except Exception:
        return 0  # _resume says what is wrong with it


def _resume(out: Path, recipe: JudgeRecipe, net: nn.Module, optimizer, generator: torch.Generator) -> int:
    path = out / STATE
    checkpoint.discard_temporary(out)
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        stored = state["recipe"]
    except Exception as error:
        raise FalError(f"{path}: not a readable judge checkpoint ({type(error).__name__}); delete it to train "
                       f"the judge from the start") from None
    if stored != recipe_to_dict(recipe):
        raise FalError(f"{path}: the training of another judge recipe; delete {out} or choose another --out")
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    checkpoint.truncate_log(out / "metrics.jsonl", state["iteration"])
    return int(state["iteration"])


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


def load(path: Path, device: torch.device, judge: Judge) -> tuple[nn.Module, JudgeRecipe, dict]:
    """Rebuild `judge`'s network from a `judge.pt`; FalError for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FalError(f"{path}: no such judge file (`fal evaluate` trains the default judges on first use; "
                       f"`fal train recipes/<judge>.yaml` trains one yourself)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FalError(f"{path}: not a readable judge file ({type(error).__name__}); retrain it") from None
    if not isinstance(payload, dict) or payload.get("format") != "fal-judge":
        raise FalError(f"{path}: not a fal judge file")
    if payload["task"] != judge.name:
        raise FalError(f"{path}: a {payload['task']!r} judge, but a {judge.name!r} judge is needed")
    recipe = judge_recipe_from_dict(judge, payload["recipe"], source=str(path))
    net = judge.make_net(recipe)
    try:
        net.load_state_dict(payload["net"])
    except RuntimeError:  # e.g. a voxel classifier from before its reject class
        raise FalError(f"{path}: its layers do not match this fal's {judge.name} (trained by an older fal?); "
                       f"retrain it") from None
    return net.to(device).eval(), recipe, payload
