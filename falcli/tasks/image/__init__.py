"""Unconditional images (DCGAN + FAL): config.py the recipe's sections and checks (torch-free), task.py the Task,
its networks and data."""
from __future__ import annotations

from falcli.tasks.image.config import DataConfig, ImageSource, ModelConfig, default_placement

__all__ = ["DataConfig", "ImageGenerator", "ImageSource", "ImageTask", "ModelConfig", "PatchDiscriminator",
           "default_placement", "load_images", "to_unit_range"]
_TASK_MODULE = ("ImageGenerator", "ImageTask", "PatchDiscriminator", "load_images", "to_unit_range")


def __getattr__(name: str):
    # task.py imports torch; importing this package (the recipe sections, for --dry-run) must not.
    if name in _TASK_MODULE:
        from falcli.tasks.image import task  # keeps --help fast

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
