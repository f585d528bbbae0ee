"""`fal report RUN_DIR`: one self-contained HTML page of a run, to paste from into a paper draft.

The page holds the training losses drawn with matplotlib, the per-step metric tables of every `fal evaluate`
JSON in the run folder, the newest sample grids (with D's heat maps) and the resolved recipe — every picture a
base64-embedded PNG, so the file can be mailed or archived alone.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from falcli.commands import report_compare
from falcli.commands.evaluate.checkpoints import metric_table
from falcli.commands.report_page import STYLE, common_parts, embed_png, escape, figure_png, plot_logged, \
    read_evaluations, read_training_log  # noqa: F401  (read_training_log: part of this module's API)
from falcli.core import checkpoint
from falcli.errors import FalError
from falcli.fileio import write_new_file
from falcli.tasks import TASKS

SAMPLES_SHOWN = 3                       # newest sample pictures on the page


def write_report(runs: Path | list[Path], out: Path | None = None) -> Path:
    """Write the page of one run (RUN/report.html) or the comparison of several (compare.html in their common
    folder, or in the folder of runs given); `out` replaces the default and is never overwritten. Returns the
    path written."""
    given = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not given:
        raise FalError("pass at least one run folder, e.g. `fal report runs/toy`")
    if out is not None and Path(out).exists():
        raise FalError(f"{out}: already exists; choose another --out or delete it")
    single = len(given) == 1 and given[0].is_dir() and (given[0] / "recipe.yaml").is_file()
    if single:
        folder, stem, data = given[0], "report", render(given[0]).encode()
    else:
        if len(given) == 1 and not given[0].is_dir():
            raise FalError(f"{given[0]}: no such run folder; pass a folder written by `fal train` (e.g. runs/toy)")
        found = report_compare.find_runs(given)
        if len(found) == 1:
            folder, stem, data = found[0], "report", render(found[0]).encode()
        else:
            folder = given[0] if len(given) == 1 else Path(*common_parts(
                [r.resolve().parts for r in found]))
            stem, data = "compare", report_compare.render(found).encode()
    if out is not None:
        if not write_new_file(Path(out), data):
            raise FalError(f"{out}: already exists; choose another --out or delete it")
        return Path(out)
    for n in range(1, 10_000):
        path = folder / (f"{stem}.html" if n == 1 else f"{stem}-{n}.html")
        if write_new_file(path, data):
            return path
    raise FalError(f"{folder}: too many {stem}-N.html files; pass --out PATH")


def render(run_dir: Path) -> str:
    """The page as one HTML string."""
    # The recipe in force now: the newest one a resume wrote (`fal train` keeps each), else the first.
    current = max(run_dir.glob("recipe-resumed-at-*.yaml"), default=run_dir / "recipe.yaml")
    recipe_text = current.read_text()
    try:
        recipe = yaml.safe_load(recipe_text) or {}
    except yaml.YAMLError:
        raise FalError(f"{current}: not valid YAML; the run folder is damaged") from None
    notes: list[str] = []
    records = read_training_log(run_dir / "metrics.jsonl", notes)
    name = recipe.get("name") or run_dir.name
    parts = [f"<h1>{escape(name)}</h1>", f"<p class='meta'>{escape(_summary(run_dir, recipe, records))}</p>"]

    parts.append("<h2>Training losses</h2>")
    curves = loss_curves_png(records)
    parts.append(embed_png(curves, "loss curves") if curves else "<p class='note'>No training losses in metrics.jsonl.</p>")

    parts.append("<h2>Metrics per feedback step</h2>")
    evaluations = read_evaluations(run_dir, notes)
    if not evaluations:
        parts.append(f"<p class='note'>No metrics yet. Run <code>fal evaluate all --ckpt {escape(str(run_dir))}</code> "
                     f"(it writes {escape(str(run_dir / 'evaluate-all.json'))}; other metrics write "
                     f"evaluate-&lt;metric&gt;.json), then <code>fal report {escape(str(run_dir))}</code> again.</p>")
    for path, evaluation in evaluations:
        parts.append(_evaluation_html(path, evaluation))

    parts.append("<h2>Samples</h2>")
    samples = sorted((run_dir / "samples").glob("*.png"))[-SAMPLES_SHOWN:]
    if samples:
        parts.append(f"<p class='meta'>{escape(_samples_caption(recipe.get('task')))}</p>")
    else:
        parts.append("<p class='note'>No sample pictures in samples/.</p>")
    for path in reversed(samples):  # newest first
        parts.append(f"<figure>{embed_png(path.read_bytes(), path.name)}<figcaption>{escape(path.name)}</figcaption></figure>")

    parts.append("<h2>Recipe (resolved)</h2>")
    parts.append(f"<pre>{escape(recipe_text)}</pre>")
    parts += [f"<p class='note'>note: {escape(n)}</p>" for n in notes]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(name)} — fal report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def _summary(run_dir: Path, recipe: dict, records: list[dict]) -> str:
    trained = records[-1]["iteration"] if records else 0
    planned = (recipe.get("train") or {}).get("iterations")
    steps = (recipe.get("feedback") or {}).get("steps")
    newest = checkpoint.list_checkpoints(run_dir / "checkpoints")
    parts = [f"task {recipe.get('task')}", f"{trained} of {planned} iterations logged"]
    if steps is not None:
        parts.append(f"feedback steps {steps}" + (" (plain GAN)" if steps == 1 else ""))
    parts.append(f"newest checkpoint {newest[-1].name}" if newest else "no checkpoint")
    return " · ".join(parts) + f" · {run_dir}"


def _samples_caption(task: str | None) -> str:
    """What the run's sample pictures show, as its task says (a recipe without a known task: the usual grid)."""
    if task in TASKS:
        return TASKS[task].samples_caption
    return ("First row: real data; then for each step t its samples and, below, D's map σ(D) "
            "(red = fake, blue = real).")


