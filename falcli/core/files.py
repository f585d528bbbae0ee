"""Sample folders on disk: what `fal sample` writes, and what `fal refine` reads and writes.

Samples are ordinary files other tools read (and `fal evaluate` reads): one PNG per image, one .binvox per voxel
grid, all toy points in one points.npy. A folder written by `fal sample` also carries what continues its samples:
latents.npy (unconditional tasks) or inputs/ (translation: the condition images) and fal-samples.json (format,
task, checkpoint, steps). Files are matched by name (the stem), so `a.png` in one folder pairs with `a.jpg` in
another.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from falcli.core.encoding import depth_from_network, resize, to_network
from falcli.core.pictures import to_uint8
from falcli.errors import FalError
from falcli.formats.binvox import downsample, read_binvox, write_binvox, y_up_to_z_up, z_up_to_y_up
from falcli.formats.images import IMAGE_SUFFIXES, decode_image

MANIFEST = "fal-samples.json"
FORMAT, VERSION = "fal-samples", 1
LATENTS = "latents.npy"
INPUTS = "inputs"                       # translation: the condition images, one per sample, same names
POINTS = "points.npy"                   # toy: all samples in one (N, 2) float32 array
VOXELS = "voxels.npy"                   # voxels with `fal sample --voxels npy`: (N, R, R, R) uint8, z up
VOXEL_SUFFIX = ".binvox"


def item_names(count: int) -> list[str]:
    return [f"{i:06d}" for i in range(count)]


# --- formats, one per kind of sample ---

def occupancy(samples: torch.Tensor) -> np.ndarray:
    """(N, 1, R, R, R) or (N, R, R, R) probabilities → (N, R, R, R) uint8 {0, 1} shapes (threshold 0.5)."""
    samples = samples.detach()
    if samples.dim() == 5:
        samples = samples[:, 0]
    return (samples > 0.5).to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class ImageFiles:
    """Images in [-1, 1] ↔ PNG files. Depth maps (depth_range set) are 16-bit PNG in millimetres (also read:
    .npy in metres), the convention `fal evaluate depth` reads; other 1-channel maps are grey PNG."""

    size: int                           # the side the network works at; other square sizes are resized
    channels: int                       # 3 = RGB, 1 = grey or depth
    resize_mode: str = "bicubic"        # bicubic for photos, nearest for label maps and depth
    depth_range: tuple[float, float] | None = None  # metres ↔ [-1, 1] (the dataset's depth_range)
    what: str = "images"

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (".png", ".npy") if self.depth_range else IMAGE_SUFFIXES

    @property
    def suffix(self) -> str:
        return ".png"

    def read(self, paths: Sequence[Path]) -> torch.Tensor:
        """(b, C, S, S) in [-1, 1]."""
        out = []
        for path in paths:
            x = to_network(torch.from_numpy(self._array(path))[None], self.depth_range)  # (1, C, H, W)
            if x.shape[-1] != x.shape[-2]:
                raise FalError(f"{path}: {x.shape[-1]}×{x.shape[-2]} is not square; the checkpoint works on "
                               f"{self.size}×{self.size} {self.what} (crop them square first)")
            out.append(resize(x, self.size, self.resize_mode))
        return torch.cat(out)

    def _array(self, path: Path) -> np.ndarray:
        if self.depth_range is None:
            return np.array(decode_image(path, mode="RGB" if self.channels == 3 else "L"), dtype=np.uint8)
        if path.suffix.lower() == ".npy":
            metres = _load_npy(path)
        else:
            millimetres = np.array(decode_image(path, mode=None))
            if millimetres.dtype != np.uint16 and millimetres.dtype != np.int32:
                raise FalError(f"{path}: an 8-bit image, but depth maps are read as 16-bit PNG in millimetres "
                               f"or .npy in metres")
            metres = millimetres.astype(np.float32) / 1000
        if metres.ndim != 2:
            raise FalError(f"{path}: a depth map must be one (H, W) array, got shape {metres.shape}")
        return metres.astype(np.float32)

    def write(self, x: torch.Tensor, names: Sequence[str], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self.depth_range is not None:
            millimetres = depth_from_network(x[:, 0], self.depth_range).mul(1000).round().clamp(0, 65535)
            for name, image in zip(names, millimetres.to(torch.int32).cpu().numpy()):
                Image.fromarray(image.astype(np.uint16)).save(folder / f"{name}.png")
            return
        for name, image in zip(names, to_uint8(x)):
            Image.fromarray(image[..., 0] if self.channels == 1 else image).save(folder / f"{name}.png")


@dataclass(frozen=True)
class VoxelFiles:
    """Occupancy grids in [0, 1] ↔ .binvox files, thresholded at 0.5; finer grids are max-pooled down."""

    resolution: int
    suffixes: tuple[str, ...] = (VOXEL_SUFFIX,)
    suffix: str = VOXEL_SUFFIX
    what: str = "voxel grids"

    def read(self, paths: Sequence[Path]) -> torch.Tensor:
        """(b, 1, R, R, R) in {0, 1}."""
        grids = []
        for path in paths:
            grid = y_up_to_z_up(read_binvox(path)[0])
            dim = grid.shape[0]
            if dim != self.resolution:
                if dim < self.resolution or dim % self.resolution:
                    raise FalError(f"{path}: a {dim}³ grid, but the checkpoint makes {self.resolution}³ grids "
                                   f"(finer grids must be a multiple of {self.resolution})")
                grid = downsample(grid, self.resolution, str(path))
            grids.append(torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)))
        return torch.stack(grids)[:, None]

    def write(self, x: torch.Tensor, names: Sequence[str], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, grid in zip(names, occupancy(x)):
            write_binvox(folder / f"{name}{VOXEL_SUFFIX}", z_up_to_y_up(grid))


@dataclass(frozen=True)
class PointFiles:
    """Toy points (N, 2) ↔ one points.npy (float32, exact): names are row numbers."""

    suffixes: tuple[str, ...] = (".npy",)
    suffix: str = ".npy"
    what: str = "points"

    def write(self, x: torch.Tensor, names: Sequence[str], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / POINTS, x.detach().float().cpu().numpy())


Files = ImageFiles | VoxelFiles | PointFiles  # which one a checkpoint's samples use: task.sample_files(recipe)


# --- listing and reading ---

KINDS = {".binvox": "voxel grids (.binvox)", ".npy": "arrays (.npy)",
         **{s: "images" for s in IMAGE_SUFFIXES}}


def list_files(folder: Path, files: Files, role: str = "--input", task: str | None = None) -> dict[str, Path]:
    """{stem: path} of the folder's sample files (`files.suffixes`), sorted by name; see list_by_stem."""
    return list_by_stem(folder, files.suffixes, files.what, role, task)


