"""Recipes from files and checkpoints: read the YAML, apply `--set` overrides, find the task (or judge) that
`task:` names, build its typed Recipe (falcli/config.py) and check it across sections and against this
machine's memory.

Resolving a recipe of the translation, image or voxel task imports no torch (their sections come from
falcli/tasks/sections.py), so `fal train RECIPE --dry-run` stays light; the registries of networks (TASKS,
JUDGES) and the parameter estimate (falcli/nn/budget.py, on torch's meta device) are imported only when needed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from falcli.config import Recipe, UnknownSection, assemble, check_keys, defaults_of, find_recipe
from falcli.errors import FalError
from falcli.tasks.sections import SECTIONS, TASK_NAMES


def load_recipe(path: Path | str, overrides: list[str] | tuple[str, ...] = (), quick: bool = False) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, and build the typed Recipe (a JudgeRecipe
    when the task names a judge). `quick`: see recipe_from_dict."""
    path = find_recipe(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FalError(f"{path}: not a text file (a checkpoint or other binary?); a recipe is a YAML file such as "
                       f"recipes/toy.yaml") from None
    except OSError as error:
        raise FalError(f"{path}: cannot read the recipe ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise FalError(f"{path}: not valid YAML{where}; fix the file and retry") from None
    if not isinstance(raw, dict):
        raise FalError(f"{path}: a recipe must be a YAML mapping with at least a `task:` key")
    in_file = set(raw)
    raw = apply_overrides(raw, overrides)
    raw.setdefault("name", path.stem)
    try:
        return recipe_from_dict(raw, source=str(path), quick=quick)
    except UnknownSection as error:
        # reported against the file; when a --set brought the section, the --set is what to fix
        brought = [item for item in overrides if item.partition("=")[0].split(".")[0] == error.key]
        if error.key in in_file or not brought:
            raise
        raise FalError(f"--set {brought[-1]}: {error.detail}") from None


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Return a copy of `raw` with dotted `a.b=value` overrides; values use YAML syntax (`1e-4`, `[1, 2]`)."""
    raw = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise FalError(f"--set {item!r}: expected key=value, e.g. --set train.iterations=500")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise FalError(f"--set {item!r}: the value is not valid YAML") from None
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FalError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def recipe_from_dict(raw: dict, source: str = "recipe", quick: bool = False) -> Recipe:
    """Build a Recipe from a plain dict (a YAML file, or the copy stored in a checkpoint).

    The networks' parameters are counted on the meta device and refused when they cannot be trained on any
    device here (falcli/nn/budget.check_parameters; the whole step is checked by `fal train`, check_training).
    `quick` (for `fal train --dry-run`) skips that count, which imports torch, when no integer of the model
    and feedback sections is above its default: such networks are no larger than the task's published ones
    (well under a GiB to train), and the count is made anyway when the run starts.
    """
    if not isinstance(raw, dict):
        raise FalError(f"{source}: a recipe must be a mapping with at least a `task:` key")
    check_keys(raw, source)
    task_name = raw.get("task")
    if not isinstance(task_name, str):
        raise FalError(f"{source}: task must be one name, got {task_name!r}; valid tasks: {_valid_names()}")
    if task_name not in TASK_NAMES:
        return _judge_recipe(task_name, raw, source)
    sections = SECTIONS.get(task_name) or _tasks()[task_name]
    recipe = assemble(raw, Recipe, {"data": sections.DataConfig, "model": sections.ModelConfig}, source)
    sections.validate(recipe)
    if not (quick and stays_torch_free(recipe)):
        from falcli.nn.budget import check_parameters  # keeps --help fast (and --dry-run torch-free): meta device

        check_parameters(recipe, _tasks()[task_name], source)
    return recipe


def _tasks() -> dict:
    from falcli.tasks import TASKS  # keeps --help fast (and --dry-run torch-free): every task's networks

    return TASKS


def _judges() -> dict:
    from falcli.judges import JUDGES  # keeps --help fast (and --dry-run torch-free): the judges' networks

    return JUDGES


def _valid_names() -> str:
    return ", ".join(sorted(TASK_NAMES) + sorted(_judges()))


def _judge_recipe(name: str, raw: dict, source: str):
    """A supervised judge's recipe (classifier, segmenter), trained by falcli.judges."""
    judges = _judges()
    if name not in judges:
        raise FalError(f"{source}: unknown task {name!r}; valid tasks: {_valid_names()}")
    from falcli.judges.base import judge_recipe_from_dict  # keeps --help fast (and --dry-run torch-free)

    return judge_recipe_from_dict(judges[name], raw, source)


def stays_torch_free(recipe) -> bool:
    """`fal train --dry-run` shows this recipe without importing torch: its task's sections are torch-free and
    its networks default-sized (so the parameter count, and the memory estimate, wait until training starts)."""
    sections = SECTIONS.get(recipe.task)
    return sections is not None and _default_sized(recipe, sections)


def _default_sized(recipe: Recipe, sections) -> bool:
    """No integer of the model and feedback sections is above the task's default."""
    pairs = ((recipe.model, sections.ModelConfig()), (recipe.feedback, type(recipe.feedback)()))
    for config, default in pairs:
        for field in dataclasses.fields(config):
            value, base = getattr(config, field.name), getattr(default, field.name)
            if isinstance(value, int) and not isinstance(value, bool) and isinstance(base, int) and value > base:
                return False
    return True


def defaults_dict(recipe) -> dict:
    """The same shape as recipe_to_dict, holding each field's default (to mark what a recipe changed)."""
    owner = SECTIONS.get(recipe.task) or (_tasks() if recipe.task in TASK_NAMES else _judges())[recipe.task]
    return defaults_of(recipe, {"data": owner.DataConfig, "model": owner.ModelConfig})


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


# --- checkpoints: the recipe they hold and the networks it builds ---

@dataclass
class Restored:
    """A checkpoint rebuilt through its task, in eval mode; unpacks as (recipe, G, D, G_ema, payload).

    Which network each caller gets: `sampler` (G_ema when the run kept one, else G) for sample pictures,
    `fal sample`, `fal refine`, `fal evaluate`, ablations and `fal edit-heatmaps`; the raw `G` for the toy
    experiment's table (as it always was) and for resuming."""

    recipe: Recipe
    G: Any
    D: Any
    G_ema: Any
    payload: dict

    def __iter__(self):
        return iter((self.recipe, self.G, self.D, self.G_ema, self.payload))

    @property
    def sampler(self):
        return self.G_ema if self.G_ema is not None else self.G

    @property
    def generator(self) -> str:
        """Which network `sampler` is, for the JSON of an evaluation."""
        return generator_name(self.payload)


def generator_name(payload: dict) -> str:
    """"G_ema" when the checkpoint holds one, else "G": the network `Restored.sampler` is."""
    return "G_ema" if payload.get("G_ema") is not None else "G"


def restore(path: Path, device, expect_task: str | None = None) -> Restored:
    """Rebuild a checkpoint (or a run folder's newest) through its task; FalError for another task than
    `expect_task`, an unknown task, or a file that is not a checkpoint."""
    from falcli.core import checkpoint  # keeps --help fast (and --dry-run torch-free): torch.load

    path = checkpoint.resolve(path)
    payload = checkpoint.load(path)
    if expect_task is not None and payload["task"] != expect_task:
        raise FalError(f"{path}: a checkpoint of task {payload['task']!r}, expected {expect_task!r}")
    if payload["task"] not in TASK_NAMES:
        raise FalError(f"{path}: task {payload['task']!r} is unknown to this fal version")
    recipe = recipe_from_dict(payload["recipe"], source=str(path))
    task = _tasks()[recipe.task]
    G, D = task.make_networks(recipe)
    checkpoint.load_weights(G, payload["G"], path, "G")
    checkpoint.load_weights(D, payload["D"], path, "D")
    G_ema = None
    if payload.get("G_ema") is not None:
        G_ema = task.make_networks(recipe)[0]
        checkpoint.load_weights(G_ema, payload["G_ema"], path, "G_ema")
        G_ema = G_ema.to(device).eval()
    return Restored(recipe, G.to(device).eval(), D.to(device).eval(), G_ema, payload)
