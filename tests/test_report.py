"""`fal report RUN_DIR`: one self-contained HTML page with loss curves, the per-step metric table, samples and the
recipe; one-line errors; an existing page is never replaced."""
from __future__ import annotations

import base64
import html
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcli.commands import train
from falcli.cli import app
from falcli.resolve import load_recipe
from falcli.errors import FalError
from falcli.commands.evaluate.checkpoints import EvaluateOptions, format_value, run
from falcli.commands.report import write_report

from conftest import TINY_TOY

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    recipe = load_recipe(ROOT / "recipes" / "toy.yaml", TINY_TOY + ["train.sample_every=6"])
    return train.run(recipe, train.RunOptions(out=root / "toy", device="cpu"))


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "toy"))


def _pictures(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([^']+)'", page)]


def test_report_embeds_curves_samples_the_metric_table_and_the_recipe(run_dir):
    evaluation = run("all", EvaluateOptions(ckpt=run_dir, device="cpu"))
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    pictures = _pictures(page)
    assert len(pictures) == 3 and all(p.startswith(PNG) for p in pictures)  # loss curves + 2 sample grids
    assert page.index("iter-0000012.png") < page.index("iter-0000006.png")  # newest sample first
    assert "<th>t=1</th><th>t=2</th><th>t=3</th>" in page
    row = evaluation.rows[2]
    assert f"<td class='v'>{format_value(row['sliced_wasserstein'])}</td>" in page
    assert html.escape((run_dir / "recipe.yaml").read_text(), quote=True) in page
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)  # nothing fetched from elsewhere
    assert "<script" not in page and "<link" not in page


def test_a_run_without_metrics_says_how_to_make_them(run_dir):
    page = write_report(run_dir).read_text()
    assert f"fal evaluate all --ckpt {run_dir}" in page


def test_reports_never_replace_a_file(run_dir, tmp_path):
    first = write_report(run_dir)
    content = first.read_bytes()
    assert write_report(run_dir) == run_dir / "report-2.html"
    assert first.read_bytes() == content
    out = tmp_path / "mine.html"
    out.write_text("keep me")
    with pytest.raises(FalError, match="mine.html: already exists"):
        write_report(run_dir, out)
    assert out.read_text() == "keep me"


def test_damaged_logs_and_json_are_skipped_with_a_note(run_dir):
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "train", "iter')  # a crash in the middle of a line
    (run_dir / "evaluate-bad.json").write_text("{not json")
    (run_dir / "evaluate-other.json").write_text(json.dumps({"something": "else"}))
    page = write_report(run_dir).read_text()
    assert "skipped 1 unreadable line(s)" in page
    assert "evaluate-bad.json: not readable JSON; skipped" in page
    assert "evaluate-other.json: not written by `fal evaluate`; skipped" in page
    assert len(_pictures(page)) == 3


def test_not_a_run_is_a_one_line_error(tmp_path):
    (tmp_path / "plain").mkdir()
    for folder, message in ((tmp_path / "missing", "no such run folder"),
                            (tmp_path / "plain", "not a run folder (no recipe.yaml)")):
        result = runner.invoke(app, ["report", str(folder)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
        assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1
    assert not list((tmp_path / "plain").iterdir())


def test_cli_writes_the_page_where_asked(run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "page.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")


def test_after_a_longer_resume_the_page_shows_the_recipe_in_force(run_dir):
    longer = load_recipe(ROOT / "recipes" / "toy.yaml", TINY_TOY + ["train.sample_every=6", "train.iterations=18"])
    train.run(longer, train.RunOptions(out=run_dir, device="cpu", resume="auto"))
    page = write_report(run_dir).read_text()
    assert "18 of 18 iterations logged" in page
    assert html.escape((run_dir / "recipe-resumed-at-0000012.yaml").read_text(), quote=True) in page


def test_iterations_logged_twice_after_a_resume_keep_the_later_line(run_dir):
    log = run_dir / "metrics.jsonl"
    lines = log.read_text().splitlines()
    again = json.loads(lines[-1])
    again["loss/G"] = 123.0
    log.write_text("\n".join(lines + [json.dumps(again)]) + "\n")
    from falcli.commands.report import read_training_log

    notes = []
    records = read_training_log(log, notes)
    assert [r["iteration"] for r in records] == [3, 6, 9, 12] and records[-1]["loss/G"] == 123.0
    assert any("logged twice" in note for note in notes)
