"""ShapeNet voxels (binvox) as a `voxels` dataset: (N, R, R, R) uint8 grids in (x, y, z) axes plus class labels.

Reads 3D-R2N2's ShapeNetVox32 (`<synset>/<model>/model.binvox`) or ShapeNetCore v2
(`<synset>/<model>/models/model_normalized.solid.binvox`), from a folder or an archive; max-pools to R.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from falcli.errors import FalError
from falcli.formats.archive import open_source
from falcli.formats.binvox import downsample, read_binvox, y_up_to_z_up
from falcli.formats.store import DatasetWriter, Progress, created_by

SYNSETS = {
    "airplane": "02691156", "car": "02958343", "vessel": "04530566", "chair": "03001627", "table": "04379243",
    "sofa": "04256520", "rifle": "04090263", "lamp": "03636649", "bench": "02828884", "cabinet": "02933112",
    "display": "03211117", "loudspeaker": "03691459", "telephone": "04401088",
}
VAL_FRACTION = 0.1
_MEMBER = re.compile(r"(?:^|/)(?P<synset>\d{8})/(?P<model>[^/]+)/(?:model|models/model_normalized\.solid)\.binvox$")


def _split_val(models: list[str]) -> set[str]:
    """Deterministic val set: the VAL_FRACTION of models with the smallest sha1(model id), at least one of two."""
    if len(models) < 2:
        return set()
    count = max(1, round(VAL_FRACTION * len(models)))
    ranked = sorted(models, key=lambda m: hashlib.sha1(m.encode("utf-8")).hexdigest())
    return set(ranked[:count])


def resolve_classes(classes: list[str] | None, found: set[str]) -> list[str]:
    """Validated class names; None means every known class present in the input."""
    if classes is None:
        present = [name for name, synset in SYNSETS.items() if synset in found]
        if not present:
            raise FalError(f"no known ShapeNet class folders found (valid classes: {', '.join(SYNSETS)})")
        return present
    if not classes:
        raise FalError(f"--classes is empty; name at least one of: {', '.join(SYNSETS)}")
    unknown = [c for c in classes if c not in SYNSETS]
    if unknown:
        raise FalError(f"unknown ShapeNet class {unknown[0]!r}; valid classes: {', '.join(SYNSETS)}")
    return list(dict.fromkeys(classes))


def prepare_shapenet(raw: Path, out: Path, size: int = 32, classes: list[str] | None = None,
                     progress: Progress | None = None) -> Path:
    """Prepare ShapeNet binvox models of `classes` at size^3 (max-pooled) with a deterministic 10 % val split."""
    if size <= 0 or size & (size - 1):
        raise FalError(f"--size {size}: voxel resolution must be a power of two (32 or 64)")
    with open_source(Path(raw)) as source:
        members: dict[str, dict[str, str]] = {}
        for name in source.names():
            match = _MEMBER.search(name)
            if match:
                members.setdefault(match["synset"], {}).setdefault(match["model"], name)
        chosen = resolve_classes(classes, set(members))
        items: dict[str, list[tuple[int, str, str]]] = {"train": [], "val": []}
        for label, class_name in enumerate(chosen):
            models = members.get(SYNSETS[class_name], {})
            if not models:
                raise FalError(f"{Path(raw) / SYNSETS[class_name]}: no <model>/model.binvox or "
                               f"<model>/models/model_normalized.solid.binvox files for class {class_name}")
            if len(models) < 2:  # training and evaluation need every class in both splits
                raise FalError(f"{Path(raw) / SYNSETS[class_name]}: only one {class_name} model; a class needs at "
                               f"least two (one goes to val), or leave {class_name} out of --classes")
            val = _split_val(list(models))
            for model in sorted(models):
                items["val" if model in val else "train"].append((label, model, models[model]))
        splits = {split: entries for split, entries in items.items() if entries}
        meta = {"size": size, "created_by": created_by("shapenet", size=size, classes=chosen),
                "classes": chosen, "synsets": [SYNSETS[c] for c in chosen], "downsample": "max-pool",
                "axes": "x, y, z; z up (turned from binvox's y up)", "val_fraction": VAL_FRACTION}
        with DatasetWriter(out, "voxels", "shapenet", meta) as writer:
            slots: dict[str, tuple[str, int]] = {}
            voxels = {}
            for split, entries in splits.items():
                voxels[split] = writer.create(split, "voxels", (len(entries), size, size, size), "uint8")
                labels = writer.create(split, "labels", (len(entries),), "int64")
                labels[:] = [entry[0] for entry in entries]
                writer.set_names(split, [f"{SYNSETS[chosen[label]]}/{model}" for label, model, _ in entries])
                slots.update({member: (split, i) for i, (_, _, member) in enumerate(entries)})
            total = len(slots)
            if progress:
                progress("shapenet", 0, total)
            for done, (member, data) in enumerate(source.iter_read(list(slots)), 1):
                grid, _ = read_binvox(data, source.where(member))
                grid = y_up_to_z_up(grid)  # ShapeNet models stand on y; fal's grids on z
                split, i = slots[member]
                voxels[split][i] = downsample(grid, size, source.where(member)).astype(np.uint8)
                if progress:
                    progress("shapenet", done, total)
    return out
