"""Layers keyed by dimensionality, so one definition serves points (0), images (2) and voxels (3).

dims = 0 means feature vectors (B, C): a "convolution" is then a Linear layer and resizing is a no-op.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_nd(dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, **kwargs) -> nn.Module:
    """A same-padded convolution for dims 1-3, or a Linear layer for dims 0."""
    if dims == 0:
        return nn.Linear(in_channels, out_channels, bias=kwargs.get("bias", True))
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    kwargs.setdefault("padding", kernel_size // 2)
    return conv(in_channels, out_channels, kernel_size, **kwargs)


def conv_transpose_nd(dims: int, *args, **kwargs) -> nn.Module:
    return {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims](*args, **kwargs)


def norm_nd(dims: int, kind: str, channels: int, affine: bool = True, running_stats: bool = True) -> nn.Module:
    """'batch', 'instance' or 'none' normalisation for the given dimensionality.

    running_stats=False makes batch norm normalise with the statistics of the batch in hand at sampling too.
    Feedback networks need that: the features of steps 1, 2, 3 differ, running averages mix them, and in
    eval mode they then fit no step (measured: the shapes FAL model's step 1 went from judge FID 160 to 251).
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
        return cls(channels, affine=affine, track_running_stats=running_stats)
    if kind == "instance":
        if dims == 0:  # a vector has no spatial extent to normalise over; LayerNorm is the analogue
            return nn.LayerNorm(channels, elementwise_affine=affine)
        cls = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims]
        return cls(channels, affine=affine)
    raise ValueError(f"unknown norm kind {kind!r}")


def resize_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize (B, C, *S) to spatial size `size` with (bi/tri)linear interpolation; no-op for vectors."""
    if x.dim() == 2 or tuple(x.shape[2:]) == tuple(size):
        return x
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[x.dim() - 2]
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter, so the module outputs 0 at initialisation."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module
