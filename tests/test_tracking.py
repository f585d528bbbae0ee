"""Tracking: TensorBoard events next to metrics.jsonl (read back with TensorBoard's own reader), resume without
repeated steps, and `fal report RUN RUN …` comparing runs on one page (checked in a headless browser where
Chromium is installed)."""
from __future__ import annotations

import base64
import builtins
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcli.commands import train
from falcli.cli import app
from falcli.resolve import load_recipe
from falcli.errors import FalError
from falcli.commands.evaluate.checkpoints import EvaluateOptions, run as evaluate
from falcli.commands.report import write_report
from falcli.commands.report_compare import recipe_differences, seed_groups, seed_summary

from conftest import TINY_TOY

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _recipe(*extra: str):
    return load_recipe(ROOT / "recipes" / "toy.yaml", TINY_TOY + ["train.sample_every=6", *extra])


def _events(run_dir: Path):
    accumulator = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"),
                                                     size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == "train"]


def test_events_hold_the_logged_scalars_and_sample_pictures(tmp_path):
    run_dir = train.run(_recipe(), train.RunOptions(out=tmp_path / "toy", device="cpu", tensorboard=True))
    events = _events(run_dir)
    logged = _jsonl(run_dir)
    assert [r["iteration"] for r in logged] == [3, 6, 9, 12]
    for key in ("loss/G", "loss/D", "loss/G/step1", "loss/G/step3", "lr/G", "lr/D", "time/iteration_ms"):
        scalars = events.Scalars(key)
        assert [e.step for e in scalars] == [3, 6, 9, 12], key
        assert [e.value for e in scalars] == pytest.approx([r[key] for r in logged], rel=1e-6), key
    (tag,) = events.Tags()["images"]
    assert [e.step for e in events.Images(tag)] == [6, 12]
    assert all(e.encoded_image_string.startswith(b"\x89PNG") for e in events.Images(tag))


def test_resume_continues_the_events_without_repeating_a_step(tmp_path):
    out = tmp_path / "toy"
    train.run(_recipe("train.iterations=9"), train.RunOptions(out=out, device="cpu", tensorboard=True))
    (out / "checkpoints" / "iter-0000009.pt").unlink()  # the run "died" after logging 9, checkpointed at 6
    train.run(_recipe(), train.RunOptions(out=out, device="cpu", resume="auto", tensorboard=True))
    events = _events(out)
    assert [e.step for e in events.Scalars("loss/G")] == [3, 6, 9, 12]
    # The step-9 value is the resumed run's, as in metrics.jsonl's later line.
    resumed = [r for r in _jsonl(out) if r["iteration"] == 9][-1]
    assert events.Scalars("loss/G")[2].value == pytest.approx(resumed["loss/G"], rel=1e-6)


def test_evaluation_of_a_run_with_events_adds_its_per_step_metrics(tmp_path):
    run_dir = train.run(_recipe(), train.RunOptions(out=tmp_path / "toy", device="cpu", tensorboard=True))
    evaluation = evaluate("toy", EvaluateOptions(ckpt=run_dir, device="cpu"))
    events = _events(run_dir)
    for row in evaluation.rows:
        value = events.Scalars(f"eval/toy/sliced_wasserstein/step{row['step']}")
        assert [(e.step, e.value) for e in value] == [(12, pytest.approx(row["sliced_wasserstein"], rel=1e-6))]


def test_without_the_package_asking_for_events_is_one_line_before_any_run_folder(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard.") or name == "torch.utils.tensorboard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(FalError, match=r'pip install "falcli\[tensorboard\]"'):
        train.run(_recipe(), train.RunOptions(out=tmp_path / "toy", device="cpu", tensorboard=True))
    assert not (tmp_path / "toy").exists()


# --- comparing runs ---

@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> Path:
    """An ablation-like folder: two seeds of one recipe and one run with feedback off."""
    root = tmp_path_factory.mktemp("compare")
    for folder, extra in (("fal-s0", ["seed=0"]), ("fal-s1", ["seed=1"]), ("plain-s0", ["seed=0", "feedback.steps=1"])):
        run_dir = train.run(_recipe(*extra), train.RunOptions(out=root / folder, device="cpu"))
        evaluate("toy", EvaluateOptions(ckpt=run_dir, device="cpu"))
    return root


def test_the_comparison_page_lists_every_run_with_a_row_per_run_and_step(three_runs, tmp_path):
    folder = Path(shutil.copytree(three_runs, tmp_path / "ablation"))
    result = runner.invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "compare.html").read_text()
    assert "<th>fal-s0</th><th>fal-s1</th><th>plain-s0</th>" in page  # the recipe differences' columns
    rows = re.findall(r"<tr><td>(fal-s\d|plain-s0)</td><td class='v'>toy</td><td class='v'>(\d)</td>", page)
    assert sorted(rows) == sorted([("fal-s0", s) for s in "123"] + [("fal-s1", s) for s in "123"]
                                  + [("plain-s0", "1")])
    assert "Mean ± std over seeds" in page and "fal-s0 + fal-s1" in page
    assert "<td class='k'>feedback.steps</td>" in page and "<td class='k'>seed</td>" in page
    pictures = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(pictures) == 1 + 3 and all(base64.b64decode(p).startswith(b"\x89PNG") for p in pictures)
    # A second report of the same folder never replaces the first.
    assert write_report([folder]) == folder / "compare-2.html"


