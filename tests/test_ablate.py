"""`fal ablate` on the toy: the default rows are FAL and its three baselines (plain, compute-matched plain,
plain + DOT), the tables show quality next to coverage per step, and `--resume auto|PATH` continue an ablation."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcli.cli import app
from falcli.core import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "recipes" / "toy.yaml")
TINY = ["--set", "model.hidden=16", "--set", "model.latent_dim=4", "--set", "model.depth=2",
        "--set", "data.points=512", "--set", "train.batch_size=32"]
runner = CliRunner()


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate") / "abl"
    args = ["ablate", TOY, "--quick", "--seeds", "2", "--out", str(out), "--device", "cpu", *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, args, json.loads((out / "ablation.json").read_text())


def test_default_rows_are_fal_and_its_three_baselines(ablation):
    out, _, report = ablation
    assert list(report["summary"]) == ["plain", "plain_compute_matched", "plain_dot", "fal"]
    steps = {config: row["steps"] for config, row in report["summary"].items()}
    assert steps == {"plain": 1, "plain_compute_matched": 1, "plain_dot": 2, "fal": 3}
    iterations = report["compute_matched"]["iterations"]
    assert iterations == round(40 * report["compute_matched"]["ratio"]) and iterations > 40
    matched = checkpoint.load(out / "plain_compute_matched-s1" / "checkpoints" /
                              checkpoint.checkpoint_name(iterations))["recipe"]
    assert matched["train"]["iterations"] == iterations and matched["feedback"]["steps"] == 1
    assert matched["seed"] == 1
    assert f"the compute-matched plain GAN: {iterations}," in (out / "ablation.md").read_text()
    dot = json.loads((out / "plain_dot-s0" / "refine.json").read_text())
    assert dot["method"] == "dot-latent" and dot["count"] == report["num_samples"] == 300
    assert Path(dot["checkpoint"]) == (out / "plain-s0" / "checkpoints" / "iter-0000040.pt").resolve()


def test_dot_starts_from_the_plain_rows_own_samples(ablation):
    """DOT refines the latents the task's evaluation uses: its t=1 is the plain GAN's row, to the digit."""
    _, _, report = ablation
    for plain, dot in zip(report["runs"]["plain"], report["runs"]["plain_dot"]):
        for key in ("high_quality", "sliced_wasserstein", "sw_to_mixture", "recall", "coverage", "modes_covered"):
            assert dot["steps"][0][key] == pytest.approx(plain["steps"][0][key], abs=1e-6), key
        assert dot["steps"][1]["d_logit"] > dot["steps"][0]["d_logit"]  # DOT raised D's score


def test_tables_show_coverage_next_to_quality_at_every_step(ablation):
    out, _, report = ablation
    assert report["metric"] == "high_quality"
    assert {"high_quality", "sw_to_mixture", "sliced_wasserstein", "precision", "recall", "modes_covered",
            "coverage", "density"} <= set(report["keys"])
    for row in report["summary"].values():
        assert len(row["per_step"]) == row["steps"]
        for step in row["per_step"]:
            assert {"recall", "precision", "modes_covered"} <= set(step)
            assert step["recall"]["std"] >= 0
    table = (out / "ablation.md").read_text()
    assert "| config | t | high_quality | sw_to_mixture | sliced_wasserstein |" in table
    assert "recall" in table and "| plain GAN + DOT | 2 |" in table and "| FAL | 3 |" in table


def test_resume_path_continues_the_ablation_in_that_folder(ablation):
    """`--resume PATH` is `--out PATH --resume auto`: finished runs are reused, missing ones trained."""
    out, args, report = ablation
    shutil.rmtree(out / "fal-s1")
    stamp = (out / "plain-s0" / "checkpoints" / "iter-0000040.pt").stat().st_mtime_ns
    again = runner.invoke(app, ["ablate", TOY, "--quick", "--seeds", "2", "--resume", str(out), "--device", "cpu",
                                *TINY])
    assert again.exit_code == 0, again.output
    assert (out / "fal-s1" / "checkpoints" / "iter-0000040.pt").is_file()
    assert (out / "plain-s0" / "checkpoints" / "iter-0000040.pt").stat().st_mtime_ns == stamp
    assert json.loads((out / "ablation.json").read_text())["summary"].keys() == report["summary"].keys()
    other = runner.invoke(app, args + ["--resume", str(out.parent / "elsewhere")])
    assert other.exit_code == 2 and "not a folder" in other.output
    (out.parent / "elsewhere").mkdir()
    clash = runner.invoke(app, args + ["--resume", str(out.parent / "elsewhere")])
    assert clash.exit_code == 2 and "name different folders" in clash.output
