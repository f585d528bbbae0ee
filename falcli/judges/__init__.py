"""Judges: supervised networks that score samples (see judges/base.py). Registered here by name, like TASKS.

To add one: write a class with `name`, `DataConfig`, `ModelConfig`, `make_net` and `load_data` (the Judge
protocol in judges/base.py), add an instance below and a recipe in recipes/.
"""
from __future__ import annotations

from falcli.judges.base import Judge, JudgeRecipe, JudgeTrainConfig
from falcli.judges.classifier import ImageClassifierJudge
from falcli.judges.segmenter import SegmenterJudge
from falcli.judges.voxel_classifier import VoxelClassifierJudge

JUDGES: dict[str, Judge] = {
    "shapes-classifier": ImageClassifierJudge(),
    "segmenter": SegmenterJudge(),
    "voxel-classifier": VoxelClassifierJudge(),
}

__all__ = ["JUDGES", "Judge", "JudgeRecipe", "JudgeTrainConfig"]
