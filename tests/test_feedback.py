"""The unrolled loop: steps, detaching, and that feedback actually reaches the generator."""
from __future__ import annotations

import pytest
import torch

from falcli.core.feedback import feedback_input, unroll
from falcli.tasks import TASKS


def networks(toy_recipe, *overrides):
    """The toy with the paper's direct output, whose feedback enters G through the ASTs (the toy recipe's latent
    step has its own tests: tests/test_feedback_latent.py)."""
    recipe = toy_recipe("feedback.output=direct", *overrides)
    G, D = TASKS["toy"].make_networks(recipe)
    return recipe, G, D


def test_unroll_returns_one_sample_and_map_per_step(toy_recipe):
    recipe, G, D = networks(toy_recipe, "feedback.steps=4")
    out = unroll(G, D, torch.randn(5, 4), None, 4, recipe.feedback, lambda x: x)
    assert len(out.samples) == len(out.logits) == 4
    assert all(s.shape == (5, 2) for s in out.samples)
    assert all(m.shape == (5, 1) for m in out.logits)


def test_steps_one_builds_no_feedback_modules(toy_recipe):
    _, G, _ = networks(toy_recipe, "feedback.steps=1")
    assert G.feedback is None


def test_feedback_changes_later_steps_once_ast_is_trained(toy_recipe):
    recipe, G, D = networks(toy_recipe)
    z = torch.randn(5, 4)
    same = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x)
    assert torch.equal(same.samples[0], same.samples[2])  # zero-initialised heads: identity at start
    for ast in G.feedback.transforms.values():
        torch.nn.init.normal_(ast.gamma.weight, std=0.5)
    moved = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x)
    assert torch.equal(moved.samples[0], same.samples[0])  # step 1 never sees feedback
    assert not torch.allclose(moved.samples[1], moved.samples[0])


def test_gradients_flow_through_the_feedback_path(toy_recipe):
    recipe, G, D = networks(toy_recipe)
    out = unroll(G, D, torch.randn(8, 4), None, 3, recipe.feedback, lambda x: x)
    out.logits[-1].sum().backward()
    encoder_grad = sum(p.grad.abs().sum() for p in G.feedback.encoder.parameters())
    head_grad = sum(ast.gamma.weight.grad.abs().sum() for ast in G.feedback.transforms.values())
    assert encoder_grad == 0  # zero heads block the encoder's gradient at init …
    assert head_grad > 0      # … but the heads themselves learn, which opens the path


@pytest.mark.parametrize("detach_previous, expect_grad", [(True, False), (False, True)])
def test_detach_previous_truncates_backprop(toy_recipe, detach_previous, expect_grad):
    recipe, G, D = networks(toy_recipe, f"feedback.detach_previous={str(detach_previous).lower()}")
    for ast in G.feedback.transforms.values():
        torch.nn.init.normal_(ast.gamma.weight, std=0.5)
    z = torch.randn(4, 4)
    first = G(z)
    first.retain_grad()
    logits = D(first)
    second = G(z, feedback_input(logits, first, None, recipe.feedback))
    second.sum().backward()
    assert (first.grad is not None and first.grad.abs().sum() > 0) == expect_grad


def test_signal_choices():
    from falcli.config import FeedbackConfig

    logits = torch.tensor([[2.0]])
    previous = torch.zeros(1, 2)
    values = {s: feedback_input(logits, previous, None, FeedbackConfig(signal=s))[0, 0].item()
              for s in ("logits", "sigmoid", "error")}
    assert values["logits"] == 2.0
    assert values["sigmoid"] == pytest.approx(torch.sigmoid(logits).item())
    assert values["error"] == pytest.approx(1 - values["sigmoid"])


def test_feedback_input_channels_follow_options():
    from falcli.config import FeedbackConfig

    logits = torch.randn(2, 1, 4, 4)
    previous, condition = torch.randn(2, 3, 16, 16), torch.randn(2, 5, 16, 16)
    full = feedback_input(logits, previous, condition, FeedbackConfig())
    assert full.shape == (2, 1 + 3 + 5, 16, 16)
    bare = feedback_input(logits, previous, condition, FeedbackConfig(feed_previous=False, feed_condition=False))
    assert bare.shape == (2, 1, 16, 16)


def test_unroll_can_start_from_an_existing_sample(toy_recipe):
    recipe, G, D = networks(toy_recipe)
    for ast in G.feedback.transforms.values():
        torch.nn.init.normal_(ast.gamma.weight, std=0.5)
    z, given = torch.randn(5, 4), torch.randn(5, 2)
    out = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x, initial=given)
    assert out.samples[0] is given
    assert torch.equal(out.logits[0], D(given))
    fresh = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x)
    assert not torch.allclose(out.samples[1], fresh.samples[1])  # step 2 fixes *the given* sample
