"""LPIPS (Zhang et al. 2018, v0.1, AlexNet trunk) built offline from the `lpips` wheel and a local AlexNet file.

The linear calibration layers ship inside the lpips wheel; only the ImageNet trunk is looked up on disk
(torch hub cache, $FAL_WEIGHTS_DIR or --weights) and SHA-256 checked, so nothing is ever downloaded.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import lpips as lpips_pkg
import torch

from falcli.errors import FalError
from falcli.metrics.weights import ALEXNET_LPIPS, find_weights, sha256_of

# lpips' alexnet splits torchvision's `features` into slices but keeps the layer indices: slice2.3 == features.3.
_SLICE_KEY = re.compile(r"^slice\d+\.(\d+\.\w+)$")


def _trunk_from_torchvision(trunk: torch.nn.Module, tv_state: dict, path: Path) -> None:
    """Copy torchvision alexnet `features.<i>.<param>` tensors into lpips' `slice<k>.<i>.<param>` trunk."""
    mapped = {}
    for key in trunk.state_dict():
        source = "features." + _SLICE_KEY.match(key).group(1)
        if source not in tv_state:
            raise FalError(f"{path}: no {source} in this file; expected torchvision's alexnet-owt state dict")
        mapped[key] = tv_state[source]
    try:
        trunk.load_state_dict(mapped)
    except RuntimeError as e:
        raise FalError(f"{path}: AlexNet tensor shapes do not match torchvision's alexnet; re-download it") from e


def _read_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise FalError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}); re-download it") from e
    if not isinstance(state, dict):
        raise FalError(f"{path}: holds a {type(state).__name__}, not a state dict; use torchvision's alexnet-owt file")
    return state


def load_lpips(
    net: str = "alex",
    weights: Path | None = None,
    random_trunk: bool = False,
    device: str | torch.device = "cpu",
    allow_unofficial: bool = False,
) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dict]:
    """LPIPS v0.1 distance function and protocol info; → (distance, info).

    distance(a, b): float images in [-1, 1], (B, 3, H, W) or (B, 1, H, W) (grey repeated to RGB), H, W >= 32
    → Tensor (B,) of d(a, b) = Σ_l mean_hw ||w_l ⊙ (ŷ_l^a − ŷ_l^b)||² (Zhang et al. 2018, eq. 1).
    `random_trunk` skips the AlexNet file (tests only) and marks info official=False.
    """
    if net != "alex":
        raise FalError(f"LPIPS net {net!r} is not supported; use 'alex' (the trunk FAL-style papers report)")
    with warnings.catch_warnings():
        # lpips still passes torchvision's deprecated `pretrained=` argument; harmless with pnet_rand=True.
        warnings.simplefilter("ignore")
        model = lpips_pkg.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    path, official = None, False
    if not random_trunk:
        path, official = find_weights(
            ALEXNET_LPIPS.filename, weights, ALEXNET_LPIPS.sha256_prefix, allow_unofficial, ALEXNET_LPIPS.url
        )
        _trunk_from_torchvision(model.net, _read_state_dict(path), path)
    model = model.to(device).eval()

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] not in (1, 3):
            raise FalError(
                f"LPIPS needs two image batches of one shape (B, 3, H, W), got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        with torch.no_grad():
            return model(a.to(device, torch.float32), b.to(device, torch.float32)).flatten()

    info = {
        "network": "LPIPS v0.1, AlexNet trunk, linear layers from the lpips wheel",
        "weights": str(path) if path else "random trunk (not comparable)",
        "sha256_prefix": sha256_of(path)[:8] if path and not official else ALEXNET_LPIPS.sha256_prefix,  # the file's own
        "official": official,
        "input": "float RGB in [-1, 1], no resizing; grey repeated to 3 channels",
    }
    return distance, info
