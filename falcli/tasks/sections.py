"""Each task's recipe sections without torch: its `data:` and `model:` dataclasses and its checks across
sections, so that a recipe resolves (`fal train --dry-run`, `fal recipes`) without loading any network code.

SECTIONS[name] has DataConfig, ModelConfig and validate(recipe), the same objects the task in TASKS
(tasks/registry.py) holds; tests/test_tasks.py checks that. The toy task's sections still live beside its
networks in tasks/toy.py (which imports torch), so toy is resolved through TASKS.
"""
from __future__ import annotations

from types import ModuleType

from falcli.tasks.image import config as image
from falcli.tasks.translation import config as translation
from falcli.tasks.voxel import config as voxel

SECTIONS: dict[str, ModuleType] = {"translation": translation, "voxel": voxel, "image": image}
TASK_NAMES = ("toy", "translation", "voxel", "image")  # the keys of TASKS, known without importing it
