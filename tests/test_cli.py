"""The `fal` command line: help, version, dry run, one-line errors with exit code 2, and delegation."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcli import __version__
from falcli.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("prepare", "train", "refine", "evaluate", "toy"):
        assert command in result.output


@pytest.mark.parametrize("command", ["prepare", "train", "refine", "evaluate", "toy"])
def test_each_command_has_help(command):
    assert invoke(command, "--help").exit_code == 0


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_dry_run_prints_resolved_recipe_and_exits(tmp_path):
    result = invoke("train", ROOT / "recipes/toy.yaml", "--dry-run", "--set", "train.iterations=77",
                    "--out", tmp_path / "run")
    assert result.exit_code == 0
    assert "iterations: 77 *" in result.output  # changed from the default, and marked
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["train", "no/such.yaml"], "no such recipe file"),
    (["train", "shapez"], "shapez: no such recipe file (did you mean shapes?)"),
    (["train", ROOT / "recipes/toy.yaml", "--set", "train.lr_gen=1"], "did you mean train.lr_generator"),
    (["train", ROOT / "recipes/toy.yaml", "--set", "trian.iterations=5"],
     "--set trian.iterations=5: trian: unknown key (did you mean train?)"),
    (["train", ROOT / "recipes/toy.yaml", "--set", "train.iterations=-1"], "train.iterations must be >= 1"),
    (["train", ROOT / "recipes/toy.yaml", "--device", "cuda:0"], "no CUDA device"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    if "cuda" in str(args) and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    result = invoke(*args, "--out", tmp_path / "run") if args[0] == "train" else invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1
    assert len(result.output.strip().splitlines()) <= 3  # one (possibly soft-wrapped) line


def test_train_delegates_the_resolved_recipe(monkeypatch, tmp_path):
    from falcli.commands import train

    seen = {}

    def fake_run(recipe, options, on_progress=None, say=None):
        seen["recipe"], seen["options"], seen["say"] = recipe, options, say
        return tmp_path

    monkeypatch.setattr(train, "run", fake_run)
    result = invoke("train", ROOT / "recipes/toy.yaml", "--seed", "5", "--resume", "auto", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert seen["recipe"].seed == 5 and seen["recipe"].task == "toy"
    assert seen["options"].resume == "auto" and seen["options"].device == "cpu"
    assert callable(seen["say"])  # the run's notes (a resume that changes train settings) reach the console


def test_train_end_to_end_and_resume_errors(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", ROOT / "recipes/toy.yaml", "--out", run_dir, "--set", "train.iterations=4",
            "--set", "train.log_every=2", "--set", "train.checkpoint_every=2", "--set", "data.points=512"]
    assert invoke(*args).exit_code == 0
    assert (run_dir / "checkpoints" / "iter-0000004.pt").exists()
    again = invoke(*args)
    assert again.exit_code == 2 and "--resume auto" in again.output
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = invoke(*args[:-8], "--resume", broken, "--set", "train.iterations=8")
    assert result.exit_code == 2 and "not a checkpoint (fal writes them as RUN/checkpoints/iter-N.pt)" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # refused before the recipe is printed, not after
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run_dir / "checkpoints" / "iter-0000004.pt").read_bytes()[:200])
    result = invoke(*args[:-8], "--resume", truncated, "--set", "train.iterations=8")
    assert result.exit_code == 2 and "not a readable checkpoint; it may be truncated" in result.output


def test_toy_quick_writes_figure_and_table(tmp_path):
    result = invoke("toy", ROOT / "recipes/toy.yaml", "--quick", "--out", tmp_path / "toy")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "toy" / "toy_figure.png").stat().st_size > 10_000
    import json
    table = json.loads((tmp_path / "toy" / "toy_table.json").read_text())
    assert [(row["model"], row["step"]) for row in table["rows"]] == [("GAN", 1), ("FAL", 1), ("FAL", 2),
                                                                      ("FAL", 3)]
    assert "modes covered" in result.output
    again = invoke("toy", ROOT / "recipes/toy.yaml", "--quick", "--out", tmp_path / "toy")
    assert again.exit_code == 2 and "holds an earlier experiment" in " ".join(again.output.split())
    assert "--resume" not in again.output


def test_prepare_builtin_and_errors(tmp_path):
    result = invoke("prepare", "streets", "--out", tmp_path / "streets", "--count", "4", "--size", "32")
    assert result.exit_code == 0, result.output
    from falcli.formats.store import load_split, read_meta
    meta = read_meta(tmp_path / "streets")
    assert meta["splits"] == {"train": 4, "val": 1} and meta["kind"] == "paired"
    assert load_split(tmp_path / "streets", "train")["photo"].shape == (4, 32, 32, 3)
    again = invoke("prepare", "streets", "--out", tmp_path / "streets", "--count", "4")
    assert again.exit_code == 2 and "error:" in again.output
    missing = invoke("prepare", "cityscapes", "--out", tmp_path / "cs")
    assert missing.exit_code == 2 and "needs --raw PATH" in missing.output
    assert not (tmp_path / "cs").exists()


def test_a_batch_larger_than_the_data_leaves_no_run_folder(tmp_path):
    result = invoke("train", ROOT / "recipes/toy.yaml", "--device", "cpu", "--out", tmp_path / "run",
                    "--set", "data.points=16", "--set", "train.batch_size=32")
    assert result.exit_code == 2 and "fewer than train.batch_size=32" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", ["cityscapes.yaml", "cityscapes_segmenter.yaml"])
def test_train_without_prepared_data_says_how_to_prepare_and_leaves_no_run_folder(tmp_path, recipe):
    # A leftover folder would make the next start, once the data exists, fail as "already holds a run".
    result = invoke("train", ROOT / "recipes" / recipe, "--device", "cpu", "--out", tmp_path / "run",
                    "--set", f"data.root={tmp_path / 'missing'}")
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # rich wraps long lines to the test console's width
    assert "no prepared dataset there" in said and "fal prepare" in said
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch, tmp_path):
    from falcli.commands import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run", interrupted)
    result = invoke("train", ROOT / "recipes/toy.yaml", "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 130 and "interrupted; what was finished is kept" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_shipped_recipes_are_found_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recipes/ here
    result = invoke("train", "recipes/toy.yaml", "--dry-run")
    assert result.exit_code == 0 and "toy (task toy)" in result.output
    missing = invoke("train", "recipes/nothing.yaml", "--dry-run")
    assert missing.exit_code == 2 and "no such recipe file" in missing.output


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "refine", "prepare", "ablate", "toy", "report",
                                     "edit-heatmaps"])
def test_help_shows_no_bool_placeholder_and_whole_option_names_at_80_columns(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output  # flags take no value
    names = [word for line in result.output.splitlines() for word in line.split() if word.startswith("--")]
    assert names and not [n for n in names if n.endswith("…")], names  # no option name cut short
    if command == "evaluate":
        assert "--allow-unofficial-weights" in result.output
