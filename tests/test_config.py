"""Recipes: strict keys with suggestions, safe type coercion, dotted overrides, cross-field checks."""
from __future__ import annotations

import pytest
import yaml

from falcli.config import recipe_to_dict, recipe_to_yaml

from falcli.resolve import load_recipe, recipe_from_dict
from falcli.errors import FalError


def write(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_recipe_round_trips_through_yaml(tmp_path, toy_recipe):
    recipe = toy_recipe()
    again = recipe_from_dict(yaml.safe_load(recipe_to_yaml(recipe)))
    assert again == recipe


def test_unknown_key_suggests_close_match(tmp_path):
    path = write(tmp_path, "task: toy\ntrain:\n  lr_generatr: 1.0e-3\n")
    with pytest.raises(FalError, match=r"train.lr_generatr: unknown key \(did you mean train.lr_generator\?\)"):
        load_recipe(path)


def test_unknown_top_level_key_is_rejected(tmp_path):
    with pytest.raises(FalError, match="feedbak: unknown key .*feedback"):
        load_recipe(write(tmp_path, "task: toy\nfeedbak: {steps: 2}\n"))


def test_unknown_task_lists_valid_ones(tmp_path):
    with pytest.raises(FalError, match="unknown task 'pix3pix'; valid tasks: .*toy"):
        load_recipe(write(tmp_path, "task: pix3pix\n"))


def test_exponent_without_dot_becomes_float(tmp_path):
    recipe = load_recipe(write(tmp_path, "task: toy\ntrain:\n  lr_generator: 2e-4\n"))
    assert recipe.train.lr_generator == pytest.approx(2e-4)
    assert isinstance(recipe.train.lr_generator, float)


def test_string_for_bool_is_rejected(tmp_path):
    with pytest.raises(FalError, match="feedback.detach_map: expected true or false"):
        load_recipe(write(tmp_path, "task: toy\nfeedback:\n  detach_map: 'on'\n"))


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(FalError, match="train.iterations: expected an integer"):
        load_recipe(write(tmp_path, "task: toy\ntrain:\n  iterations: lots\n"))


def test_choice_outside_literal_is_rejected(tmp_path):
    with pytest.raises(FalError, match="feedback.signal: 'probability' is not one of logits, sigmoid, error"):
        load_recipe(write(tmp_path, "task: toy\nfeedback:\n  signal: probability\n"))


def test_dotted_overrides_use_yaml_syntax(tmp_path):
    recipe = load_recipe(write(tmp_path, "task: toy\n"),
                         ["train.iterations=7", "feedback.step_weights=[1, 2, 3]", "train.betas=[0.0, 0.99]"])
    assert recipe.train.iterations == 7
    assert recipe.feedback.step_weights == (1.0, 2.0, 3.0)
    assert recipe.train.betas == (0.0, 0.99)


def test_override_of_unknown_key_fails(tmp_path):
    with pytest.raises(FalError, match="train.iteration: unknown key .*train.iterations"):
        load_recipe(write(tmp_path, "task: toy\n"), ["train.iteration=5"])


def test_override_without_equals_fails(tmp_path):
    with pytest.raises(FalError, match="expected key=value"):
        load_recipe(write(tmp_path, "task: toy\n"), ["train.iterations"])


@pytest.mark.parametrize("override, message", [
    ("feedback.steps=0", "feedback.steps must be >= 1"),
    ("train.iterations=-5", "train.iterations must be >= 1"),
    ("feedback.step_weights=[1, 1]", "feedback.step_weights needs 3 entries"),
    ("train.ema_decay=1.5", r"train.ema_decay must be in \[0, 1\)"),
    ("loss.l1_weight=100", "loss.l1_weight: the toy task has no targets"),
])
def test_invalid_values_name_the_key(tmp_path, override, message):
    with pytest.raises(FalError, match=message):
        load_recipe(write(tmp_path, "task: toy\n"), [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FalError, match="no such recipe file"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(FalError, match="not valid YAML at line"):
        load_recipe(write(tmp_path, "task: toy\ntrain: [unclosed\n"))


def test_name_defaults_to_file_stem(tmp_path):
    assert load_recipe(write(tmp_path, "task: toy\n")).name == "r"


def test_resolved_dict_is_plain(toy_recipe):
    plain = recipe_to_dict(toy_recipe())
    assert plain["train"]["betas"] == [0.0, 0.99]  # the tuple of recipes/toy.yaml, as a list
    yaml.safe_dump(plain)  # no Python objects left
