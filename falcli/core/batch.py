"""The batch a task hands the training loop (falcli/tasks/base.py says how tasks make one)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Batch:
    real: torch.Tensor                  # what D should call real, (B, C, *S)
    gen_input: torch.Tensor             # G's input: a latent (B, Z) or the condition image (B, C_in, H, W)
    condition: torch.Tensor | None = None  # shown to D next to every sample, and fed back (translation)
    extras: dict[str, Any] = field(default_factory=dict)  # task data: labels, names, depth in metres …
