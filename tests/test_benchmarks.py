"""benchmarks/train_speed.py: it runs and reports every configuration, its baseline is the reference update,
and the step's speed settings (channels_last, fused Adam, bf16 autocast) keep the maths. Every benchmark script
imports only names falcli has."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from falcli.commands import train
from falcli.errors import FalError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--size", "32", "--channels", "4", "--depth", "3", "--d-layers", "2",
        "--set", "feedback.encoder_channels=4", "--set", "feedback.hidden_channels=4"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


@pytest.fixture
def tiny_recipe(tmp_path):
    """The benchmark's recipe (recipes/cityscapes.yaml, shrunk) on its random prepared pairs."""
    root = bench.write_random_pairs(tmp_path / "pairs", size=32, count=8)

    def make(steps: int = 3, batch: int = 2, *overrides: str):
        extra = [a for o in overrides for a in ("--set", o)]
        return bench.make_recipe(bench.parse_args(TINY + extra), root, steps, batch)
    return make


# --- the benchmark runs ---

def test_tiny_benchmark_reports_every_configuration_with_a_ratio(tmp_path, capsys):
    out = tmp_path / "speed.json"
    results = bench.main(TINY + ["--batch", "1", "2", "--steps", "1", "3", "--iters", "2", "--warmup", "1",
                                 "--pairs", "8", "--data-batches", "2", "--json", str(out)])
    configs = [(r["name"], r["batch"]) for r in results["rows"]]
    assert configs == [("baseline", 1), ("fal T=1", 1), ("fal T=3", 1),
                       ("baseline", 2), ("fal T=1", 2), ("fal T=3", 2)]
    for row in results["rows"]:
        assert row["images_per_s"] > 0 and row["flops_per_step"] > 0 and row["tflops_per_s"] > 0
        assert 0 < row["ratio"] < float("inf")
        assert row["peak_memory_bytes"] is None and row["mfu"] is None  # CPU: no CUDA memory, no peak given
    by_config = {(r["name"], r["batch"]): r for r in results["rows"]}
    assert by_config[("baseline", 2)]["ratio"] == 1.0
    assert by_config[("fal T=1", 2)]["ratio"] == pytest.approx(
        by_config[("fal T=1", 2)]["images_per_s"] / by_config[("baseline", 2)]["images_per_s"])
    # Same networks, same update: T=1 counts the baseline's FLOPs; T=3 runs G and D three times.
    assert by_config[("fal T=1", 2)]["flops_per_step"] == pytest.approx(by_config[("baseline", 2)]["flops_per_step"])
    assert by_config[("fal T=3", 2)]["flops_per_step"] > 2.5 * by_config[("fal T=1", 2)]["flops_per_step"]
    assert by_config[("fal T=1", 2)]["recipe"] == "fp32"  # fal train's CPU settings, read off the built step
    assert [d["batch"] for d in results["data_path"]] == [1, 2]
    assert all(d["pairs_per_s"] > 0 for d in results["data_path"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    # cudnn.benchmark as each side trains: on for the reference (its BaseModel sets it), off for fal train
    assert [r["cudnn_benchmark"] for r in results["rows"]] == [True, False, False] * 2
    assert torch.backends.cudnn.benchmark is False  # and the process's setting is left as it was
    printed = " ".join(capsys.readouterr().out.split())
    assert "updates G, then D" in printed and "updates D, then G" in printed
    assert "on for the baseline (as the reference), off for fal" in printed
    assert results["update_order"].startswith("fal's step updates G, then D")


@pytest.mark.parametrize("setting, expected", [("on", True), ("off", False)])
def test_cudnn_benchmark_can_be_set_for_every_row(setting, expected):
    results = bench.main(TINY + ["--batch", "1", "--steps", "1", "--iters", "1", "--warmup", "0", "--pairs", "2",
                                 "--data-batches", "1", "--cudnn-benchmark", setting])
    assert [r["cudnn_benchmark"] for r in results["rows"]] == [expected, expected]


def test_mfu_is_achieved_over_the_given_peak(tmp_path):
    results = bench.main(TINY + ["--batch", "1", "--steps", "1", "--iters", "1", "--warmup", "0", "--pairs", "2",
                                 "--data-batches", "1", "--peak-tflops", "0.5"])
    for row in results["rows"]:
        assert row["mfu"] == pytest.approx(row["tflops_per_s"] / 0.5)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps"),
    (["--batch", "2", "0"], "--batch"),
    (["--iters", "0"], "--iters"),
    (["--warmup", "-1"], "--warmup"),
])
def test_bad_options_are_one_line_errors(argv, message):
    with pytest.raises(FalError, match=message):
        bench.parse_args(TINY + argv)


