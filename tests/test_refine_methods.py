"""`fal refine --method`: each reference method raises D's score, DOT's proximity term holds z near its start,
DRS accepts at its closed-form rate, every method writes refine's layout, and the bare
`fal refine --ckpt RUN --steps 3` writes a new numbered folder in the run without touching existing ones.
"""
from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from falcli.cli import app
from falcli.errors import FalError
from falcli.methods import refinement
from falcli.commands.refine import RefineOptions, claim_numbered, refine
from falcli.commands.sample import SampleOptions, sample

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "toy": ("toy", ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
                    "train.batch_size=64", "train.iterations=30"]),
    "plain": ("toy", ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
                      "train.batch_size=64", "train.iterations=30", "feedback.steps=1"]),
    "image": ("shapes", ["data.image_size=32", "data.shapes_train=16", "data.shapes_val=12", "model.latent_dim=8",
                         "model.g_channels=4", "model.d_channels=4", "feedback.encoder_channels=4",
                         "feedback.hidden_channels=4", "train.batch_size=2", "train.iterations=4"]),
    "translation": ("streets", ["data.image_size=32", "data.load_size=36", "data.train_count=8",
                                "data.val_count=4", "model.generator_channels=4", "model.depth=3",
                                "model.discriminator_channels=4", "model.discriminator_layers=2",
                                "feedback.encoder_channels=4", "feedback.hidden_channels=4",
                                "train.batch_size=2", "train.iterations=2", "train.lr_decay_start=null"]),
}
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tiny_runs):
    """name → a tiny trained run folder (trained on first use; a second or so each)."""
    return lambda name: tiny_runs(name, *TINY[name])


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1


# --- the algorithms on tiny networks ---

class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, z, feedback=None):
        return self.net(z)


def tiny_d() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


def mean_score(D, x):
    with torch.no_grad():
        return float(refinement.score(D(x)).mean())


def test_each_iterative_method_raises_d_mean_score_on_a_fixed_batch():
    torch.manual_seed(1)
    G, D = TinyG(), tiny_d()
    z = torch.randn(64, 4)
    x = G(z).detach()
    start = mean_score(D, x)
    k_eff = refinement.estimate_k_latent(G, D, torch.randn(256, 4), torch.randn(256, 4))
    k = refinement.estimate_k_sample(D, x, x.roll(1, 0))
    traces = {
        "dot-latent": refinement.dot_latent(G, D, z, 30, 0.01, k_eff, 3),
        "dot-sample": refinement.dot_sample(D, x, 30, 0.01, k, 3),
        "gradient": refinement.gradient_ascent(D, x, 20, 0.3, 3),
    }
    for name, trace in traces.items():
        assert trace.iterations == [0, 15, 30] if name != "gradient" else [0, 10, 20]
        assert torch.allclose(trace.samples[0], x, atol=1e-6), name  # the first record is the start
        scores = [float(refinement.score(m).mean()) for m in trace.logits]
        assert scores[0] == pytest.approx(start, abs=1e-6)
        assert scores[-1] > start + 1e-3, (name, scores)
    # G's and D's weights are only read: no gradients are left on them
    assert all(p.grad is None for p in list(G.parameters()) + list(D.parameters()))


def test_bounds_keep_moved_samples_in_range():
    D = tiny_d()
    x = torch.rand(16, 2) * 2 - 1
    trace = refinement.gradient_ascent(D, x, 50, 5.0, 2, bounds=(-1.0, 1.0))
    assert trace.samples[-1].abs().max() <= 1.0


def test_dot_proximity_keeps_z_near_its_start_and_closer_as_its_weight_grows():
    torch.manual_seed(2)
    G, D = TinyG(), tiny_d()
    y = torch.randn(128, 4)
    k_eff = refinement.estimate_k_latent(G, D, torch.randn(256, 4), torch.randn(256, 4))
    distances, largest = [], []
    for scale in (0.1, 0.3, 1.0, 3.0, 100.0):  # K divides D's term: a larger K weights the proximity more
        trace = refinement.dot_latent(G, D, y, 100, 0.01, scale * k_eff, 2)
        moved = (trace.latents - y).norm(dim=1)
        distances.append(float(moved.mean())), largest.append(float(moved.max()))
    assert all(a > b for a, b in zip(distances[:4], distances[1:4])), distances
    # bounded: far below Adam's reach (100 steps of 0.01 in each of 4 coordinates: up to 2.0), and once the
    # proximity outweighs D's slope, z stays within Adam's own jitter around y (the norm has a kink there)
    assert largest[2] < 1.0 and largest[3] < 0.01 and largest[4] < 0.01, largest


def test_dot_keeps_the_frozen_part_of_the_latent():
    G = nn.Module()
    G.forward = lambda z, feedback=None: z[:, :2] + z[:, 2:]  # noqa: E731
    D = tiny_d()
    y = torch.randn(8, 4)
    trace = refinement.dot_latent(G, D, y, 10, 0.05, 1.0, 2, free=2)
    assert torch.equal(trace.latents[:, 2:], y[:, 2:])
    assert not torch.equal(trace.latents[:, :2], y[:, :2])


