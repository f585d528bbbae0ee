"""The one rich Console, the error line, the resolved-recipe view and the progress bar."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.tree import Tree

from falcli.config import Recipe, recipe_to_dict

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    # escaped: a message quotes paths and values, whose brackets are not markup
    error_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, markup=True)


def print_recipe(recipe: Recipe, defaults: dict) -> None:
    """The resolved recipe as a tree; values that differ from `defaults` (resolve.defaults_dict: the same shape,
    each field's default) are marked (yellow, '*')."""
    tree = Tree(f"[bold]{recipe.name}[/] (task {recipe.task})")
    _add(tree, recipe_to_dict(recipe), defaults)
    console.print(tree)


def _add(node: Tree, values: dict, defaults: dict) -> None:
    for key, value in values.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict):
            _add(node.add(f"[bold]{key}[/]"), value, default or {})
        elif value != default and key not in ("task", "name"):
            node.add(f"[yellow]{key}: {value!r} *[/]")
        else:
            node.add(f"{key}: {value!r}")


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator:
    """Yields update(done, total, stats): a rich bar that also shows the latest logged losses.

    The bar is drawn at the first update, not on entry: work that refuses its inputs (no prepared dataset, a
    taken folder) stops before any update, so the user sees the one error line, not a 0/595000 bar above it.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
    with contextlib.ExitStack() as stack:
        started: list = []  # [progress, task id] once drawn

        def update(done: int, total: int, stats: dict | None = None, description: str | None = None) -> None:
            if not started:
                progress = stack.enter_context(Progress(*columns, console=console, transient=False))
                started.extend([progress, progress.add_task(description_, total=total, stats="")])
            progress, task_id = started
            fields = {"description": description} if description else {}
            if stats:
                shown = [f"{k.split('/', 1)[1]}={v:.3f}" for k, v in stats.items()
                         if k in ("loss/G", "loss/D")]
                fields["stats"] = " ".join(shown)
            progress.update(task_id, completed=done, total=total, **fields)

        description_ = description
        yield update


@contextlib.contextmanager
def stage_progress() -> Iterator:
    """Yields update(description, done, total): one progress_bar whose description names the stage at hand
    (`fal prepare`, `sample`, `refine`, `evaluate`); drawn at the first update, so early errors print no bar."""
    with progress_bar("", 1) as update:
        yield lambda description, done, total: update(done, max(total, 1), None, description=description)
