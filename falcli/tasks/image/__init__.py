"""Unconditional images (DCGAN + FAL): task.py holds the Task, its networks and data."""
from __future__ import annotations

from falcli.tasks.image.task import DataConfig, ImageGenerator, ImageSource, ImageTask, ModelConfig, \
    PatchDiscriminator, default_placement, load_images, to_unit_range

__all__ = ["DataConfig", "ImageGenerator", "ImageSource", "ImageTask", "ModelConfig", "PatchDiscriminator",
           "default_placement", "load_images", "to_unit_range"]