def test_drs_acceptance_probability_is_the_papers_formula():
    logits = torch.tensor([-3.0, -1.0, 0.0, 0.5])
    l_max, gamma, eps = 0.5, 1.2, 1e-6
    expected = [1 / (1 + math.exp(-(v - l_max - math.log(1 - math.exp(v - l_max - eps)) - gamma)))
                for v in logits.tolist()]
    assert refinement.drs_acceptance(logits, l_max, gamma).tolist() == pytest.approx(expected, rel=1e-9)


def test_drs_accepts_at_its_closed_form_rate_on_a_d_with_known_logits():
    """D's logit is the sample's first coordinate; G draws it from {0, −1, −2, −3} with equal chance. Then
    l_M = 0, γ = the percentile of F over the burn-in, and the acceptance rate is mean_v σ(F(v) − γ)."""
    values = torch.tensor([0.0, -1.0, -2.0, -3.0])
    draws = torch.Generator().manual_seed(0)

    def draw(n: int) -> torch.Tensor:
        return values[torch.randint(len(values), (n,), generator=draws)][:, None]

    def score_map(x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]

    result = refinement.rejection_sample(draw, score_map, 4000, 256, 2000, 80.0, 100_000,
                                         torch.Generator().manual_seed(1))
    assert result.l_max == 0.0
    f = refinement.drs_f(values, 0.0)
    burn = refinement.drs_f(draw_like(values, 2000), 0.0)
    assert result.gamma == pytest.approx(float(torch.quantile(burn, 0.8)))
    probabilities = refinement.drs_acceptance(values, 0.0, result.gamma)
    expected = float(probabilities.mean())
    sd = math.sqrt(expected * (1 - expected) / result.draws)
    assert abs(result.acceptance - expected) < 4 * sd, (result.acceptance, expected)
    # the accepted share of each logit follows its acceptance probability
    shares = torch.stack([(result.accepted[:, 0] == v).float().mean() for v in values])
    assert shares.numpy() == pytest.approx((probabilities / probabilities.sum()).numpy(), abs=0.03)
    assert len(result.accepted) == 4000 and len(result.first) == 4000
    assert f[0] > f[-1]  # the best logit gets the largest F


def draw_like(values: torch.Tensor, n: int) -> torch.Tensor:
    """The burn-in draws of the test above: the same generator, replayed."""
    return values[torch.randint(len(values), (n,), generator=torch.Generator().manual_seed(0))]


def test_drs_that_accepts_too_little_says_so():
    with pytest.raises(refinement.TooFewAccepted, match="accepted"):
        refinement.rejection_sample(lambda n: torch.randn(n, 2), lambda x: x[:, :1], 100, 50, 200, 100.0, 50,
                                    torch.Generator().manual_seed(0))


# --- fal refine --method on checkpoints ---

@pytest.mark.parametrize("method", ["dot-latent", "dot-sample", "gradient", "drs"])
def test_each_method_writes_the_layout_and_raises_ds_score_on_the_toy(run, tmp_path, method):
    path = run("plain")
    extra = ["--drs-burn-in", 500] if method == "drs" else []
    result = cli("refine", "--ckpt", path, "--method", method, "--count", 300, "--out", tmp_path / "r",
                 "--batch-size", 100, *extra)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "refine.json").read_text())
    assert report["method"] == method and report["steps"] == 2 and report["source"] == "fresh draws"
    assert (tmp_path / "r" / "scatter.png").is_file()
    for t in (1, 2):
        assert np.load(tmp_path / "r" / f"step-{t}" / "points.npy").shape == (300, 2)
    assert len(report["metrics"]) == 2 and {"modes_covered", "high_quality", "sliced_wasserstein",
                                             "d_logit"} <= set(report["metrics"][0])
    assert report["metrics"][1]["d_logit"] > report["metrics"][0]["d_logit"]
    assert report["seconds_per_1000"] > 0
    if method == "drs":
        assert 0 < report["drs"]["acceptance"] <= 1 and "acceptance" in result.output
    else:
        assert report["iterations"][0] == 0 and report["iterations"][-1] == report["settings"]["iterations"]


def test_an_image_checkpoint_gets_grid_and_heatmaps_from_a_reference_method(run, tmp_path):
    path = run("image")
    result = refine(RefineOptions(path, out=tmp_path / "r", method="gradient", count=4, steps=3, lr=0.05),
                    warn=lambda m: None)
    assert result["iterations"] == [0, 10, 20]
    for t in (1, 2, 3):
        assert len(list((tmp_path / "r" / f"step-{t}").glob("*.png"))) == 4
        assert len(list((tmp_path / "r" / "heatmaps" / f"step-{t}").glob("*.png"))) == 4
    assert (tmp_path / "r" / "grid.png").is_file()
    drs = refine(RefineOptions(path, out=tmp_path / "d", method="drs", count=3, drs_burn_in=20),
                 warn=lambda m: None)
    assert drs["drs"]["accepted"] == 3 and len(list((tmp_path / "d" / "step-2").glob("*.png"))) == 3


