"""Prepared-dataset store: `meta.json` plus one `.npy` per split and field, written atomically.

Layout: OUT/meta.json, OUT/<split>/<field>.npy (first axis = item), OUT/<split>/names.txt.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence

import numpy as np

from falcli import __version__
from falcli.errors import FalError

FORMAT = "fal-dataset"
VERSION = 1
KINDS = ("paired", "images", "voxels")
# The names `fal prepare NAME` knows (falcli/commands/prepare.py's PREPARERS has one entry each); here, below
# the tasks, so that a task pointing at a missing folder can name the command that makes it.
DATASET_NAMES = ("cityscapes", "nyu", "celeba", "images", "pix2pix", "shapenet", "streets", "shapes", "primitives")
PREPARE_HINT = "run `fal prepare NAME --raw PATH --out DIR` to make one"

Progress = Callable[[str, int, int], None]
"""`progress(description, done, total)`, called during long loops (the CLI draws a progress bar)."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_new_output(out: Path) -> None:
    """Refuse to overwrite: prepared datasets are never replaced in place."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise FalError(f"{out}: already exists; pass another --out or delete it first")


def created_by(dataset: str, **options: Any) -> str:
    """The `created_by` provenance string, e.g. "fal prepare celeba --size 64 (falcli 0.1.0)"."""
    parts = [f"fal prepare {dataset}"]
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts) + f" (falcli {__version__})"


class DatasetWriter:
    """Incremental writer: `.create()` hands out `.npy` memmaps to fill in place; `.finish()` publishes.

    Everything goes to a hidden sibling folder that is renamed onto `out` at the very end, so a crash
    never leaves a half-written dataset. As a context manager it removes that folder on any exception
    and calls `finish()` on a clean exit.
    """

    def __init__(self, out: Path, kind: str, source: str, meta: dict[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.out = Path(out)
        check_new_output(self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        except OSError as e:
            raise FalError(f"{self.out}: cannot create the output folder ({e}); pass another --out") from e
        self.kind = kind
        self.source = source
        self.meta: dict[str, Any] = dict(meta or {})
        self._fields: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._created: dict[str, set[str]] = {}
        self._names: dict[str, list[str]] = {}
        self._arrays: list[np.ndarray] = []
        self._closed = False

    def create(self, split: str, field: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Allocate `<split>/<field>.npy` with `shape` (first axis = item) and return it as a writable memmap."""
        self._check_open()
        for what, value in (("split", split), ("field", field)):
            if not _SAFE_NAME.match(value):
                raise ValueError(f"bad {what} name {value!r}")
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        if len(shape) < 1:
            raise ValueError("shape needs at least the item axis")
        if field in self._created.get(split, set()):
            raise ValueError(f"{split}/{field} created twice")
        if split in self._counts and self._counts[split] != shape[0]:
            raise ValueError(f"{split}/{field}: {shape[0]} items, other fields of {split} have {self._counts[split]}")
        spec = {"dtype": dtype.name, "shape": list(shape[1:])}
        if field in self._fields and self._fields[field] != spec:
            raise ValueError(f"{split}/{field}: {spec} differs from other splits' {self._fields[field]}")
        (self.tmp / split).mkdir(exist_ok=True)
        array = np.lib.format.open_memmap(self.tmp / split / f"{field}.npy", mode="w+", dtype=dtype, shape=shape)
        self._fields[field] = spec
        self._counts[split] = shape[0]
        self._created.setdefault(split, set()).add(field)
        self._arrays.append(array)
        return array

    def set_names(self, split: str, names: list[str]) -> None:
        """Record the original identifiers of `split`'s items (same order as the arrays)."""
        self._check_open()
        names = [str(n) for n in names]
        if any("\n" in n or "\r" in n for n in names):
            raise ValueError("item names cannot contain line breaks")
        self._names[split] = names

    def finish(self) -> Path:
        """Flush, write names and meta.json, and rename the temporary folder onto `out`."""
        if self._closed:
            return self.out
        try:
            self._publish()
        except BaseException:
            self.abort()
            raise
        return self.out

    def abort(self) -> None:
        """Throw away everything written so far."""
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.finish()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("DatasetWriter already finished or aborted")

    def _publish(self) -> None:
        if not self._counts:
            raise ValueError("no split was written")
        for split, created in self._created.items():
            missing = set(self._fields) - created
            if missing:
                raise ValueError(f"split {split} lacks fields {sorted(missing)}")
        for array in self._arrays:
            if isinstance(array, np.memmap):
                array.flush()
        self._arrays.clear()
        for split, count in self._counts.items():
            names = self._names.get(split, [f"{i:06d}" for i in range(count)])
            if len(names) != count:
                raise ValueError(f"{split}: {len(names)} names for {count} items")
            (self.tmp / split / "names.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
        first = next(iter(self._fields.values()))["shape"]
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "source": self.source,
            "created_by": self.meta.get("created_by", f"fal prepare {self.source} (falcli {__version__})"),
            "size": self.meta.get("size", first[0] if first else None),
            "splits": dict(self._counts),
            "fields": dict(self._fields),
        }
        for key, value in self.meta.items():
            # the writer owns the structural keys; a caller's copy may only repeat them
            if key in ("format", "version", "kind", "source", "splits", "fields") and value != meta[key]:
                raise ValueError(f"meta[{key!r}] = {value!r} contradicts the written dataset ({meta[key]!r})")
            meta.setdefault(key, value)
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        check_new_output(self.out)  # someone may have created it while we were working
        os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp made it private; the dataset is as shareable as a mkdir
        os.replace(self.tmp, self.out)
        self._closed = True


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def write_dataset(out: Path, kind: str, source: str, splits: dict[str, dict[str, np.ndarray]],
                  meta: dict[str, Any], names: dict[str, list[str]] | None = None) -> Path:
    """Write in-memory arrays `splits[split][field]` as a prepared dataset at `out` (atomically)."""
    with DatasetWriter(out, kind, source, meta) as writer:
        for split, fields in splits.items():
            for field, array in fields.items():
                array = np.asarray(array)
                writer.create(split, field, array.shape, array.dtype)[...] = array
            if names and split in names:
                writer.set_names(split, names[split])
    return Path(out)


