"""`fal report RUN RUN …` (or a folder of runs, such as an ablation's): several runs on one page.

The page overlays the runs' loss curves, puts every run's per-step metrics in one table (a row per run and
step) and, where runs differ only by their seed, a second table of mean ± std over those seeds; it lists the
recipe keys whose values differ between runs and shows the newest sample picture of each run side by side.
Like the single-run page it is one self-contained HTML file (pictures embedded as base64 PNGs).
"""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from falcli.errors import FalError
from falcli.commands.report_page import STYLE, embed_png, escape, figure_png, plot_logged, read_evaluations, \
    read_training_log

COMPARE_STYLE = """
.samples { display: flex; flex-wrap: wrap; gap: 1em; } .samples figure { flex: 1 1 300px; margin: 0; }
td.k { font-family: ui-monospace, monospace; font-size: 0.9em; }
"""
SEARCH_DEPTH = 2                        # how deep a folder of runs is searched for run folders


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders named directly, or found inside the folders given (an ablation's `<out>/<config>-s<seed>/`)."""
    runs: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise FalError(f"{path}: no such folder; pass run folders written by `fal train` (e.g. runs/toy)")
        if (path / "recipe.yaml").is_file():
            runs.append(path)
            continue
        found = sorted(p.parent for depth in range(1, SEARCH_DEPTH + 1)
                       for p in path.glob("/".join(["*"] * depth) + "/recipe.yaml"))
        if not found:
            raise FalError(f"{path}: not a run folder (no recipe.yaml) nor a folder of runs; pass folders "
                           f"written by `fal train` or `fal ablate`")
        runs.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return [Path(p) for p in unique]


def labels_of(runs: list[Path]) -> list[str]:
    """Each run's path relative to the runs' common folder (its folder name when that is unique)."""
    names = [run.name for run in runs]
    if len(set(names)) == len(names):
        return names
    common = Path(*_common_parts([run.parts for run in runs]))
    return [str(run.relative_to(common)) for run in runs]


def render(runs: list[Path]) -> str:
    import yaml

    labels = labels_of(runs)
    notes: list[str] = []
    recipes, logs, evaluations = [], [], []
    for run in runs:
        current = max(run.glob("recipe-resumed-at-*.yaml"), default=run / "recipe.yaml")
        try:
            recipe = yaml.safe_load(current.read_text()) or {}
        except yaml.YAMLError:
            raise FalError(f"{current}: not valid YAML; the run folder is damaged") from None
        recipes.append(recipe if isinstance(recipe, dict) else {})
        logs.append(read_training_log(run / "metrics.jsonl", notes))
        evaluations.append(read_evaluations(run, notes))

    parts = [f"<h1>{len(runs)} runs compared</h1>",
             "<p class='meta'>" + " · ".join(escape(f"{label} ({r.get('task')})") for label, r in
                                             zip(labels, recipes)) + "</p>"]
    parts.append("<h2>Training losses</h2>")
    curves = overlaid_curves_png(labels, logs)
    parts.append(embed_png(curves, "loss curves of every run") if curves
                 else "<p class='note'>No training losses in any metrics.jsonl.</p>")

    parts.append("<h2>Metrics per feedback step</h2>")
    rows = metric_rows(labels, evaluations)
    if rows:
        parts.append(_table(["run", "metric", "step", *value_columns(rows)],
                            [[r["run"], r["metric"], r["step"], *[r["values"].get(c) for c in value_columns(rows)]]
                             for r in rows]))
        groups = seed_groups(labels, recipes)
        summary = seed_summary(rows, groups)
        if summary:
            parts.append("<h3>Mean ± std over seeds</h3><p class='meta'>Runs whose recipes differ only by "
                         "<code>seed</code> (and <code>name</code>) are pooled.</p>")
            columns = value_columns(summary)
            parts.append(_table(["runs", "seeds", "metric", "step", *columns],
                                [[r["run"], r["seeds"], r["metric"], r["step"],
                                  *[r["values"].get(c) for c in columns]] for r in summary]))
    else:
        parts.append("<p class='note'>No metrics yet: run <code>fal evaluate all --ckpt RUN</code> for each run.</p>")

    parts.append("<h2>Recipe differences</h2>")
    differences = recipe_differences(recipes)
    if differences:
        parts.append(_table(["key", *labels], [[key, *values] for key, values in differences.items()],
                            key_column=True))
    else:
        parts.append("<p class='meta'>The runs' recipes are identical.</p>")

    parts.append("<h2>Samples</h2><div class='samples'>")
    for label, run in zip(labels, runs):
        newest = sorted((run / "samples").glob("*.png"))[-1:]
        body = embed_png(newest[0].read_bytes(), f"{label} samples") if newest else "<p class='note'>no samples</p>"
        caption = f"{label}: {newest[0].name}" if newest else label
        parts.append(f"<figure>{body}<figcaption>{escape(caption)}</figcaption></figure>")
    parts.append("</div>")
    parts += [f"<p class='note'>note: {escape(n)}</p>" for n in notes]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{len(runs)} runs — fal report</title><style>{STYLE}{COMPARE_STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


# --- the pieces ---

def overlaid_curves_png(labels: list[str], logs: list[list[dict[str, Any]]]) -> bytes | None:
    """One panel per loss (G, D, G at each feedback step), one line per run; a lone point gets a marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    present = {k for records in logs for r in records for k in r}
    steps = sorted((k for k in present if re.fullmatch(r"loss/G/step\d+", k)), key=lambda k: int(k[11:]))
    keys = [k for k in ("loss/G", "loss/D") if k in present] + steps
    if not keys:
        return None
    columns = min(3, len(keys))  # readable panels on a page 1100 px wide
    rows = math.ceil(len(keys) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes, keys):
        for label, records in zip(labels, logs):
            plot_logged(ax, records, key, label, linewidth=1.1)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return figure_png(figure)


def metric_rows(labels: list[str], evaluations: list[list[tuple[Path, dict]]]) -> list[dict[str, Any]]:
    """A row per run, evaluation file and step: {run, metric, step, values: {name: number}}."""
    rows = []
    for label, found in zip(labels, evaluations):
        for path, evaluation in found:
            metric = path.stem.removeprefix("evaluate-")
            for row in evaluation["rows"]:
                if not isinstance(row, dict):
                    continue
                values = {k: v for k, v in row.items() if k != "step" and _number(v)}
                rows.append({"run": label, "metric": metric, "step": row.get("step"), "values": values})
    return rows


def value_columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r["values"]))


def seed_groups(labels: list[str], recipes: list[dict]) -> dict[str, list[str]]:
    """Runs whose recipes are equal once `seed` and `name` are dropped: group title → run labels (≥ 2 runs)."""
    groups: dict[str, list[str]] = {}
    for label, recipe in zip(labels, recipes):
        key = json.dumps({k: v for k, v in recipe.items() if k not in ("seed", "name")}, sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(label)
    return {" + ".join(members): members for members in groups.values() if len(members) > 1}


def seed_summary(rows: list[dict[str, Any]], groups: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Mean ± std (sample std, n − 1) per group, metric file and step, over the group's runs."""
    summary = []
    for title, members in groups.items():
        keyed: dict[tuple, list[dict]] = {}
        for row in rows:
            if row["run"] in members:
                keyed.setdefault((row["metric"], row["step"]), []).append(row["values"])
        for (metric, step), values in keyed.items():
            if len(values) < 2:
                continue
            cells = {}
            for name in dict.fromkeys(k for v in values for k in v):
                numbers = [float(v[name]) for v in values if name in v]
                std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
                cells[name] = f"{_fmt(statistics.fmean(numbers))} ± {_fmt(std)}"
            summary.append({"run": title, "seeds": len(values), "metric": metric, "step": step, "values": cells})
    return summary


def recipe_differences(recipes: list[dict]) -> dict[str, list[Any]]:
    """Dotted recipe keys whose values are not the same in every run (a missing key shows as '—')."""
    flat = [_flatten(recipe) for recipe in recipes]
    keys = sorted(set().union(*flat)) if flat else []
    missing = object()
    differences = {}
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if any(v != values[0] for v in values):
            differences[key] = ["—" if v is missing else v for v in values]
    return differences


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list) else value}


def _table(header: list[str], lines: list[list[Any]], key_column: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for line in lines:
        first = f"<td class='k'>{escape(line[0])}</td>" if key_column else f"<td>{escape(line[0])}</td>"
        body.append("<tr>" + first + "".join(f"<td class='v'>{escape(_fmt(v))}</td>" for v in line[1:]) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


