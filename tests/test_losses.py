"""Adversarial losses: closed-form values and shape-independence; penalties."""
from __future__ import annotations

import math

import pytest
import torch

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
