"""TASKS: every task by the name a recipe's `task:` gives (tasks/__init__.py explains how to add one)."""
from __future__ import annotations

from falcli.tasks.base import Task
from falcli.tasks.image.task import ImageTask
from falcli.tasks.toy import ToyTask
from falcli.tasks.translation.task import TranslationTask
from falcli.tasks.voxel.task import VoxelTask

TASKS: dict[str, Task] = {
    "toy": ToyTask(),
    "translation": TranslationTask(),
    "voxel": VoxelTask(),
    "image": ImageTask(),
}
