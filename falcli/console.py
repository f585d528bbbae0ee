"""The one rich Console, the error line, the resolved-recipe view and the progress bar."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.tree import Tree

from falcli.config import Recipe, defaults_dict, recipe_to_dict

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    error_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)


def print_recipe(recipe: Recipe) -> None:
    """The resolved recipe as a tree; values that differ from the defaults are marked (yellow, '*')."""
    tree = Tree(f"[bold]{recipe.name}[/] (task {recipe.task})")
    _add(tree, recipe_to_dict(recipe), defaults_dict(recipe))
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
    """Yields update(done, total, stats): a rich bar that also shows the latest logged losses."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[stats]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=total, stats="")

        def update(done: int, total: int, stats: dict | None = None, description: str | None = None) -> None:
            fields = {"description": description} if description else {}
            if stats:
                shown = [f"{k.split('/', 1)[1]}={v:.3f}" for k, v in stats.items()
                         if k in ("loss/G", "loss/D")]
                fields["stats"] = " ".join(shown)
            progress.update(task_id, completed=done, total=total, **fields)

        yield update
