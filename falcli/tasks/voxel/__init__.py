"""3D shapes (3D-GAN + FAL): config.py the recipe's sections and checks (torch-free), task.py the Task (with its
sample pictures and export), nets.py G and D, data.py the occupancy grids and their classes, evaluate.py the
per-step classifier accuracy, coverage and MMD."""
from __future__ import annotations

from falcli.tasks.voxel.config import DataConfig, ModelConfig

__all__ = ["DataConfig", "ModelConfig", "VoxelTask", "class_names", "evaluate_voxel", "export_samples",
           "load_voxels", "occupancy"]


def __getattr__(name: str):
    # The modules below import torch; importing this package (the recipe sections, for --dry-run) must not.
    if name in ("class_names", "load_voxels", "occupancy"):
        from falcli.tasks.voxel import data  # keeps --help fast

        return getattr(data, name)
    if name == "evaluate_voxel":
        from falcli.tasks.voxel.evaluate import evaluate_voxel  # keeps --help fast

        return evaluate_voxel
    if name in ("VoxelTask", "export_samples"):
        from falcli.tasks.voxel import task  # keeps --help fast

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
