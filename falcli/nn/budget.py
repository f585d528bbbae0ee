"""Will a recipe's networks fit? Parameters counted on the meta device (no memory), compared with the machine.

Training holds, per parameter, fp32 weights, gradients, Adam's two moments and at most an EMA copy: 20 bytes.
A recipe whose G and D need more than the larger of this machine's RAM and its largest GPU is refused when it
is loaded (`--dry-run`, `fal sample` on a checkpoint), before a single weight is allocated. Activations are not
counted: they scale with the batch and are checked where the batch is known (falcli/data/loader.py).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import torch
from torch import nn

from falcli.errors import FalError

BYTES_PER_PARAMETER = 20


def parameter_count(make: Callable[[], tuple[nn.Module, ...]]) -> int | None:
    """Parameters of the modules `make()` builds, built on the meta device; None when they cannot be built
    there (a task that reads its prepared data to size its networks)."""
    state = torch.random.get_rng_state()  # make_networks seeds the global RNG; loading must not shift it
    try:
        with torch.device("meta"):
            modules = make()
    except FalError:
        return None
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return None  # an op the meta device lacks: no estimate rather than a refusal
    finally:
        torch.random.set_rng_state(state)
    return sum(p.numel() for module in modules for p in module.parameters())


def machine_bytes() -> int:
    """The larger of physical RAM and the largest visible GPU's memory."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    gpu = 0
    if torch.cuda.is_available():
        gpu = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return max(ram, gpu)


def check_fits(model_config, make: Callable[[], tuple[nn.Module, ...]], default_model, source: str) -> None:
    """FalError naming the model key most above its default when the networks cannot be held for training."""
    count = parameter_count(make)
    available = machine_bytes()
    if count is None or not available or count * BYTES_PER_PARAMETER <= available:
        return
    key = _blame(model_config, default_model)
    raise FalError(f"{source}: {key} makes G and D {count / 1e9:.1f} G parameters (~{count * BYTES_PER_PARAMETER / 2**30:.0f} "
                   f"GiB to train), more than this machine's {available / 2**30:.0f} GiB; lower it")


def _blame(config, default) -> str:
    """`model.KEY=VALUE` of the integer field furthest above its default (the likely typo)."""
    best, ratio = "the model section", 0.0
    for field in dataclasses.fields(config):
        value, base = getattr(config, field.name), getattr(default, field.name, None)
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(base, int) and base > 0:
            if value / base > ratio:
                best, ratio = f"model.{field.name}={value}", value / base
    return best
