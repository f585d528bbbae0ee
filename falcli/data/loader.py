"""A deterministic, resumable stream of batches.

The order is a pure function of (seed, iteration): epoch e uses randperm(n) seeded by (seed, e). Resuming at
iteration i therefore continues with exactly the batches an uninterrupted run would have seen, with any
number of processes (rank r takes the r-th contiguous share of the same global batch).
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from falcli.errors import FalError


def check_batch_size(size: int, batch_size: int, world: int = 1) -> None:
    if size < batch_size:
        raise FalError(f"the dataset has {size} items, fewer than train.batch_size={batch_size}; "
                       f"lower the batch size or add data")
    if batch_size % world:
        raise FalError(f"train.batch_size={batch_size} must be divisible by the {world} processes")


class EpochBatches(Sampler[list[int]]):
    """Index lists for one rank's share of each global batch, from `start_iteration` on, forever."""

    def __init__(self, size: int, batch_size: int, seed: int, start_iteration: int = 0, rank: int = 0,
                 world: int = 1):
        check_batch_size(size, batch_size, world)
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_iteration, self.rank, self.world = start_iteration, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.size // self.batch_size  # the last partial batch of an epoch is dropped
        iteration = self.start_iteration
        while True:
            epoch, position = divmod(iteration, per_epoch)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=generator)
            for start in range(position * self.batch_size, per_epoch * self.batch_size, self.batch_size):
                share = self.batch_size // self.world
                yield order[start + self.rank * share:start + (self.rank + 1) * share].tolist()
            iteration = (epoch + 1) * per_epoch


def _keep_batched(batch):
    return batch


def batch_stream(dataset: Dataset, batch_size: int, seed: int, start_iteration: int = 0, rank: int = 0,
                 world: int = 1, workers: int = 0, pin_memory: bool = False) -> Iterator[dict]:
    """Endless iterator of collated dict batches in the deterministic order above."""
    sampler = EpochBatches(len(dataset), batch_size, seed, start_iteration, rank, world)
    batched = hasattr(dataset, "__getitems__")  # the dataset stacks a batch itself: skip per-item collate
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                        collate_fn=_keep_batched if batched else None,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
    return iter(loader)
