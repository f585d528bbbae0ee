"""Checkpoints: state_dicts, optimizer states, RNG states (as tensors) and the recipe, never pickled modules.

Loadable with `torch.load(weights_only=True)`; written atomically (temp file, fsync, rename), so a crash in
the middle of a save leaves the previous checkpoint intact and the new one absent.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from falcli.errors import FalError

FORMAT_VERSION = 1
_NAME = re.compile(r"^iter-(\d{7,})\.pt$")


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:07d}.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG the training step draws from, as tensors (so weights_only loading accepts them)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """torch.save to `path` via a temporary sibling: fsync the data, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `fal train`; FalError if it is missing, truncated or not ours."""
    path = Path(path)
    if not path.is_file():
        raise FalError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, wrong magic, foreign pickle: all mean "not a usable file"
        raise FalError(f"{path}: not a readable checkpoint ({type(error).__name__}); it may be truncated — "
                       f"use an earlier one from the same folder") from None
    if isinstance(payload, dict) and payload.get("format") == "fal-judge":
        raise FalError(f"{path}: a judge (a {payload.get('task')} that scores samples), not a GAN checkpoint; pass "
                       f"it as the metric's judge (--seg-weights, --judge, --feature-space judge:PATH)")
    if not isinstance(payload, dict) or payload.get("format") != "fal-checkpoint":
        raise FalError(f"{path}: not a fal checkpoint (written by another tool?)")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise FalError(f"{path}: written by a newer fal (format {payload['version']}); upgrade fal")
    return payload


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_valid(directory: Path, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; a corrupt newest one is reported and skipped, never deleted."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load(path)
        except FalError as error:
            warn(f"skipping {error}")
    return None


def prune(directory: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` checkpoints (None keeps all)."""
    if keep is None:
        return
    for path in list_checkpoints(directory)[:-keep]:
        path.unlink()


def resolve(path: Path) -> Path:
    """A checkpoint file as given, or the newest one of a run folder (what --ckpt accepts everywhere)."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise FalError(f"{path}: no checkpoint in {path / 'checkpoints'}; pass a .pt file or a run folder "
                           f"written by `fal train`")
        return found[-1]
    return path  # load() says what is wrong with a missing or unreadable file


def restore(path: Path, device: torch.device, expect_task: str | None = None):
    """Rebuild (recipe, G, D, G_ema | None, payload) from a checkpoint or a run folder through its task; eval
    mode."""
    from falcli.config import recipe_from_dict
    from falcli.tasks import TASKS

    path = resolve(path)
    payload = load(path)
    if expect_task is not None and payload["task"] != expect_task:
        raise FalError(f"{path}: a checkpoint of task {payload['task']!r}, expected {expect_task!r}")
    if payload["task"] not in TASKS:
        raise FalError(f"{path}: task {payload['task']!r} is unknown to this fal version")
    recipe = recipe_from_dict(payload["recipe"], source=str(path))
    G, D = TASKS[recipe.task].make_networks(recipe)
    G.load_state_dict(payload["G"])
    D.load_state_dict(payload["D"])
    G_ema = None
    if payload.get("G_ema") is not None:
        G_ema = TASKS[recipe.task].make_networks(recipe)[0]
        G_ema.load_state_dict(payload["G_ema"])
        G_ema = G_ema.to(device).eval()
    return recipe, G.to(device).eval(), D.to(device).eval(), G_ema, payload
