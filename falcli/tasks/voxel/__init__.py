"""3D shapes (3D-GAN + FAL): task.py is the Task (with its sample pictures and export), nets.py G and D,
data.py the occupancy grids and their classes, evaluate.py the per-step classifier accuracy, coverage and MMD."""
from __future__ import annotations

from falcli.tasks.voxel.data import DataConfig, class_names, load_voxels, occupancy
from falcli.tasks.voxel.evaluate import evaluate_voxel
from falcli.tasks.voxel.nets import ModelConfig
from falcli.tasks.voxel.task import VoxelTask, export_samples

__all__ = ["DataConfig", "ModelConfig", "VoxelTask", "class_names", "evaluate_voxel", "export_samples",
           "load_voxels", "occupancy"]
