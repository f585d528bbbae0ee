"""Tasks: what differs between toy points, images, image pairs and voxels.

To add a task called `foo`:
  1. copy tasks/toy.py (the smallest real task) to tasks/foo.py and rename its class;
  2. add an instance to TASKS in tasks/registry.py, and its recipe sections to tasks/sections.py;
  3. add recipes/<dataset>.yaml, and its tiny settings to TINY in tests/test_tasks.py;
  4. run pytest: tests/test_tasks.py runs its contract over every entry of TASKS.
No command should need to change: they ask the task (tasks/base.py), never its name. If one does, extend the
Task protocol, on purpose.
"""
from __future__ import annotations

__all__ = ["TASKS", "Batch", "Task"]


def __getattr__(name: str):
    # The registry imports every task's networks (torch); the recipe sections (tasks/sections.py) and the
    # task packages' config modules do not, and importing them runs this file first.
    if name == "TASKS":
        from falcli.tasks.registry import TASKS  # keeps --help fast

        return TASKS
    if name in ("Batch", "Task"):
        from falcli.tasks import base  # keeps --help fast

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
