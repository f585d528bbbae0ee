"""Adversarial losses: closed-form values and shape-independence; penalties."""
from __future__ import annotations

import math

import pytest
import torch

from falcli.core import runtime
from falcli.core.losses import ADVERSARIAL, gradient_penalty, r1_penalty


def test_vanilla_closed_form():
    d_real, d_fake, g = ADVERSARIAL["vanilla"]
    zero = torch.zeros(4, 1)
    assert d_real(zero).item() == pytest.approx(math.log(2))
    assert d_fake(zero).item() == pytest.approx(math.log(2))
    assert g(torch.full((4, 1), 2.0)).item() == pytest.approx(math.log1p(math.exp(-2)))


def test_lsgan_and_hinge_closed_form():
    d_real, d_fake, g = ADVERSARIAL["lsgan"]
    x = torch.tensor([[0.0], [2.0]])
    assert d_real(x).item() == pytest.approx(1.0)   # ((0-1)² + (2-1)²) / 2
    assert d_fake(x).item() == pytest.approx(2.0)   # (0 + 4) / 2
    d_real, d_fake, g = ADVERSARIAL["hinge"]
    assert d_real(x).item() == pytest.approx(0.5)   # relu(1) + relu(-1)
    assert d_fake(x).item() == pytest.approx(2.0)   # relu(1) + relu(3)
    assert g(x).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_losses_do_not_depend_on_map_shape(name):
    values = torch.randn(2, 1, 4, 4, 4)
    for loss in ADVERSARIAL[name]:
        voxel = loss(values)
        image = loss(values.reshape(2, 1, 8, 8))
        vector = loss(values.reshape(128, 1))
        assert voxel.item() == pytest.approx(image.item()) == pytest.approx(vector.item())


def test_gradient_penalty_is_zero_for_unit_slope_critic():
    critic = lambda x: x.flatten(1) @ torch.tensor([[0.6], [0.8]])  # ‖∇‖ = 1 everywhere
    assert gradient_penalty(critic, torch.randn(8, 2), torch.randn(8, 2)).item() == pytest.approx(0.0, abs=1e-10)


def test_r1_penalty_closed_form_and_differentiable():
    weight = torch.tensor([[3.0], [4.0]], requires_grad=True)
    penalty = r1_penalty(lambda x: x @ weight, torch.randn(5, 2))
    assert penalty.item() == pytest.approx(25.0)
    penalty.backward()
    assert torch.allclose(weight.grad, 2 * weight.detach())


def test_gradient_penalty_of_two_process_shards_averages_to_the_one_process_penalty(monkeypatch):
    """Each process draws the whole batch's interpolation weights and keeps its rows (runtime.rand_shard), so
    the mean over processes of their penalties is the one-process penalty on the global batch."""
    critic = lambda x: torch.tanh(x @ torch.tensor([[1.0], [-2.0]])) ** 2  # noqa: E731  (gradient norm varies)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    torch.manual_seed(1)
    whole = gradient_penalty(critic, real, fake)
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(runtime, "_CURRENT", runtime.Processes(rank=rank, world=2))
        torch.manual_seed(1)
        shards.append(gradient_penalty(critic, real[4 * rank:4 * rank + 4], fake[4 * rank:4 * rank + 4]))
    assert (shards[0] + shards[1]).item() / 2 == pytest.approx(whole.item(), rel=1e-6)
    assert shards[0].item() != pytest.approx(shards[1].item())  # the halves really differ