def test_an_existing_json_is_never_replaced(tmp_path):
    existing = tmp_path / "speed.json"
    existing.write_text("keep me")
    with pytest.raises(FalError, match="already exists"):
        bench.main(TINY + ["--json", str(existing)])
    assert existing.read_text() == "keep me"


# --- the baseline ---

def test_baseline_is_the_plain_networks_updated_the_reference_way(tiny_recipe):
    recipe = tiny_recipe(steps=1)
    G, D = bench.reference_networks(recipe, torch.device("cpu"))
    ours_G, ours_D = train.build_networks(bench.TASK, recipe, torch.device("cpu"))
    for reference, ours in ((G, ours_G), (D, ours_D)):  # layer for layer: the same parameter shapes
        assert [p.shape for p in reference.parameters()] == [p.shape for p in ours.parameters()]
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.track_running_stats for m in norms)  # as the reference's batch norm

    step = bench.ReferencePix2PixStep(G, D)
    batch = bench.first_batch(recipe, torch.device("cpu"))
    before_G, before_D = [p.clone() for p in G.parameters()], [p.clone() for p in D.parameters()]
    step(batch.gen_input, batch.real)
    assert all(not torch.equal(a, b) for a, b in zip(before_G, G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before_D, D.parameters()))
    assert all(m.num_batches_tracked.item() == 1 for m in norms)
    assert all(p.requires_grad is False for p in D.parameters())  # left frozen after the G step, as there


# --- the speed settings keep the maths ---

def run_step(recipe, batches, channels_last=False, fused=False, bf16=False) -> list[dict[str, float]]:
    """Losses of the real training step over `batches`, from the recipe's initial networks."""
    G, D = bench.TASK.make_networks(recipe)  # seeded by the recipe: the same initial weights every call
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    cfg = recipe.train
    opt_G = torch.optim.Adam(G.parameters(), cfg.lr_generator, betas=cfg.betas, fused=fused, foreach=False)
    opt_D = torch.optim.Adam(D.parameters(), cfg.lr_discriminator, betas=cfg.betas, fused=fused, foreach=False)
    step = train.TrainStep(bench.TASK, recipe, G, D, G, D, opt_G, opt_D, bf16, torch.device("cpu"))
    return [{k: v.item() for k, v in step(batch, i).items()} for i, batch in enumerate(batches)]


@pytest.fixture
def recipe_and_batches(tiny_recipe):
    # Without dropout: its mask is drawn in memory order, so channels_last would draw a different (equally
    # random) mask, and equal losses could not be asked for.
    recipe = tiny_recipe(3, 2, "model.dropout=false")
    torch.manual_seed(0)
    batches = [bench.first_batch(recipe, torch.device("cpu")) for _ in range(3)]
    return recipe, batches


@pytest.mark.parametrize("settings", [{"channels_last": True}, {"fused": True},
                                      {"channels_last": True, "fused": True}])
def test_channels_last_and_fused_adam_give_the_same_losses(recipe_and_batches, settings):
    recipe, batches = recipe_and_batches
    plain, fast = run_step(recipe, batches), run_step(recipe, batches, **settings)
    assert plain[0].keys() == fast[0].keys() and "loss/G/l1/step3" in plain[0]
    for iteration, (a, b) in enumerate(zip(plain, fast)):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-5), (iteration, key)


def test_bf16_autocast_gives_the_same_losses_within_bf16_tolerance(recipe_and_batches):
    recipe, batches = recipe_and_batches
    plain, bf16 = run_step(recipe, batches), run_step(recipe, batches, bf16=True)
    for iteration, (a, b) in enumerate(zip(plain, bf16)):  # bf16 keeps 8 bits of mantissa: 0.4 % a rounding,
        for key in a:                                       # averaged down in the losses (measured ≤ 0.06 %)
            assert b[key] == pytest.approx(a[key], rel=1e-2, abs=1e-3), (iteration, key)
    assert bf16[0] != plain[0]  # autocast really ran in bf16


@pytest.mark.gpu
def test_on_cuda_the_default_speed_settings_keep_the_losses(tiny_recipe):
    """bf16 autocast, channels_last and fused Adam as fal train builds them, over 3 updates: the losses of
    every iteration (iteration 0 alone comes before any optimizer step, so would never check fused Adam)."""
    recipe = tiny_recipe(3, 2, "model.dropout=false")
    device = torch.device("cuda")
    fast = bench.fal_step(recipe, device)
    assert bench.describe(fast) == "bf16 autocast, channels_last, fused Adam"
    plain = plain_cuda_step(recipe, device)
    batches = [bench.first_batch(recipe, device) for _ in range(3)]
    for iteration, batch in enumerate(batches):
        a, b = plain(batch, iteration), fast(batch, iteration)
        for key in a:
            assert b[key].item() == pytest.approx(a[key].item(), rel=3e-2, abs=1e-2), (iteration, key)


