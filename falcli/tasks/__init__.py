"""Tasks: what differs between toy points, images, image pairs and voxels.

To add a task called `foo`:
  1. copy tasks/toy.py (the smallest real task) to tasks/foo.py and rename its class;
  2. add an instance to TASKS below;
  3. add recipes/<dataset>.yaml, and its tiny settings to TINY in tests/test_tasks.py;
  4. run pytest: tests/test_tasks.py runs its contract over every entry of TASKS.
No command should need to change: they ask the task (tasks/base.py), never its name. If one does, extend the
Task protocol, on purpose.
"""
from __future__ import annotations

from falcli.tasks.base import Batch, Task
from falcli.tasks.image import ImageTask
from falcli.tasks.toy import ToyTask
from falcli.tasks.translation import TranslationTask
from falcli.tasks.voxel import VoxelTask

TASKS: dict[str, Task] = {
    "toy": ToyTask(),
    "translation": TranslationTask(),
    "voxel": VoxelTask(),
    "image": ImageTask(),
}

__all__ = ["TASKS", "Batch", "Task"]