def test_several_run_folders_compare_and_a_non_run_is_one_line(three_runs, tmp_path):
    runs = [three_runs / "fal-s0", three_runs / "plain-s0"]
    path = write_report(runs, tmp_path / "two.html")
    assert "2 runs compared" in path.read_text()
    result = runner.invoke(app, ["report", str(tmp_path), str(three_runs / "fal-s0")])
    assert result.exit_code == 2 and "not a run folder" in result.output
    assert "Traceback" not in result.output


def test_seed_summary_and_recipe_differences_in_closed_form():
    recipes = [{"seed": 0, "task": "toy", "train": {"lr": 1}}, {"seed": 1, "task": "toy", "train": {"lr": 1}},
               {"seed": 0, "task": "toy", "train": {"lr": 2}}]
    labels = ["a", "b", "c"]
    assert seed_groups(labels, recipes) == {"a + b": ["a", "b"]}
    assert recipe_differences(recipes) == {"seed": [0, 1, 0], "train.lr": [1, 1, 2]}
    rows = [{"run": "a", "metric": "toy", "step": 1, "values": {"x": 1.0}},
            {"run": "b", "metric": "toy", "step": 1, "values": {"x": 3.0}},
            {"run": "c", "metric": "toy", "step": 1, "values": {"x": 9.0}}]
    (summary,) = seed_summary(rows, {"a + b": ["a", "b"]})
    assert summary["values"] == {"x": "2 ± 1.414"} and summary["seeds"] == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_the_comparison_page_renders_in_a_headless_browser(three_runs, tmp_path):
    page = write_report([three_runs], tmp_path / "compare.html").read_text()
    # A copy with a probe script (the page itself has none): it records how every picture and table came out.
    probe = ("<script>window.addEventListener('load', () => { const bad = [...document.images].filter(i => "
             "!i.complete || i.naturalWidth === 0).length; const rows = [...document.querySelectorAll('table')]"
             ".map(t => t.rows.length - 1); document.body.setAttribute('data-probe', JSON.stringify({images: "
             "document.images.length, bad, rows})); });</script>")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    result = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             "--v=0", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                            capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]+)"', result.stdout)
    assert found, result.stderr[-2000:]
    probe_result = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe_result["images"] == 4 and probe_result["bad"] == 0
    assert all(rows > 0 for rows in probe_result["rows"]) and len(probe_result["rows"]) >= 3
    assert "CONSOLE" not in result.stderr and "Uncaught" not in result.stderr


def test_a_judge_trained_on_demand_shows_its_own_bar(tmp_path, monkeypatch):
    """Judges that `fal evaluate` trains by itself (judges/provision.py) draw a bar with an ETA, and say so."""
    import torch
    from rich.console import Console

    from falcli import console as fal_console
    from falcli.judges import provision

    recorded = Console(record=True, force_terminal=False, width=120)
    monkeypatch.setattr(fal_console, "console", recorded)
    recipe = load_recipe(ROOT / "recipes" / "shapes_classifier.yaml",
                         ["data.shapes_train=32", "data.shapes_val=8", "model.channels=4", "model.depth=1",
                          "model.features=4", "train.iterations=4", "train.batch_size=4", "train.log_every=1"])
    said = []
    assert provision.provide(recipe, torch.device("cpu"), said.append).is_file()
    text = recorded.export_text()
    assert "train judge" in text and "4/4" in text
    assert len(said) == 1 and said[0].startswith(f"training judge shapes-classifier into {provision.judge_dir(recipe)} "
                                                 f"(first use, ~1 min on cpu)")


def test_a_judges_time_estimate_leaves_out_its_data_loading(monkeypatch):
    """The announced minutes are timed over training iterations: slow data loading before the first one (the
    shapes judge renders 12 000 images) made a 69 s judge announce ~20 min."""
    import time

    import torch

    from falcli.judges import JUDGES, provision

    judge = JUDGES["shapes-classifier"]
    load_data = judge.load_data

    def slow_load_data(recipe, split):
        if split == "train":  # counted, 2 s over 3 iterations × 196 left would announce ~2 min
            time.sleep(2)
        return load_data(recipe, split)

    monkeypatch.setattr(judge, "load_data", slow_load_data)
    recipe = load_recipe(ROOT / "recipes" / "shapes_classifier.yaml",
                         ["data.shapes_train=32", "data.shapes_val=8", "model.channels=4", "model.depth=1",
                          "model.features=4", "train.iterations=200", "train.batch_size=4", "train.log_every=100"])
    said = []
    provision.provide(recipe, torch.device("cpu"), said.append)
    assert len(said) == 1 and "(first use, ~1 min on cpu)" in said[0], said