def list_by_stem(folder: Path, suffixes: tuple[str, ...], what: str, role: str = "",
                 task: str | None = None) -> dict[str, Path]:
    """{stem: path} of the folder's files with one of `suffixes`, sorted by name (the one folder listing of
    `fal refine` and `fal evaluate`); hidden files and what `fal sample` writes beside its samples are not
    samples. FalError when the folder is missing, empty of them (naming what it holds instead, and the
    checkpoint's `task`), or when two files share a name."""
    folder = Path(folder)
    where = f"{role} {folder}" if role else str(folder)
    if not folder.is_dir():
        raise FalError(f"{where}: no such folder")
    found: dict[str, Path] = {}
    others: set[str] = set()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name in (LATENTS, MANIFEST):
            continue  # what continues fal's samples is not a sample
        suffix = path.suffix.lower()
        if suffix not in suffixes:
            others.add(KINDS.get(suffix, f"{suffix or 'extensionless'} files"))
            continue
        if path.stem in found:
            raise FalError(f"{where}: {found[path.stem].name} and {path.name} share the name {path.stem!r}; keep "
                           f"one of them (files are matched by name)")
        found[path.stem] = path
    if not found:
        held = f"; it holds {', '.join(sorted(others))}" if others else ""
        if others and task:
            held += f"; --ckpt is a checkpoint of task {task!r} (is it the right one?)"
        raise FalError(f"{where}: no {what} in this folder (looked for {', '.join(suffixes)}){held}")
    return found


