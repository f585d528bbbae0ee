"""`fal ablate --configs plain_compute_matched`: the plain GAN given T times the iterations of the T-step FAL."""
from __future__ import annotations

from falcli.commands import ablate as ablation


def test_compute_matched_plain_gets_t_times_the_schedule(toy_recipe):
    recipe = toy_recipe("feedback.steps=3", "train.lr_decay_start_fraction=null", "train.lr_decay_start=6")
    made = ablation.variant(recipe, "plain_compute_matched")
    assert made.feedback.steps == 1 and made.method.any is False
    assert made.train.iterations == 3 * recipe.train.iterations
    assert made.train.lr_decay_start == 18
    assert made.train.checkpoint_every % made.train.log_every == 0
    plain = ablation.variant(recipe, "plain")
    assert plain.train == recipe.train  # the plain row keeps the FAL budget in iterations


def test_the_three_baselines_are_the_default_and_the_successors_are_asked_for_by_name():
    assert ablation.parse_configs(None) == ["plain", "plain_compute_matched", "plain_dot", "fal"]
    assert ablation.parse_configs("fal,plain_compute_matched") == ["plain_compute_matched", "fal"]
    assert ablation.parse_configs("plain_dot") == ["plain", "plain_dot"]  # DOT refines the plain runs
    assert ablation.parse_configs("glead,plain") == ["plain", "glead"]
