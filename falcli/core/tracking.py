"""Optional TensorBoard events next to metrics.jsonl (`fal train --tensorboard`).

metrics.jsonl stays the record; the event files in RUN/tensorboard/ are a live view of the same numbers:
every logged interval's scalars (losses per feedback step, learning rates, timing), the sample grid of every
step with D's maps, and the per-step metrics `fal evaluate --ckpt` computes for the run.

Resuming opens a new event file in the same folder whose first event is TensorBoard's "purge" marker just after
the checkpoint's iteration: readers (TensorBoard, EventAccumulator) then drop the steps the interrupted run
logged after its last checkpoint, so no step appears twice and none that the checkpoint holds is lost.
"""
from __future__ import annotations

from pathlib import Path

from falcli.errors import FalError

INSTALL_HINT = 'pip install "falcli[tensorboard]"'
FOLDER = "tensorboard"                  # inside the run folder


def check_available() -> None:
    """Fail in one line, before the run starts, when the extra is not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise FalError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT} "
                       f"(or run without --tensorboard; metrics.jsonl is written either way)") from None


class Tracker:
    """A SummaryWriter for one run folder; `purge_step`: the first step a resume logs again (events of that step
    and later from earlier files are dropped by TensorBoard's readers)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        check_available()
        # Deferred: torch.utils.tensorboard imports tensorboard and protobuf, which `fal --help` does not need.
        from torch.utils.tensorboard import SummaryWriter

        try:
            self.writer = SummaryWriter(log_dir=str(Path(run_dir) / FOLDER), purge_step=purge_step or None)
        except OSError as error:
            raise FalError(f"{Path(run_dir) / FOLDER}: cannot write TensorBoard events ({error.strerror}); "
                           f"choose a writable --out") from None

    def scalars(self, iteration: int, values: dict[str, float], prefix: str = "") -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(prefix + key, value, global_step=iteration)
        self.writer.flush()

    def picture(self, iteration: int, tag: str, png: Path) -> None:
        """A PNG the run already wrote (the task's sample grid with D's maps), as a TensorBoard image."""
        import numpy as np
        from PIL import Image

        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, pixels, global_step=iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def has_events(run_dir: Path) -> bool:
    return (Path(run_dir) / FOLDER).is_dir()


def log_evaluation(run_dir: Path, iteration: int, metric: str, rows: list[dict]) -> bool:
    """Per-step metrics of `fal evaluate --ckpt` into the run's events (only when the run keeps events and the
    package is present): `eval/<metric>/<name>/step<t>` at the checkpoint's iteration. Returns whether written."""
    if not has_events(run_dir):
        return False
    try:
        check_available()
    except FalError:
        return False
    tracker = Tracker(run_dir)
    try:
        for row in rows:
            step = row.get("step")
            values = {f"{name}/step{step}": value for name, value in row.items() if name != "step"}
            tracker.scalars(iteration, values, prefix=f"eval/{metric}/")
    finally:
        tracker.close()
    return True
