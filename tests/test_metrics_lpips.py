"""LPIPS built offline: random trunk for behaviour, a local torchvision-format file for the weight mapping."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from falcli.errors import FalError
from falcli.metrics.lpips import load_lpips
from falcli.metrics.weights import sha256_of


@pytest.fixture(scope="module")
def random_lpips():
    return load_lpips(random_trunk=True)


def test_identical_zero_different_positive(random_lpips):
    distance, info = random_lpips
    a = torch.rand(2, 3, 64, 64) * 2 - 1
    b = torch.rand(2, 3, 64, 64) * 2 - 1
    same, diff = distance(a, a), distance(a, b)
    assert same.shape == diff.shape == (2,)
    assert torch.allclose(same, torch.zeros(2)) and (diff > 0).all()
    assert info["official"] is False


def test_grey_inputs_repeat_to_rgb(random_lpips):
    distance, _ = random_lpips
    a, b = torch.rand(2, 1, 64, 64) * 2 - 1, torch.rand(2, 1, 64, 64) * 2 - 1
    assert torch.allclose(distance(a, b), distance(a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)))
    with pytest.raises(FalError, match="one shape"):
        distance(a, b[:, :, :32])


def test_trunk_loaded_from_torchvision_state_dict(tmp_path: Path):
    # A trunk with all-zero convolutions has zero features, so every distance is 0: proof the file was loaded.
    features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": torch.zeros_like(v) for k, v in features.state_dict().items()}
    path = tmp_path / "alexnet-zero.pth"
    torch.save(state, path)
    with pytest.raises(FalError, match="--allow-unofficial-weights"):
        load_lpips(weights=path)
    distance, info = load_lpips(weights=path, allow_unofficial=True)
    assert info["official"] is False and info["weights"] == str(path)
    assert info["sha256_prefix"] == sha256_of(path)[:8]  # the file's own hash, not the official one
    assert torch.allclose(distance(torch.rand(2, 3, 64, 64), -torch.rand(2, 3, 64, 64)), torch.zeros(2))


def test_wrong_file_and_net_are_user_errors(tmp_path: Path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(FalError, match="features.0.weight"):
        load_lpips(weights=path, allow_unofficial=True)
    with pytest.raises(FalError, match="'vgg'"):
        load_lpips(net="vgg", random_trunk=True)
