"""`fal ablate --configs plain_compute_matched`: the plain GAN given the T-step FAL model's training FLOPs
(falcli/commands/flops.py), with its schedule stretched alike."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from falcli.commands import ablate as ablation
from falcli.commands import flops


def test_compute_matched_plain_gets_the_fal_models_flops(toy_recipe):
    recipe = toy_recipe("feedback.steps=3", "train.lr_decay_start_fraction=null", "train.lr_decay_start=6")
    made = ablation.variant(recipe, "plain_compute_matched")
    plain = ablation.variant(recipe, "plain")
    ratio = flops.iteration_flops(recipe) / flops.iteration_flops(plain)
    assert made.feedback.steps == 1 and made.method.any is False
    assert ablation.compute_ratio(recipe) == pytest.approx(ratio)
    assert made.train.iterations == round(recipe.train.iterations * ratio)
    assert made.train.lr_decay_start == round(6 * ratio)
    assert made.train.checkpoint_every % made.train.log_every == 0
    assert plain.train == recipe.train  # the plain row keeps the FAL budget in iterations


def test_the_ratio_follows_what_a_feedback_step_costs(toy_recipe):
    """At the toy recipe's own sizes, the ratios docs/toy.md counts with a full batch (the counted batch does not
    change them): the paper's direct step 0.637 / 0.188 GFLOP = 3.4×, the latent step 0.344 / 0.188 = 1.83×; a
    T = 2 model costs less than a T = 3 one."""
    full = ["model.hidden=128", "model.latent_dim=16", "model.depth=3"]
    direct = ablation.compute_ratio(toy_recipe(*full, "feedback.output=direct", "feedback.discriminate=all",
                                               "feedback.later_steps_train=all"))
    latent = ablation.compute_ratio(toy_recipe(*full, "feedback.output=latent"))
    shorter = ablation.compute_ratio(toy_recipe(*full, "feedback.output=latent", "feedback.steps=2"))
    assert direct == pytest.approx(0.637 / 0.188, rel=0.03)
    assert latent == pytest.approx(0.344 / 0.188, rel=0.03)
    assert 1.0 < shorter < latent


def test_counting_draws_no_random_number(toy_recipe):
    recipe = toy_recipe("feedback.steps=3", "seed=11")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    flops.iteration_flops(recipe)
    assert torch.equal(torch.rand(3), expected)


def test_t_times_where_the_counter_cannot_follow_the_step(toy_recipe, monkeypatch):
    monkeypatch.setattr(flops, "iteration_flops", lambda recipe: None)
    monkeypatch.setattr(ablation, "_RATIOS", {})
    recipe = toy_recipe("feedback.steps=3", "seed=23")
    assert ablation.variant(recipe, "plain_compute_matched").train.iterations == 3 * recipe.train.iterations


def test_stretched_keeps_checkpoints_on_log_lines(toy_recipe):
    train = dataclasses.replace(toy_recipe().train, iterations=100, log_every=10, checkpoint_every=50,
                                sample_every=25)
    made = ablation.stretched(train, 1.83)
    assert (made.iterations, made.log_every, made.sample_every) == (183, 18, 46)
    assert made.checkpoint_every == 90 and made.checkpoint_every % made.log_every == 0


def test_the_three_baselines_are_the_default_and_the_successors_are_asked_for_by_name():
    assert ablation.parse_configs(None) == ["plain", "plain_compute_matched", "plain_dot", "fal"]
    assert ablation.parse_configs("fal,plain_compute_matched") == ["plain_compute_matched", "fal"]
    assert ablation.parse_configs("plain_dot") == ["plain", "plain_dot"]  # DOT refines the plain runs
    assert ablation.parse_configs("glead,plain") == ["plain", "glead"]