@pytest.mark.gpu
def test_on_cuda_fused_adam_and_channels_last_keep_the_weights_in_fp32(tiny_recipe, monkeypatch):
    """Without bf16, fal train's CUDA step (channels_last, fused Adam) against plain NCHW torch.optim.Adam:
    the same weights after 3 updates, so fused Adam's update itself is checked. TF32 off: cuDNN would pick
    other TF32 algorithms for the two memory formats (measured on the CPU: ≤ 3.1e-8 apart)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    recipe = tiny_recipe(3, 2, "model.dropout=false", "train.precision=fp32")
    device = torch.device("cuda")
    fast = bench.fal_step(recipe, device)
    assert bench.describe(fast) == "fp32, channels_last, fused Adam"
    plain = plain_cuda_step(recipe, device)
    for iteration in range(3):
        batch = bench.first_batch(recipe, device)
        plain(batch, iteration), fast(batch, iteration)
    for ours, theirs in ((fast.G, plain.G), (fast.D, plain.D)):
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name


def plain_cuda_step(recipe, device: torch.device) -> train.TrainStep:
    """The same networks in fp32, NCHW, updated by torch.optim.Adam's default (for-each) implementation."""
    G, D = bench.TASK.make_networks(recipe)
    G, D = G.to(device), D.to(device)
    cfg = recipe.train
    return train.TrainStep(bench.TASK, recipe, G, D, G, D, torch.optim.Adam(G.parameters(), cfg.lr_generator,
                           betas=cfg.betas), torch.optim.Adam(D.parameters(), cfg.lr_discriminator,
                           betas=cfg.betas), False, device)


def test_benchmarks_import_only_names_that_exist():
    """benchmarks/ are scripts no other test runs: a moved function must not leave one of them broken."""
    missing = []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(script.read_text())
        # a fallback for older checkouts (try: the new name / except ImportError: the old one) is allowed
        guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try) for node in ast.walk(block)}
        for node in ast.walk(tree):
            if (not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("falcli")
                    or id(node) in guarded):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name) and importlib.util.find_spec(f"{node.module}.{alias.name}") is None:
                    missing.append(f"{script.name}: from {node.module} import {alias.name}")
    assert not missing, missing


def test_toy_sw_scores_every_step_and_dot_starts_from_the_rows_own_samples(tmp_path, toy_recipe, capsys,
                                                                            monkeypatch):
    """benchmarks/toy_sw.py on a toy_sweep layout: one sw.json row per seed and step; DOT's t = 1 is the plain
    row's t = 1 (the same latents), and its t = 2 moves the points."""
    spec = importlib.util.spec_from_file_location("toy_sw", ROOT / "benchmarks" / "toy_sw.py")
    toy_sw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy_sw)
    row = tmp_path / "toy-sweep" / "plain"
    per_seed = []
    for seed in (0, 1):
        recipe = toy_recipe("feedback.steps=1", f"seed={seed}")
        train.run(recipe, train.RunOptions(out=row / f"seed{seed}", device="cpu"))
        per_seed.append([{"recall": 0.5, "coverage": 0.25}])
    (row / "result.json").write_text(json.dumps({"per_seed": per_seed}))
    monkeypatch.setattr(sys, "argv", ["toy_sw.py", "plain", "--samples", "300", "--dot", "plain",
                                      "--coverage-samples", "200", "--root", str(tmp_path / "toy-sweep")])
    toy_sw.main()
    result = json.loads((row / "sw.json").read_text())
    plain, dot = result["rows"]["plain"], result["rows"]["plain+dot"]
    assert len(result["dot_evaluated"]) == 2 and all("coverage" in step for step in result["dot_evaluated"][0])
    assert result["seeds"] == [0, 1] and len(plain) == 2 and len(plain[0]) == 1 and len(dot[0]) == 2
    for seed_plain, seed_dot in zip(plain, dot):
        assert seed_dot[0] == pytest.approx(seed_plain[0])
        assert seed_dot[1]["sw_to_mixture"] != seed_plain[0]["sw_to_mixture"]
    table = capsys.readouterr().out
    assert "| plain | 2 | 1 |" in table and "| 0.500 ± 0.000 | 0.250 ± 0.000 |" in table
    dot_rows = [line for line in table.splitlines() if line.startswith("| plain+dot |")]
    assert len(dot_rows) == 2 and "—" not in "".join(dot_rows)  # DOT's own recall and coverage, every step
