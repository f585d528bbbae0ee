"""Writing files so that a crash never leaves half of one: atomic replacement, create-only writes, JSONL appends.

A reader sees the old file or the new one, never a mix: data goes to a temporary sibling (same folder, so the
rename stays on one file system) that is then renamed over the target.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: Path, data: bytes | str | Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Replace `path` with `data` (bytes, text, or a function writing to the open file) all at once.

    durable: fsync the data before the rename and the folder after it, so the new file survives a power cut
    (checkpoints); without it a crash can lose the new file but never leaves a damaged one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode() if isinstance(data, str) else data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def write_new_file(path: Path, data: bytes) -> bool:
    """Write `path` atomically unless it exists (False then): a temporary sibling, then a hard link, which
    fails instead of replacing a file that appeared in the meantime."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: check, then rename
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line (a run's or a judge's metrics.jsonl); readers skip a line cut short by a crash."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