def test_translation_refines_its_outputs_in_sample_space(run, tmp_path):
    path = run("translation")
    result = refine(RefineOptions(path, out=tmp_path / "r", method="dot-sample", count=2), warn=lambda m: None)
    assert result["count"] == 2 and result["settings"]["k_eff"] > 0
    assert len(list((tmp_path / "r" / "step-2").glob("*.png"))) == 2


def test_methods_that_do_not_apply_name_the_one_that_does(run, tmp_path):
    one_line_error(cli("refine", "--ckpt", run("translation"), "--method", "dot-latent", "--out", tmp_path / "a"),
                   "use --method dot-sample")
    one_line_error(cli("refine", "--ckpt", run("translation"), "--method", "drs", "--out", tmp_path / "b"),
                   "use --method dot-sample or gradient")
    one_line_error(cli("refine", "--ckpt", run("plain"), "--steps", 3, "--out", tmp_path / "c"),
                   "--method dot-latent")
    one_line_error(cli("refine", "--ckpt", run("plain"), "--method", "drs", "--input", tmp_path,
                       "--out", tmp_path / "d"), "drop --input")
    one_line_error(cli("refine", "--ckpt", run("plain"), "--method", "nope"), "choose one of fal, dot-latent")
    one_line_error(cli("refine", "--ckpt", run("plain"), "--method", "drs", "--count", 50, "--drs-burn-in", 100,
                       "--drs-percentile", 100, "--drs-max-draws", 60, "--out", tmp_path / "e"),
                   "lower --drs-percentile")
    assert not any((tmp_path / name).exists() for name in "abcde")
    assert not list(run("plain").glob("refine-*"))  # refused calls claim no numbered folder


# --- the user's command: fal refine --ckpt RUN --steps 3 ---

def test_bare_refine_writes_numbered_folders_and_never_touches_an_existing_one(run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(run("toy"), path)
    (path / "refine-1").mkdir()
    (path / "refine-1" / "sentinel.txt").write_text("mine")
    first = cli("refine", "--ckpt", path, "--steps", 3, "--count", 40)
    assert first.exit_code == 0, first.output
    assert "fresh samples drawn from it" in first.output.replace("\n", " ")
    second = cli("refine", "--ckpt", sorted((path / "checkpoints").glob("iter-*.pt"))[-1], "--steps", 3,
                 "--count", 40)  # a checkpoint file: its run folder is two levels up
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("refine-")) == ["refine-1", "refine-2",
                                                                                    "refine-3"]
    assert [p.name for p in (path / "refine-1").iterdir()] == ["sentinel.txt"]
    assert (path / "refine-1" / "sentinel.txt").read_text() == "mine"
    for name in ("refine-2", "refine-3"):
        report = json.loads((path / name / "refine.json").read_text())
        assert report["steps"] == 3 and report["method"] == "fal" and report["count"] == 40
    # the same latents (--seed 0) and the same checkpoint: both calls wrote the same points
    assert np.array_equal(np.load(path / "refine-2" / "step-3" / "points.npy"),
                          np.load(path / "refine-3" / "step-3" / "points.npy"))


def test_bare_refine_continues_the_samples_the_run_holds(run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(run("toy"), path)
    ckpt = sorted((path / "checkpoints").glob("iter-*.pt"))[-1]
    sample(SampleOptions(ckpt, path / "samples-a", count=12, steps=1))
    lines: list[str] = []
    result = refine(RefineOptions(path, steps=3), warn=lambda m: None, say=lines.append)
    assert result["input"] == str(path / "samples-a") and result["source"] == "fal samples"
    assert result["count"] == 12 and any("samples-a" in line for line in lines)
    out = Path(result["out"])
    assert out == path / "refine-1"
    assert np.array_equal(np.load(out / "step-1" / "points.npy"), np.load(path / "samples-a" / "points.npy"))


def test_numbered_folders_are_claimed_once_even_by_concurrent_calls(tmp_path):
    (tmp_path / "refine-7").mkdir()
    (tmp_path / "refine-x").mkdir()  # not a number: ignored
    claimed: list[Path] = []
    threads = [threading.Thread(target=lambda: claimed.append(claim_numbered(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(p.name.split("-")[1]) for p in claimed) == list(range(8, 16))


def test_option_errors_are_one_line_before_anything_is_written(run, tmp_path):
    path = run("plain")
    with pytest.raises(FalError, match="--steps 1: dot-latent records"):
        refine(RefineOptions(path, out=tmp_path / "a", method="dot-latent", steps=1))
    with pytest.raises(FalError, match="raise --iterations"):
        refine(RefineOptions(path, out=tmp_path / "a", method="gradient", steps=6, iterations=3))
    with pytest.raises(FalError, match="drs has two steps"):
        refine(RefineOptions(path, out=tmp_path / "a", method="drs", steps=3))
    with pytest.raises(FalError, match="--iterations and --lr are for"):
        refine(RefineOptions(path, out=tmp_path / "a", method="drs", lr=0.1))
    assert not (tmp_path / "a").exists()