def match_names(outputs: dict[str, Path], inputs: dict[str, Path], outputs_dir: Path, inputs_dir: Path) -> None:
    """FalError unless every output has an input of the same name and vice versa (shows a few of each)."""
    lonely_outputs = sorted(set(outputs) - set(inputs))
    lonely_inputs = sorted(set(inputs) - set(outputs))
    if lonely_outputs or lonely_inputs:
        parts = []
        if lonely_outputs:
            parts.append(f"{len(lonely_outputs)} in {outputs_dir} have no input ({_few(lonely_outputs)})")
        if lonely_inputs:
            parts.append(f"{len(lonely_inputs)} in {inputs_dir} have no output ({_few(lonely_inputs)})")
        raise FalError(f"outputs and inputs are matched by file name, but {' and '.join(parts)}; rename them "
                       f"so each output and its input share a name")


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise FalError(f"{path}: not a readable .npy array ({error})") from None


def read_points(path: Path) -> np.ndarray:
    """Toy points (N, 2) from a .npy file, or from points.npy in a folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / POINTS).is_file():
            listed = list_files(path, PointFiles())  # names what is there when there is no .npy at all
            raise FalError(f"--input {path}: toy points are read from {POINTS} (found {', '.join(listed)}.npy); "
                           f"pass the .npy file itself")
        path = path / POINTS
    elif not path.is_file():
        raise FalError(f"--input {path}: no such file or folder")
    return checked_points(_load_npy(path), path)


def checked_points(points: np.ndarray, path: Path) -> np.ndarray:
    """(N, 2) finite numbers as float32, or a FalError naming the file."""
    if points.ndim != 2 or points.shape[1] != 2 or points.dtype.kind not in "fiu":
        raise FalError(f"{path}: a {points.dtype} array of shape {points.shape}; toy samples are (N, 2) numbers")
    if len(points) == 0:
        raise FalError(f"{path}: holds no points")
    if not np.isfinite(points).all():
        raise FalError(f"{path}: {int((~np.isfinite(points)).any(axis=1).sum())} point(s) are NaN or infinite; "
                       f"a diverged model? drop them or sample again")
    return points.astype(np.float32)


def read_latents(folder: Path, count: int, latent_dim: int) -> torch.Tensor:
    path = Path(folder) / LATENTS
    if not path.is_file():
        raise FalError(f"{path}: missing; fal-samples.json says the samples carry latents (write them again "
                       f"with `fal sample`, or delete fal-samples.json and use --invert-iterations)")
    latents = _load_npy(path)
    if latents.shape != (count, latent_dim):
        raise FalError(f"{path}: shape {latents.shape}, expected ({count}, {latent_dim}): one latent per sample "
                       f"of this checkpoint")
    return torch.from_numpy(latents.astype(np.float32))


def read_manifest(folder: Path) -> dict | None:
    """fal-samples.json of a folder written by `fal sample`, or None for any other folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FalError(f"{path}: not readable JSON ({error}); delete it to treat the folder as plain files") \
            from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FalError(f"{path}: not a fal samples manifest")
    if manifest.get("version", 0) > VERSION:
        raise FalError(f"{path}: written by a newer fal (version {manifest['version']}); upgrade fal")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    (Path(folder) / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": VERSION, **manifest},
                                                    indent=2) + "\n")


# --- output folders: never overwrite ---

def check_fresh(out: Path) -> None:
    """FalError when `out` is a file or a non-empty folder (nothing there is ever overwritten)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FalError(f"--out {out}: a file, not a folder; choose a new folder (nothing was overwritten)")
    if out.is_dir() and any(out.iterdir()):
        raise FalError(f"--out {out}: already exists and is not empty; choose a new folder (nothing was "
                       f"overwritten)")


@contextlib.contextmanager
def fresh_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to write into; renamed to `out` only when the block succeeds, so an
    error or an interrupt leaves no half-written output (and never touches an existing one)."""
    out = Path(out)
    check_fresh(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        check_fresh(out)  # someone may have written there meanwhile
        if out.is_dir():
            out.rmdir()   # empty: replaced by the finished folder
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
