"""Checkpoints: state_dicts, optimizer states, RNG states (as tensors) and the recipe, never pickled modules.

Loadable with `torch.load(weights_only=True)`; written atomically (temp file, fsync, rename), so a crash in
the middle of a save leaves the previous checkpoint intact and the new one absent.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from falcli.errors import FalError
from falcli.fileio import write_atomic

FORMAT_VERSION = 1
_NAME = re.compile(r"^iter-(\d{7,})\.pt$")


def checkpoint_name(iteration: int) -> str:
    return f"iter-{iteration:07d}.pt"


def rng_state() -> dict[str, Any]:
    """Every RNG the training step draws from, as tensors (so weights_only loading accepts them)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """torch.save to `path` via a temporary sibling: fsync the data, rename, fsync the directory."""
    write_atomic(path, lambda handle: torch.save(payload, handle), durable=True)


def check_file(path: Path) -> None:
    """Refuse, without reading it, what cannot be a checkpoint: a missing file, or one that is no zip archive (what
    torch.save writes) — a text file or a recipe, for which "truncated, use an earlier one" would be wrong advice."""
    if not path.is_file():
        raise FalError(f"{path}: no such checkpoint file")
    with path.open("rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise FalError(f"{path}: not a checkpoint (fal writes them as RUN/checkpoints/iter-N.pt); pass one of "
                           f"those or a run folder")


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `fal train`; FalError if it is missing, truncated or not ours."""
    path = Path(path)
    check_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated zip, a foreign pickle inside one: all mean "not a usable file"
        raise FalError(f"{path}: not a readable checkpoint; it may be truncated — use an earlier one from the "
                       f"same folder") from None
    if isinstance(payload, dict) and payload.get("format") == "fal-judge":
        raise FalError(f"{path}: a judge (a {payload.get('task')} that scores samples), not a GAN checkpoint; pass "
                       f"it as the metric's judge (--seg-weights, --judge, --feature-space judge:PATH)")
    if not isinstance(payload, dict) or payload.get("format") != "fal-checkpoint":
        raise FalError(f"{path}: not a fal checkpoint (written by another tool?)")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise FalError(f"{path}: written by a newer fal (format {payload['version']}); upgrade fal")
    return payload


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_valid(directory: Path, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; a corrupt newest one is reported and skipped, never deleted."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load(path)
        except FalError as error:
            warn(f"skipping {error}")
    return None


def prune(directory: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` checkpoints (None keeps all)."""
    if keep is None:
        return
    for path in list_checkpoints(directory)[:-keep]:
        path.unlink()


def resolve(path: Path) -> Path:
    """A checkpoint file as given, or the newest one of a run folder (what --ckpt accepts everywhere)."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints")
        if not found:
            raise FalError(f"{path}: no checkpoint in {path / 'checkpoints'}; pass a .pt file or a run folder "
                           f"written by `fal train`")
        return found[-1]
    return path  # load() says what is wrong with a missing or unreadable file


def load_weights(module: torch.nn.Module, state: Any, path: Path, name: str) -> None:
    """`module.load_state_dict(state)`, or one line when the stored weights are not of the networks the stored
    recipe describes (a recipe edited or swapped after the checkpoint was written)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as error:
        kind = "missing or unexpected layers" if "key" in str(error).lower() else "other shapes"
        raise FalError(f"{path}: its {name} weights do not fit the networks of its recipe ({kind}); the checkpoint "
                       f"was altered or its recipe swapped: use the checkpoint as `fal train` wrote it") from None


# --- the run folder: one writer at a time, and a clean state to resume from ---

LOCK_NAME = ".lock"
_TMP = re.compile(r"^\.iter-\d{7,}\.pt\.tmp-\d+$")
_HELD: dict[Path, int] = {}  # run folder -> descriptor of its lock, held by this process
_CREATED: set[Path] = set()  # run folders that lock_run made (removed again if the start fails)


def lock_run(run_dir: Path) -> None:
    """Take RUN/.lock (flock, holding our PID) or refuse in one line naming the live writer.

    The kernel drops the lock when the process ends, however it ends (kill -9 included), so a stale lock
    cannot outlive its writer. Held until `unlock_run` or the end of the process.
    """
    key = Path(run_dir).resolve()
    if key in _HELD:  # an earlier run() of this process that failed: its lock is ours to renew
        unlock_run(run_dir)
    path = Path(run_dir) / LOCK_NAME
    try:
        if not Path(run_dir).exists():
            _CREATED.add(key)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = _busy(run_dir, descriptor)
                os.close(descriptor)
                raise busy from None
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                break
            os.close(descriptor)  # the file was replaced while we waited: lock the one now in place
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
    except OSError as error:
        raise FalError(f"{path}: cannot lock the run folder ({error.strerror}); choose a writable --out") from None
    _HELD[key] = descriptor


def _busy(run_dir: Path, descriptor: int) -> FalError:
    """The refusal naming the live writer, whose PID the lock file holds."""
    holder = os.read(descriptor, 32).decode(errors="replace").strip() or "another process"
    return FalError(f"{run_dir} is being written by process {holder} (a `fal train` running now); wait for it or "
                    f"stop it, or choose another --out")


def check_unlocked(run_dir: Path) -> None:
    """Refuse now, taking nothing and creating nothing, a run folder another live process is writing — before
    minutes of data loading, not after them (`lock_run` takes the lock itself once the inputs are ready)."""
    path = Path(run_dir) / LOCK_NAME
    if Path(run_dir).resolve() in _HELD or not path.is_file():
        return
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return  # unreadable: lock_run says why, in its place
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(run_dir, descriptor) from None
    finally:
        os.close(descriptor)


def unlock_run(run_dir: Path) -> None:
    """Release the lock taken by `lock_run` (the file stays: removing it would race with a waiting writer)."""
    descriptor = _HELD.pop(Path(run_dir).resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def abandon_run(run_dir: Path) -> None:
    """After a failed start: release the lock, and remove the folder if lock_run made it and it holds nothing
    else (so that the same command, corrected, starts afresh)."""
    key = Path(run_dir).resolve()
    if key not in _HELD:
        return
    unlock_run(run_dir)
    if key in _CREATED and not run_files(run_dir):
        (Path(run_dir) / LOCK_NAME).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(run_dir).rmdir()
    _CREATED.discard(key)


def run_files(run_dir: Path) -> list[Path]:
    """What a run folder holds, its lock file aside."""
    return [p for p in Path(run_dir).iterdir() if p.name != LOCK_NAME] if Path(run_dir).is_dir() else []


def discard_temporary(directory: Path) -> None:
    """Remove half-written checkpoints (`.iter-N.pt.tmp-PID`) of writers that died mid-save; call it holding
    the run's lock, so that no live writer owns them."""
    if directory.is_dir():
        for path in directory.iterdir():
            if _TMP.match(path.name):
                path.unlink(missing_ok=True)


def truncate_log(path: Path, iteration: int) -> None:
    """Cut metrics.jsonl back to the checkpoint a run resumes from: the lines logged after it (and a line torn
    by a crash mid-write) are dropped, so the resumed run writes each iteration's line exactly once."""
    if not path.is_file():
        return
    kept = []
    with open(path, "rb") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn or damaged line: its iteration will be logged again
            if not line.endswith(b"\n"):
                continue
            if isinstance(record, dict) and isinstance(record.get("iteration"), int) and \
                    record["iteration"] > iteration:
                break  # lines are in order: everything from here on is after the checkpoint
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(b"".join(kept))
    os.replace(tmp, path)
