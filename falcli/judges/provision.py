"""Judges on demand: the one place where a command finds, or trains, the judge an evaluation needs.

Called by commands only (`fal evaluate`, `fal ablate`); metrics and tasks receive the judge's path. One rule
for every judge:

- **Where:** `<cache>/judges/<judge>-<key>/judge.pt`, with <cache> = $FAL_CACHE, else $XDG_CACHE_HOME/fal,
  else ~/.cache/fal. The key hashes what the judge was trained on: its resolved recipe, and for a prepared
  folder its resolved path and the names, sizes and modification times of its files (built-in data are
  defined by the recipe alone). So the same run evaluated from any folder finds the same judge, and data
  prepared again get a new one. `--judge PATH`, `--seg-weights PATH`, `--feature-space judge:PATH` bypass it.
- **When:** on first use, from the shipped judge recipe with the run's data, after everything that could
  refuse the evaluation has been checked; a progress bar and one line say so.
- **Interrupted:** the judge's training is checkpointed (judges/base.py `fit`), so the next evaluation that
  needs it continues where it stopped.
- **Two at once:** the run-folder lock of core/checkpoint.py; a second evaluation needing the same judge waits
  for the first (saying which process it waits for) and then uses its judge.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml
from rich.errors import LiveError

from falcli.config import SHIPPED_RECIPES, recipe_to_dict
from falcli.console import console, progress_bar
from falcli.core import checkpoint
from falcli.errors import FalError
from falcli.judges import JUDGES
from falcli.judges.base import WEIGHTS, JudgeRecipe, fit, judge_recipe_from_dict, resume_point

RECIPES = SHIPPED_RECIPES               # where the judge recipes come from (tests point it at shrunk copies)
WAIT_POLL_S = 2.0                       # how often a waiting evaluation looks whether the lock is free
KEY_VERSION = 1                         # raise to give every judge a new cache folder (a changed training loop)


def cache_root() -> Path:
    """$FAL_CACHE, else $XDG_CACHE_HOME/fal, else ~/.cache/fal."""
    if os.environ.get("FAL_CACHE"):
        return Path(os.environ["FAL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fal"


def judge_recipe(need) -> JudgeRecipe:
    """The judge recipe of a task's JudgeNeed: the shipped recipe `need.recipe` with `need.overrides` set."""
    path = Path(RECIPES) / need.recipe
    if not path.is_file():
        raise FalError(f"no judge recipe {path} (this fal install ships no recipes?); pass the judge's path "
                       f"instead (--judge, --seg-weights or --feature-space judge:PATH)")
    raw = yaml.safe_load(path.read_text()) or {}
    raw.setdefault("name", path.stem)
    for key, value in need.overrides.items():
        section, _, name = key.rpartition(".")
        node = raw
        for part in filter(None, section.split(".")):
            node = node.setdefault(part, {})
        node[name] = value
    if raw.get("task") not in JUDGES:
        raise FalError(f"{path}: task {raw.get('task')!r} is not a judge; valid judges: {', '.join(sorted(JUDGES))}")
    return judge_recipe_from_dict(JUDGES[raw["task"]], raw, source=str(path))


def data_identity(recipe: JudgeRecipe) -> dict[str, Any] | None:
    """What names a prepared training folder: its resolved path and (name, size, mtime) of every file."""
    folder = JUDGES[recipe.task].data_folder(recipe)
    if folder is None:
        return None
    folder = Path(folder).resolve()
    files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in folder.rglob("*") if p.is_file())
    return {"folder": str(folder), "files": files}


