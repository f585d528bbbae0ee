"""Every shipped recipe loads, validates and names a registered task."""
from __future__ import annotations

from pathlib import Path

import pytest

from falcli.resolve import load_recipe
from falcli.judges import JUDGES
from falcli.tasks import TASKS

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert any(p.name == "toy.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.task in TASKS or recipe.task in JUDGES
    assert recipe.name == path.stem
