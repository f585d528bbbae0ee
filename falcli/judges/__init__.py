"""Judges: supervised networks that score samples (see judges/base.py). Registered here by name, like TASKS.

To add one: write a class with `name`, `DataConfig`, `ModelConfig`, `make_net`, `load_data` and `data_folder`
(the Judge protocol in judges/base.py), add its instance below and a recipe in recipes/. Commands get judges
through judges/provision.py (trained on first use into the user cache); metrics and tasks receive their paths.
"""
from __future__ import annotations

from falcli.judges.base import Judge, JudgeRecipe, JudgeTrainConfig
from falcli.judges import classifier, segmenter, voxel_classifier

JUDGES: dict[str, Judge] = {judge.name: judge for judge in (classifier.JUDGE, segmenter.JUDGE, voxel_classifier.JUDGE)}

__all__ = ["JUDGES", "Judge", "JudgeRecipe", "JudgeTrainConfig"]
