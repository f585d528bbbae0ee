"""Locate pretrained metric weights on disk (never download) and check they are the official files.

Metric values are only comparable across papers when computed with the exact published weights,
so every file is verified against the SHA-256 prefix that torch hub encodes in its file name.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from falcli.errors import FalError


@dataclass(frozen=True)
class WeightsSpec:
    """A published weights file: its torch-hub file name, download URL and SHA-256 prefix."""

    filename: str
    url: str
    sha256_prefix: str


INCEPTION_FID = WeightsSpec(
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256_prefix="6726825d",
)
ALEXNET_LPIPS = WeightsSpec(
    filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256_prefix="7be5be79",
)
KNOWN_WEIGHTS: dict[str, WeightsSpec] = {s.filename: s for s in (INCEPTION_FID, ALEXNET_LPIPS)}

_CHUNK = 1 << 20
# Keyed on (path, mtime, size) so a file replaced in place is re-hashed, while repeated metric
# calls in one process do not re-read a 100 MB checkpoint.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks and cached per (path, mtime, size) in-process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder, `$TORCH_HOME/hub/checkpoints` (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _candidates(filename: str) -> list[Path]:
    env_dir = os.environ.get("FAL_WEIGHTS_DIR")
    found = [Path(env_dir).expanduser() / filename] if env_dir else []
    return found + [hub_checkpoint_dir() / filename]


def _missing_message(filename: str, url: str | None) -> str:
    where = hub_checkpoint_dir()
    source = f"download {url}" if url else f"get {filename}"
    env_hint = " (or into $FAL_WEIGHTS_DIR)"
    return (
        f"weights {filename} not found and fal never downloads: {source} and put it into {where}/"
        f"{env_hint}, or pass --weights PATH"
    )


def find_weights(
    filename: str,
    explicit: Path | None,
    sha256_prefix: str,
    allow_unofficial: bool = False,
    url: str | None = None,
) -> tuple[Path, bool]:
    """Find a weights file and check it is the official one; returns (path, official).

    Search order: `explicit` (must exist), `$FAL_WEIGHTS_DIR/filename`, `torch.hub.get_dir()/checkpoints/filename`.
    Official means SHA-256 of the file starts with `sha256_prefix` (torch hub's naming convention).
    A mismatch is an error unless `allow_unofficial`, which returns official=False so callers label the value
    as not comparable. `url` defaults to the known download address of `filename`, used in the error message.
    """
    if url is None and filename in KNOWN_WEIGHTS:
        url = KNOWN_WEIGHTS[filename].url
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FalError(f"{path}: no such weights file (check --weights, or drop it to search the torch hub cache)")
    else:
        path = next((p for p in _candidates(filename) if p.is_file()), None)
        if path is None:
            raise FalError(_missing_message(filename, url))
    official = sha256_of(path).startswith(sha256_prefix.lower())
    if not official and not allow_unofficial:
        raise FalError(
            f"{path}: not the official {filename} (SHA-256 does not start with {sha256_prefix}); "
            f"re-download it from {url or 'its official source'}, or pass --allow-unofficial-weights "
            "to compute a value labelled not comparable"
        )
    return path, official
