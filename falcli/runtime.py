"""Where and how a run executes: device choice, mixed precision, memory format."""
from __future__ import annotations

import contextlib

import torch

from falcli.errors import FalError


def pick_device(name: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FalError(f"--device {name}: no CUDA device is visible here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FalError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16" and device.type != "cuda":
        raise FalError("train.precision: bf16 needs a CUDA device here; use auto or fp32 on the CPU")
    return device.type == "cuda" and precision in ("auto", "bf16")


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); a no-op otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_device(raw: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in raw.items()}
