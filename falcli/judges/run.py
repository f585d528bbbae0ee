"""`fal train` for judge recipes: one supervised fit into a run folder, resumable like a GAN run."""
from __future__ import annotations

from pathlib import Path

from falcli.core import checkpoint
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.judges import JUDGES
from falcli.judges.base import STATE, WEIGHTS, JudgeRecipe, fit


def run_judge(recipe: JudgeRecipe, out: Path | None, device: str = "auto", resume: str | None = None,
              on_progress=None) -> Path:
    """Train the judge named by the recipe into `out` (default runs/<name>) and return its weights path.

    resume: None for a fresh folder; "auto" to continue the interrupted training in `out`; or the folder (or
    its state.pt) of one to continue.
    """
    if resume not in (None, "auto"):
        given = Path(resume)
        run_dir = out or (given.parent if given.name == STATE else given)
    else:
        run_dir = out or Path("runs") / recipe.name
    if run_dir.exists() and not run_dir.is_dir():
        raise FalError(f"--out {run_dir}: a file, not a folder; choose a folder for the judge")
    checkpoint.lock_run(run_dir)  # a second writer is refused in one line naming the live one
    try:
        if (run_dir / WEIGHTS).is_file():
            raise FalError(f"{run_dir} already holds a trained judge ({WEIGHTS}); choose another --out")
        if resume is None and checkpoint.run_files(run_dir):
            hint = ("continue its training with --resume auto" if (run_dir / STATE).is_file()
                    else "it holds other files")
            raise FalError(f"{run_dir} already holds a judge run; {hint}, or choose another --out")
        if resume is not None and not (run_dir / STATE).is_file():
            raise FalError(f"--resume: no interrupted judge training in {run_dir} (no {STATE}); start without "
                           f"--resume")
        return fit(JUDGES[recipe.task], recipe, run_dir, pick_device(device), on_progress)
    except FalError:
        checkpoint.abandon_run(run_dir)
        raise
    finally:
        checkpoint.unlock_run(run_dir)