def write_split(writer: DatasetWriter, split: str, fields: dict[str, tuple[tuple[int, ...], Any]],
                items: Sequence[Any], make: Callable[[Any], dict[str, np.ndarray]], names: list[str],
                progress: Progress | None = None, description: str = "") -> None:
    """Fill `split` item by item: `fields[name] = (item_shape, dtype)`, `make(item)` returns one item's arrays."""
    arrays = {field: writer.create(split, field, (len(items), *shape), dtype)
              for field, (shape, dtype) in fields.items()}
    description = description or split
    if progress:
        progress(description, 0, len(items))
    for i, item in enumerate(items):
        values = make(item)
        for field, array in arrays.items():
            array[i] = values[field]
        if progress:
            progress(description, i + 1, len(items))
    writer.set_names(split, names)


def read_meta(root: Path) -> dict[str, Any]:
    """Read and check `root/meta.json`; FalError when `root` is not a prepared dataset."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FalError(f"{root}: not a prepared dataset (no meta.json; {PREPARE_HINT})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FalError(f"{path}: not a prepared dataset (unreadable meta.json: {e}; {PREPARE_HINT})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FalError(f"{path}: not a prepared dataset (format is not {FORMAT!r}; {PREPARE_HINT})")
    if meta.get("version") != VERSION:
        raise FalError(f"{path}: not a prepared dataset this fal reads (version {meta.get('version')!r}, "
                       f"expected {VERSION}; {PREPARE_HINT} again)")
    if meta.get("kind") not in KINDS or not isinstance(meta.get("splits"), dict) \
            or not isinstance(meta.get("fields"), dict):
        raise FalError(f"{path}: not a prepared dataset (kind, splits or fields missing; {PREPARE_HINT} again)")
    return meta


def _check_split(root: Path, meta: dict[str, Any], split: str) -> int:
    if split not in meta["splits"]:
        available = ", ".join(meta["splits"]) or "none"
        raise FalError(f"{root}: no split {split!r} in this dataset (available: {available})")
    return int(meta["splits"][split])


def load_split(root: Path, split: str, mmap: bool = True) -> dict[str, np.ndarray]:
    """All fields of `split` as arrays (read-only memmaps unless `mmap=False`), keyed by field name."""
    root = Path(root)
    meta = read_meta(root)
    count = _check_split(root, meta, split)
    arrays: dict[str, np.ndarray] = {}
    for field, spec in meta["fields"].items():
        path = root / split / f"{field}.npy"
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FalError(f"{path}: missing or unreadable ({e}); {PREPARE_HINT} again") from e
        expected = (count, *spec.get("shape", []))
        if array.shape != expected or array.dtype.name != spec.get("dtype"):
            raise FalError(f"{path}: shape {array.shape} {array.dtype} but meta.json says {expected} "
                           f"{spec.get('dtype')}; {PREPARE_HINT} again")
        arrays[field] = array
    return arrays


def load_names(root: Path, split: str) -> list[str]:
    """The original identifiers of `split`'s items, in array order."""
    root = Path(root)
    meta = read_meta(root)
    count = _check_split(root, meta, split)
    path = root / split / "names.txt"
    try:
        names = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FalError(f"{path}: missing or unreadable ({e}); {PREPARE_HINT} again") from e
    if len(names) != count:
        raise FalError(f"{path}: {len(names)} names for {count} items; {PREPARE_HINT} again")
    return names
