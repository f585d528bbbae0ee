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


@pytest.mark.parametrize("path", [p for p in RECIPES if load_recipe(p).task in TASKS], ids=lambda p: p.name)
def test_the_plain_gan_of_every_recipe_samples_one_step(path):
    """`--set feedback.steps=1` is every recipe's plain GAN; a FAL recipe's test_steps must not make it run
    feedback passes it has no modules for (streets.yaml samples FAL at t = 2)."""
    plain = load_recipe(path, ["feedback.steps=1"])
    assert plain.feedback.sampling_steps == 1
    fal = load_recipe(path)
    assert fal.feedback.sampling_steps == (fal.feedback.test_steps or fal.feedback.steps)


def test_streets_samples_fal_at_its_measured_step():
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "streets.yaml")
    assert (recipe.feedback.steps, recipe.feedback.sampling_steps, recipe.feedback.output) == (3, 2, "residual")
