"""Where and how a run executes: device choice, mixed precision, memory format."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from falcli.errors import FalError


def pick_device(name: str) -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is a user error, not a crash."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FalError(f"--device {name}: no CUDA device is visible here; use --device cpu or auto")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FalError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise FalError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                       f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16" and device.type != "cuda":
        raise FalError("train.precision: bf16 needs a CUDA device here; use auto or fp32 on the CPU")
    return device.type == "cuda" and precision in ("auto", "bf16")


def autocast(enabled: bool, device: torch.device, cache: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); a no-op otherwise. `cache=False` for code
    captured in a CUDA graph, whose replays must not reuse casts cached during capture."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


def to_device(raw: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in raw.items()}


# --- several processes (torchrun) ---

@dataclass(frozen=True)
class Processes:
    """This process's place in a torchrun job; one process without torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:  # only the main process writes files
        return self.rank == 0


_CURRENT = Processes()


def current_processes() -> Processes:
    return _CURRENT


def start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK), if any.

    NCCL on CUDA, gloo on the CPU; each process drives the GPU of its local rank.
    """
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        _CURRENT = Processes()
        device = pick_device(device_name)
        if device.type == "cuda":
            # The run's GPU becomes the current one: what is made without naming a device (torch.cuda.graph's
            # capture stream, cuBLAS handles, the pin-memory thread's target) would otherwise be on cuda:0.
            device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
            torch.cuda.set_device(device)
        return _CURRENT, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    _CURRENT = Processes(rank, world, local_rank)
    return _CURRENT, device


def randn_shard(rows: int, *shape: int, device: torch.device) -> torch.Tensor:
    """This process's `rows` of a (world·rows, *shape) standard normal draw.

    Every process draws the whole global batch and keeps its slice, so a job of N processes sees exactly
    the latents of one process with the same global batch, and all processes keep the same RNG state
    (which makes a checkpoint resumable with any number of processes).
    """
    full = torch.randn(rows * _CURRENT.world, *shape, device=device)
    return full[_CURRENT.rank * rows:(_CURRENT.rank + 1) * rows]


def rand_shard(rows: int, *shape: int, device: torch.device) -> torch.Tensor:
    """As randn_shard, for uniform [0, 1) draws (augmentation parameters)."""
    full = torch.rand(rows * _CURRENT.world, *shape, device=device)
    return full[_CURRENT.rank * rows:(_CURRENT.rank + 1) * rows]


def barrier() -> None:
    if _CURRENT.world > 1:
        dist.barrier()


def finish_processes() -> None:
    """Wait for every process, then leave the job cleanly: a process group left to the interpreter's exit can
    abort one rank while another is still closing its connections (seen as SIGABRT under gloo)."""
    barrier()
    if _CURRENT.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
