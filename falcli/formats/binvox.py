"""Read and write binvox voxel files (run-length encoded, https://www.patrickmin.com/binvox/binvox.html).

Grids are returned in (x, y, z) axes; the file stores voxels with y fastest, then z, then x.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from falcli.errors import FalError
from falcli.formats.archive import read_bytes

_MAX_HEADER_LINES = 16


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _parse_header(data: bytes, name: str) -> tuple[int, dict[str, Any], int]:
    """Return (D, meta, offset of the first data byte)."""
    pos, fields = 0, {}
    for line_no in range(_MAX_HEADER_LINES):
        end = data.find(b"\n", pos)
        if end < 0:
            raise FalError(f"{name}: binvox header ends early (no 'data' line); the file is truncated or not binvox")
        line = data[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if line_no == 0:
            if not line.startswith("#binvox"):
                raise FalError(f"{name}: not a binvox file (first line is {line[:40]!r}, expected '#binvox 1')")
            version = line[len("#binvox"):].strip()
            if version != "1":
                raise FalError(f"{name}: binvox version {version!r}; only version 1 is supported")
            continue
        if line == "data":
            break
        key, _, rest = line.partition(" ")
        fields[key] = rest.split()
    else:
        raise FalError(f"{name}: binvox header has no 'data' line; the file is not binvox")
    try:
        dims = [int(v) for v in fields["dim"]]
        translate = tuple(float(v) for v in fields.get("translate", ["0", "0", "0"]))
        scale = float(fields.get("scale", ["1"])[0])
    except (KeyError, ValueError, IndexError) as e:
        raise FalError(f"{name}: invalid binvox header (dim/translate/scale: {e}); the file is not binvox") from e
    if len(dims) != 3 or len(translate) != 3:
        raise FalError(f"{name}: invalid binvox header: 'dim' and 'translate' need three numbers")
    if len(set(dims)) != 1 or dims[0] <= 0:
        raise FalError(f"{name}: binvox dims {dims} are not a positive cube (D D D); only cubic grids are supported")
    return dims[0], {"dim": dims[0], "translate": translate, "scale": scale}, pos


def read_binvox(source: bytes | Path, name: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a binvox file into a bool (D, D, D) grid in (x, y, z) axes and {dim, translate, scale}."""
    label = name or (str(source) if isinstance(source, Path) else "binvox data")
    data = read_bytes(source)
    dim, meta, pos = _parse_header(data, label)
    body = np.frombuffer(data, dtype=np.uint8, offset=pos)
    if body.size % 2:
        raise FalError(f"{label}: odd number of binvox data bytes ({body.size}); the file is truncated")
    values, counts = body[0::2], body[1::2].astype(np.int64)
    if counts.size and counts.min() == 0:
        raise FalError(f"{label}: binvox run with count 0; the file is corrupt")
    total, expected = int(counts.sum()), dim ** 3
    if total != expected:
        what = "truncated" if total < expected else "has extra data"
        raise FalError(f"{label}: binvox data {what}: {total} voxels for dim {dim} ({expected}); download it again")
    flat = np.repeat(values != 0, counts)
    grid = flat.reshape(dim, dim, dim).transpose(0, 2, 1)  # stored (x, z, y) -> (x, y, z)
    return np.ascontiguousarray(grid), meta


def encode_binvox(grid: np.ndarray, translate: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  scale: float = 1.0) -> bytes:
    """The binvox bytes of a cubic (x, y, z) grid (non-zero = filled); runs are at most 255 long."""
    grid = np.asarray(grid)
    if grid.ndim != 3 or len(set(grid.shape)) != 1 or grid.shape[0] == 0:
        raise ValueError(f"binvox needs a non-empty cubic 3-D grid, got shape {grid.shape}")
    dim = grid.shape[0]
    flat = (grid.transpose(0, 2, 1) != 0).ravel().astype(np.uint8)
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    lengths = np.diff(np.r_[starts, flat.size])
    pieces = -(-lengths // 255)  # each run split into ceil(len / 255) chunks
    values = np.repeat(flat[starts], pieces)
    counts = np.full(values.size, 255, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    counts[last] = lengths - (pieces - 1) * 255
    body = np.empty(values.size * 2, dtype=np.uint8)
    body[0::2], body[1::2] = values, counts
    header = (f"#binvox 1\ndim {dim} {dim} {dim}\n"
              f"translate {' '.join(repr(float(t)) for t in translate)}\nscale {float(scale)!r}\ndata\n")
    return header.encode("ascii") + body.tobytes()


def write_binvox(path: Path, grid: np.ndarray, translate: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 scale: float = 1.0) -> None:
    """Write a cubic (x, y, z) grid as a binvox file."""
    Path(path).write_bytes(encode_binvox(grid, translate, scale))


# binvox (and ShapeNet, which ships binvox files) keeps y up; fal's grids keep z up (falcli.core.render, the built-in
# primitives). The files are read and written in their own frame; these turn a grid between the two.

def y_up_to_z_up(grid: np.ndarray) -> np.ndarray:
    """A binvox-frame grid in fal's frame: a +90° turn about x (y → z, z → −y)."""
    return np.ascontiguousarray(np.flip(grid, axis=2).transpose(0, 2, 1))


def z_up_to_y_up(grid: np.ndarray) -> np.ndarray:
    """The inverse of `y_up_to_z_up`: a fal grid in the frame binvox files and their viewers use."""
    return np.ascontiguousarray(np.flip(grid.transpose(0, 2, 1), axis=2))


def downsample(grid: np.ndarray, resolution: int, name: str = "voxel grid") -> np.ndarray:
    """Max-pool a (D, D, D) grid to (R, R, R): a voxel is filled when any voxel of its block is."""
    if grid.ndim != 3 or len(set(grid.shape)) != 1:
        raise FalError(f"{name}: voxel grid {grid.shape} is not cubic")
    dim = grid.shape[0]
    if not _is_power_of_two(dim):
        raise FalError(f"{name}: grid size {dim} is not a power of two; cannot max-pool it evenly")
    if not _is_power_of_two(resolution):
        raise FalError(f"{name}: resolution {resolution} is not a power of two; use 32 or 64")
    if resolution > dim:
        raise FalError(f"{name}: grid size {dim} is smaller than the requested resolution {resolution}; "
                       "use a smaller --size")
    f = dim // resolution
    return grid.reshape(resolution, f, resolution, f, resolution, f).any(axis=(1, 3, 5))
