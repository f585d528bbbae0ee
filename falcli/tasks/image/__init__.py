"""Unconditional images (DCGAN + FAL): config.py the recipe's sections and checks (torch-free), data.py the images,
task.py the Task and its networks, evaluate.py the per-step metrics (FID in a judge's and Inception's space)."""
from __future__ import annotations

from falcli.tasks.image.config import DataConfig, ImageSource, ModelConfig, default_placement

__all__ = ["DataConfig", "ImageGenerator", "ImageSource", "ImageTask", "ModelConfig", "PatchDiscriminator",
           "default_placement", "load_images", "to_unit_range"]


def __getattr__(name: str):
    # data.py and task.py import torch; importing this package (the recipe sections, for --dry-run) must not.
    if name in ("load_images", "to_unit_range"):
        from falcli.tasks.image import data  # keeps --help fast

        return getattr(data, name)
    if name in ("ImageGenerator", "ImageTask", "PatchDiscriminator"):
        from falcli.tasks.image import task  # keeps --help fast

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