# --- the pieces of the page ---

def loss_curves_png(records: list[dict[str, Any]]) -> bytes | None:
    """Loss curves (Agg canvas, no display needed): G and D; G per feedback step; D's terms; G's other terms."""
    keys = list(dict.fromkeys(k for r in records for k in r if k == "loss" or k.startswith("loss/")))
    steps = [k for k in keys if re.fullmatch(r"loss/G/step\d+", k)]
    groups = {
        "G and D": [k for k in keys if k in ("loss", "loss/G", "loss/D")],
        "G per feedback step": steps,
        "D's terms": [k for k in keys if k.startswith("loss/D/")],
        "G's other terms": [k for k in keys if k.startswith("loss/G/") and k not in steps],
    }
    groups = {title: members for title, members in groups.items() if members}
    if not groups:
        return None
    figure = Figure(figsize=(4.2 * len(groups), 3.2))
    FigureCanvasAgg(figure)
    for ax, (title, members) in zip(figure.subplots(1, len(groups), squeeze=False)[0], groups.items()):
        for key in members:
            plot_logged(ax, records, key, key.split("/", 1)[-1], linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return figure_png(figure)


def _evaluation_html(path: Path, evaluation: dict[str, Any]) -> str:
    ck = evaluation.get("checkpoint")
    if ck:
        what = (f"{ck.get('path')} — iteration {ck.get('iteration')}, {ck.get('generator')}, {ck.get('steps')} "
                f"steps (trained with {ck.get('trained_steps')}), {ck.get('num_samples')} samples per step")
    else:
        what = " vs ".join(str(v) for v in (evaluation.get("inputs") or {}).values())
    parts = [f"<h3>{escape(str(evaluation.get('metric')))} <span class='meta'>({escape(path.name)})</span></h3>",
             f"<p class='meta'>{escape(what)}</p>"]
    label = (evaluation.get("protocol") or {}).get("label")
    if label:
        parts.append(f"<p class='meta'>{escape(label)}</p>")
    rows = evaluation["rows"]
    if rows:
        header, lines = metric_table(rows)
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr><td>" + escape(line[0]) + "</td>" + "".join(f"<td class='v'>{escape(v)}</td>" for v in line[1:])
                       + "</tr>" for line in lines)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts += [f"<p class='note'>note: {escape(n)}</p>" for n in evaluation.get("notes") or []]
    return "\n".join(parts)