def judge_dir(recipe: JudgeRecipe) -> Path:
    """<cache>/judges/<judge>-<key>: the folder of the judge trained from `recipe` on its data."""
    named = {"version": KEY_VERSION, "recipe": recipe_to_dict(recipe), "data": data_identity(recipe)}
    key = hashlib.sha256(json.dumps(named, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_root() / "judges" / f"{recipe.task}-{key}"


def fill(paths, needs: Iterable, device: torch.device, slots: Iterable[str] | None = None, say=None):
    """`paths` (a dataclass such as EvaluatePaths) with each empty slot a need names filled by `provide`.

    Every recipe is built first, so a need that cannot apply refuses before any judge trains."""
    wanted = [n for n in needs if getattr(paths, n.slot) is None and (slots is None or n.slot in set(slots))]
    recipes = [(need.slot, judge_recipe(need)) for need in wanted]
    return dataclasses.replace(paths, **{slot: provide(recipe, device, say) for slot, recipe in recipes})


def cached(paths, needs: Iterable) -> tuple[Any, list[str]]:
    """`paths` with each empty slot filled from the cache where its judge is trained already — nothing is
    trained (`fal refine` scores with the judges there are) — and one line per judge that is not there."""
    filled, missing = {}, []
    for need in needs:
        if getattr(paths, need.slot) is not None:
            continue
        recipe = judge_recipe(need)
        weights = judge_dir(recipe) / WEIGHTS
        if weights.is_file():
            filled[need.slot] = weights
        else:
            missing.append(f"the {recipe.task} judge for this run's data is not trained yet ({weights.parent}); "
                           f"`fal evaluate all --ckpt RUN` trains it on first use")
    return dataclasses.replace(paths, **filled), missing


def provide(recipe: JudgeRecipe, device: torch.device, say: Callable[[str], None] | None = None) -> Path:
    """The judge.pt trained from `recipe`: from the cache, or trained (or continued) there now."""
    say = say or _say
    folder = judge_dir(recipe)
    weights = folder / WEIGHTS
    if weights.is_file():
        return weights
    _lock(folder, recipe, say)
    try:
        if weights.is_file():  # trained meanwhile by the evaluation we waited for
            return weights
        return _train(recipe, folder, device, say)
    except FalError:
        checkpoint.abandon_run(folder)  # a refusal before the first checkpoint leaves no folder behind
        raise
    except (KeyboardInterrupt, SystemExit) as stop:  # Ctrl-C, SIGTERM: the CLI's message says how to go on
        stop.resume_hint = (f"the judge {recipe.task} continues from its last checkpoint the next time an "
                            f"evaluation needs it ({folder})")
        raise
    finally:
        checkpoint.unlock_run(folder)


def _train(recipe: JudgeRecipe, folder: Path, device: torch.device, say: Callable[[str], None]) -> Path:
    start, total = resume_point(folder), recipe.train.iterations
    # The rate is timed from the first finished iteration on: what comes before it (rendering the data, the first
    # step's one-off costs) was counted as if every iteration paid it, and a 69 s judge announced ~20 min.
    announced, clock = [], [time.perf_counter(), start]

    def announce(done: int) -> None:
        rate = (time.perf_counter() - clock[0]) / max(1, done - clock[1])
        minutes = max(1, round(rate * (total - done) / 60))
        where = "first use" if start == 0 else f"continuing at iteration {start} of {total}"
        say(f"training judge {recipe.task} into {folder} ({where}, ~{minutes} min on {device}); later "
            f"evaluations reuse it")
        announced.append(True)

    with progress_bar(f"train judge {recipe.task}", total) as update:
        update = _tolerant(update)

        def on_progress(done: int, total_: int, logged: dict | None) -> None:
            if done == start + 1 and done < total_:
                clock[:] = [time.perf_counter(), done]
            if not announced and (done - clock[1] >= 3 or done == total_):
                announce(done)
            update(done, total_, None)

        return fit(JUDGES[recipe.task], recipe, folder, device, on_progress)


def _lock(folder: Path, recipe: JudgeRecipe, say: Callable[[str], None]) -> None:
    """Take the judge folder's lock; while another live process holds it, wait (saying for whom)."""
    waited = False
    while True:
        try:
            checkpoint.lock_run(folder)
            return
        except FalError:
            holder = _live_holder(folder)
            if holder is None:
                raise
            if not waited:
                say(f"judge {recipe.task} is being trained into {folder} by process {holder} (another "
                    f"evaluation); waiting for it to finish (Ctrl-C stops waiting, nothing is lost)")
                waited = True
            time.sleep(WAIT_POLL_S)


def _live_holder(folder: Path) -> int | None:
    """The PID in the folder's lock file when that process is alive (lock_run failed because it holds it)."""
    try:
        pid = int((folder / checkpoint.LOCK_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        return pid
    except OSError:
        return None
    return pid


def _say(message: str) -> None:
    console.print(message, markup=False, soft_wrap=True)


def _tolerant(update):
    """The bar's update, turned off if the terminal cannot draw a second live display (older rich)."""
    state = {"on": True}

    def call(*args, **kwargs) -> None:
        if state["on"]:
            try:
                update(*args, **kwargs)
            except LiveError:
                state["on"] = False
    return call

