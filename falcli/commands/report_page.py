"""What the single-run page (report.py) and the comparison page (report_compare.py) share: the style sheet, a
run folder's training log and evaluations, figures and pictures embedded as PNG, HTML escaping."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } td.v { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; } .note { color: #8a5a00; } .meta { color: #555; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
"""


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


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes, laid out, at the page's resolution."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def plot_logged(ax, records: list[dict[str, Any]], key: str, label: str, linewidth: float) -> None:
    """One logged value of metrics.jsonl over the iterations, on `ax`; nothing when it was never a number.
    A run shorter than log_every has one point: a line through one point draws nothing, a marker does."""
    points = [(r["iteration"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=linewidth,
                marker="o" if len(points) == 1 else None)


def embed_png(png: bytes, alt: str) -> str:
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def escape(text: str) -> str:
    return html.escape(str(text), quote=True)


def common_parts(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The longest shared prefix of paths' parts (the folder a comparison page goes to)."""
    common: list[str] = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return tuple(common) or ("/",)
