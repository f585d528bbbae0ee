"""`fal train` for judge recipes: one supervised fit into a fresh run folder."""
from __future__ import annotations

from pathlib import Path

from rich.errors import LiveError

from falcli.console import progress_bar
from falcli.errors import FalError
from falcli.judges import JUDGES
from falcli.judges.base import JudgeRecipe, fit
from falcli.core.runtime import pick_device


def run_judge(recipe: JudgeRecipe, out: Path | None, device: str = "auto", resume: str | None = None,
              on_progress=None) -> Path:
    """Train the judge named by the recipe into `out` (default runs/<name>) and return its weights path."""
    if resume is not None:
        raise FalError("--resume: judges train in one go (a few minutes); start a fresh run instead")
    run_dir = out or Path("runs") / recipe.name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FalError(f"{run_dir} already holds a run; choose another --out")
    if on_progress is not None:
        return fit(JUDGES[recipe.task], recipe, run_dir, pick_device(device), on_progress)
    # Trained on demand (inside `fal evaluate`, `fal ablate`): its own bar with ETA, under the caller's.
    with progress_bar(f"train judge {recipe.name}", recipe.train.iterations) as update:
        return fit(JUDGES[recipe.task], recipe, run_dir, pick_device(device), _tolerant(update))


def _tolerant(update):
    """The bar's update, turned off if the terminal cannot draw a second live display (older rich)."""
    state = {"on": True}

    def call(*args, **kwargs) -> None:
        if state["on"]:
            try:
                update(*args, **kwargs)
            except LiveError:
                state["on"] = False
    return call
