"""The adaptive spatial transform: shapes for points, images and voxels; identity at init; gradients."""
from __future__ import annotations

import pytest
import torch

from falcli.nn.dims import resize_to
from falcli.nn.spatial_transform import AdaptiveSpatialTransform, FeedbackModules

SHAPES = {0: (), 2: (8, 8), 3: (4, 4, 4)}


@pytest.mark.parametrize("dims", [0, 2, 3])
def test_ast_keeps_feature_shape_and_resizes_feedback(dims):
    ast = AdaptiveSpatialTransform(channels=6, feedback_channels=3, dims=dims)
    h = torch.randn(2, 6, *SHAPES[dims])
    small = tuple(s // 2 for s in SHAPES[dims])  # the feedback may come at another resolution
    assert ast(h, torch.randn(2, 3, *small)).shape == h.shape


@pytest.mark.parametrize("dims", [0, 2, 3])
def test_sft_ast_is_identity_at_init(dims):
    ast = AdaptiveSpatialTransform(channels=5, feedback_channels=3, dims=dims, transform="sft")
    h = torch.randn(2, 5, *SHAPES[dims])
    assert torch.equal(ast(h, torch.randn(2, 3, *SHAPES[dims])), h)


def test_spade_ast_normalises_features():
    ast = AdaptiveSpatialTransform(channels=4, feedback_channels=2, dims=2, transform="spade")
    h = 3 + 5 * torch.randn(2, 4, 8, 8)
    out = ast(h, torch.randn(2, 2, 8, 8))
    assert out.mean(dim=(2, 3)).abs().max() < 1e-5  # zero γ, β: just the instance norm


@pytest.mark.parametrize("dims", [0, 2, 3])
def test_gradients_reach_scale_and_shift_heads(dims):
    ast = AdaptiveSpatialTransform(channels=4, feedback_channels=2, dims=dims)
    h = torch.randn(2, 4, *SHAPES[dims])
    ast(h, torch.randn(2, 2, *SHAPES[dims])).square().sum().backward()
    assert ast.gamma.weight.grad.abs().sum() > 0
    assert ast.beta.weight.grad.abs().sum() > 0


def test_ast_modulates_per_location():
    """Unlike AdaIN/conditional BN, the scale map varies across positions when the feedback does."""
    ast = AdaptiveSpatialTransform(channels=3, feedback_channels=1, dims=2)
    torch.nn.init.normal_(ast.gamma.weight)
    feedback = torch.zeros(1, 1, 8, 8)
    feedback[..., :4] = 1.0
    h = torch.ones(1, 3, 8, 8)
    out = ast(h, feedback)
    assert not torch.allclose(out[..., 0], out[..., 7])


def test_feedback_modules_leave_other_stages_alone():
    modules = FeedbackModules({1: 4}, in_channels=2, dims=2, encoder_channels=8, hidden_channels=8,
                              transform="sft")
    h = torch.randn(2, 4, 8, 8)
    encoded = modules.encode(torch.randn(2, 2, 16, 16))
    assert torch.equal(modules.apply(0, h, encoded), h)
    assert torch.equal(modules.apply(1, h, None), h)


def test_resize_is_noop_for_vectors_and_same_size():
    x = torch.randn(2, 3)
    assert resize_to(x, ()) is x
    y = torch.randn(1, 1, 4, 4)
    assert resize_to(y, (4, 4)) is y
    assert resize_to(y, (8, 8)).shape == (1, 1, 8, 8)
