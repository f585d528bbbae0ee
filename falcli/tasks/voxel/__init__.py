"""3D shapes (3D-GAN + FAL): task.py holds the Task, its networks, data, sample export and evaluation."""
from __future__ import annotations

from falcli.tasks.voxel.task import DataConfig, ModelConfig, VoxelTask, class_names, evaluate_voxel, \
    export_samples, load_voxels, occupancy

__all__ = ["DataConfig", "ModelConfig", "VoxelTask", "class_names", "evaluate_voxel", "export_samples",
           "load_voxels", "occupancy"]
