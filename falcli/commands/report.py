"""`fal report RUN_DIR`: one self-contained HTML page of a run, to paste from into a paper draft.

The page holds the training losses drawn with matplotlib, the per-step metric tables of every `fal evaluate`
JSON in the run folder, the newest sample grids (with D's heat maps) and the resolved recipe — every picture a
base64-embedded PNG, so the file can be mailed or archived alone.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

from falcli.errors import FalError

SAMPLES_SHOWN = 3                       # newest sample pictures on the page
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } td.v { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; } .note { color: #8a5a00; } .meta { color: #555; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
"""


def write_report(runs: Path | list[Path], out: Path | None = None) -> Path:
    """Write the page of one run (RUN/report.html) or the comparison of several (compare.html in their common
    folder, or in the folder of runs given); `out` replaces the default and is never overwritten. Returns the
    path written."""
    from falcli.commands import report_compare
    from falcli.commands.evaluate.checkpoints import write_new_file

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
            folder = given[0] if len(given) == 1 else Path(*report_compare._common_parts(
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
    import yaml

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
    parts = [f"<h1>{_e(name)}</h1>", f"<p class='meta'>{_e(_summary(run_dir, recipe, records))}</p>"]

    parts.append("<h2>Training losses</h2>")
    curves = loss_curves_png(records)
    parts.append(_img(curves, "loss curves") if curves else "<p class='note'>No training losses in metrics.jsonl.</p>")

    parts.append("<h2>Metrics per feedback step</h2>")
    evaluations = read_evaluations(run_dir, notes)
    if not evaluations:
        parts.append(f"<p class='note'>No metrics yet. Run <code>fal evaluate all --ckpt {_e(str(run_dir))}</code> "
                     f"(it writes {_e(str(run_dir / 'evaluate-all.json'))}; other metrics write "
                     f"evaluate-&lt;metric&gt;.json), then <code>fal report {_e(str(run_dir))}</code> again.</p>")
    for path, evaluation in evaluations:
        parts.append(_evaluation_html(path, evaluation))

    parts.append("<h2>Samples</h2>")
    samples = sorted((run_dir / "samples").glob("*.png"))[-SAMPLES_SHOWN:]
    if samples:
        parts.append(f"<p class='meta'>{_e(_samples_caption(recipe.get('task')))}</p>")
    else:
        parts.append("<p class='note'>No sample pictures in samples/.</p>")
    for path in reversed(samples):  # newest first
        parts.append(f"<figure>{_img(path.read_bytes(), path.name)}<figcaption>{_e(path.name)}</figcaption></figure>")

    parts.append("<h2>Recipe (resolved)</h2>")
    parts.append(f"<pre>{_e(recipe_text)}</pre>")
    parts += [f"<p class='note'>note: {_e(n)}</p>" for n in notes]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(name)} — fal report</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


# --- reading the run folder ---

def read_training_log(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The `kind: train` lines of metrics.jsonl; a damaged line (a crash mid-write) is skipped with a note.

    A run resumed from an earlier checkpoint than its last log line logs those iterations again: the later
    line of an iteration wins, as the training it describes is the one the checkpoints hold.
    """
    if not path.is_file():
        return []
    records, damaged = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # bytes a crash left: a bad line
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            damaged += 1
            continue
        if not isinstance(record, dict) or record.get("kind", "train") != "train":
            continue
        numbers = all(isinstance(v, (int, float)) for k, v in record.items() if k != "kind")
        if not numbers or not isinstance(record.get("iteration"), int):
            damaged += 1  # JSON, but not a line fal wrote
            continue
        records.append(record)
    if damaged:
        notes.append(f"{path}: skipped {damaged} unreadable line(s)")
    latest = {record["iteration"]: record for record in records}
    if len(latest) < len(records):
        notes.append(f"{path}: {len(records) - len(latest)} iteration(s) logged twice (a resume from an earlier "
                     f"checkpoint); the later lines are shown")
    return [latest[i] for i in sorted(latest)]


def read_evaluations(run_dir: Path, notes: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Every evaluate-*.json of the run folder that `fal evaluate` wrote, by name."""
    found = []
    for path in sorted(run_dir.glob("evaluate-*.json")):
        try:
            evaluation = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            notes.append(f"{path}: not readable JSON; skipped")
            continue
        if not isinstance(evaluation, dict) or not isinstance(evaluation.get("rows"), list):
            notes.append(f"{path}: not written by `fal evaluate`; skipped")
            continue
        found.append((path, evaluation))
    return found


def _summary(run_dir: Path, recipe: dict, records: list[dict]) -> str:
    from falcli.core import checkpoint

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
    from falcli.tasks import TASKS

    if task in TASKS:
        return TASKS[task].samples_caption
    return ("First row: real data; then for each step t its samples and, below, D's map σ(D) "
            "(red = fake, blue = real).")


# --- the pieces of the page ---

def loss_curves_png(records: list[dict[str, Any]]) -> bytes | None:
    """Loss curves (Agg canvas, no display needed): G and D; G per feedback step; D's terms; G's other terms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
            points = [(r["iteration"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            # A run shorter than log_every has one point: a line through one point draws nothing, a marker does.
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key.split("/", 1)[-1], linewidth=1.2,
                    marker="o" if len(points) == 1 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return figure_png(figure)


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes, laid out, at the page's resolution."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _evaluation_html(path: Path, evaluation: dict[str, Any]) -> str:
    from falcli.commands.evaluate.checkpoints import metric_table

    ck = evaluation.get("checkpoint")
    if ck:
        what = (f"{ck.get('path')} — iteration {ck.get('iteration')}, {ck.get('generator')}, {ck.get('steps')} "
                f"steps (trained with {ck.get('trained_steps')}), {ck.get('num_samples')} samples per step")
    else:
        what = " vs ".join(str(v) for v in (evaluation.get("inputs") or {}).values())
    parts = [f"<h3>{_e(str(evaluation.get('metric')))} <span class='meta'>({_e(path.name)})</span></h3>",
             f"<p class='meta'>{_e(what)}</p>"]
    label = (evaluation.get("protocol") or {}).get("label")
    if label:
        parts.append(f"<p class='meta'>{_e(label)}</p>")
    rows = evaluation["rows"]
    if rows:
        header, lines = metric_table(rows)
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        body = "".join("<tr><td>" + _e(line[0]) + "</td>" + "".join(f"<td class='v'>{_e(v)}</td>" for v in line[1:])
                       + "</tr>" for line in lines)
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts += [f"<p class='note'>note: {_e(n)}</p>" for n in evaluation.get("notes") or []]
    return "\n".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
