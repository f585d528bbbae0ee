"""The voxel task's data: built-in primitives or a prepared ShapeNet folder, one class subset, as occupancy
grids; `occupancy` (from falcli/core/files.py) turns samples into shapes, thresholded at 0.5."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from falcli.core.files import occupancy  # noqa: F401  (part of this module's API)
from falcli.data.primitives import PRIMITIVE_CLASSES, make_primitives
from falcli.errors import FalError
from falcli.formats.binvox import downsample
from falcli.formats.store import load_split, read_meta
from falcli.tasks.voxel.config import RESOLUTIONS, DataConfig  # noqa: F401  (part of this module's API)

PRIMITIVES_SEEDS = {"train": 0, "val": 1}  # fixed: every run and the judge see the same built-in shapes


# --- data ---

@dataclass
class VoxelSet:
    voxels: np.ndarray                  # (N, R0, R0, R0) uint8 {0, 1}, axes (x, y, z); may be a read-only memmap
    labels: np.ndarray                  # (N,) int64 indices into `names`
    index: np.ndarray                   # (M,) rows of the selected classes
    names: list[str]                    # every class name of the source, in label order
    resolution: int                     # R after pooling (R0 is a power-of-two multiple of it)

    def __len__(self) -> int:
        return len(self.index)

    def grids(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Selected items `rows` (positions in `index`) as (k, R, R, R) uint8, max-pooled to the resolution."""
        rows = self.index[np.asarray(rows, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # memmaps read fastest in file order
        grids = np.empty((len(rows), *self.voxels.shape[1:]), np.uint8)
        grids[order] = self.voxels[rows[order]]
        if grids.shape[1] != self.resolution:
            grids = np.stack([downsample(g, self.resolution) for g in grids]).astype(np.uint8)
        return grids

    def all_grids(self) -> np.ndarray:
        return self.grids(np.arange(len(self)))

    def selected_labels(self) -> np.ndarray:
        return self.labels[self.index]


def class_names(data: DataConfig) -> list[str]:
    """Every class of the data source, in label order (the built-in list, or the prepared meta's)."""
    if data.source == "primitives":
        return list(PRIMITIVE_CLASSES)
    return list(_prepared_meta(data.root)["classes"])


def load_voxels(data: DataConfig, split: str) -> VoxelSet:
    """The `split` voxels of the selected classes: generated primitives, or a prepared dataset (memmapped)."""
    if data.source == "primitives":
        if split not in PRIMITIVES_SEEDS:
            raise FalError(f"the built-in primitives have no {split!r} split (use train or val)")
        count = data.primitives_train if split == "train" else data.primitives_val
        raw = make_primitives(count, max(32, data.resolution), PRIMITIVES_SEEDS[split],
                              list(data.classes) if data.classes else None)
        return VoxelSet(raw["voxels"], raw["labels"], np.arange(count), class_names(data), data.resolution)

    check_classes(data)
    meta = _prepared_meta(data.root)
    stored = meta["fields"]["voxels"]["shape"][0]
    if stored < data.resolution or stored % data.resolution:
        raise FalError(f"data.resolution {data.resolution}: {data.root} holds {stored}³ grids; prepare it with "
                       f"`fal prepare shapenet --size {data.resolution}` or lower data.resolution")
    if split not in meta["splits"]:
        raise FalError(f"{data.root}: no {split!r} split (it has {', '.join(meta['splits'])}); prepare it "
                       f"again with more models per class")
    arrays = load_split(data.root, split)
    names = list(meta["classes"])
    wanted = list(data.classes) if data.classes else names
    labels = np.asarray(arrays["labels"])
    for name in wanted:
        if not (labels == names.index(name)).any():
            raise FalError(f"data.classes: {data.root} has no {name!r} voxels in its {split} split; prepare "
                           f"more {name} models or remove {name} from data.classes")
    index = np.nonzero(np.isin(labels, [names.index(name) for name in wanted]))[0]
    return VoxelSet(arrays["voxels"], labels, index, names, data.resolution)


def _prepared_meta(root: Path) -> dict:
    """meta.json of a prepared voxel dataset, with the hint to make one when it is missing or another kind."""
    if not (Path(root) / "meta.json").is_file():
        raise FalError(f"data.root {root}: no prepared dataset there; make it with `fal prepare shapenet "
                       f"--raw PATH --out {root} --classes airplane,car,vessel`")
    meta = read_meta(root)
    if meta["kind"] != "voxels" or "voxels" not in meta["fields"] or "labels" not in meta["fields"]:
        raise FalError(f"data.root {root}: a {meta['kind']!r} dataset, not voxels; point data.root at the "
                       f"output of `fal prepare shapenet`")
    return meta


def check_classes(data: DataConfig) -> None:
    """FalError when data.classes names a class the source does not have (before any data is read)."""
    if data.classes is None or data.source == "primitives":
        return  # primitives classes are checked in DataConfig
    names = class_names(data)
    unknown = [c for c in data.classes if c not in names]
    if unknown:
        raise FalError(f"data.classes: {unknown[0]!r} is not in {data.root} (it has {', '.join(names)}); "
                       f"prepare it with `fal prepare shapenet --classes {','.join([*names, unknown[0]])}`")


class VoxelDataset(torch.utils.data.Dataset):
    """Items {voxels (R, R, R) uint8, labels ()}; `__getitems__` stacks a batch in one read."""

    def __init__(self, voxels: VoxelSet):
        self.set = voxels

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return {"voxels": torch.from_numpy(self.set.grids(rows)),
                "labels": torch.from_numpy(self.set.selected_labels()[rows].copy())}

