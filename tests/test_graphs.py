"""train.cuda_graph: the whole step replayed from CUDA graphs keeps the maths (on a GPU), and is refused in one
line where it cannot run; the pieces it relies on (in-place learning rates, static batches) on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from falcli.core import checkpoint, cuda_graphs as graphs
from falcli.commands import train
from falcli.cli import app
from falcli.config import load_recipe
from falcli.errors import FalError
from falcli.tasks.base import Batch

ROOT = Path(__file__).resolve().parents[1]


def test_on_the_cpu_the_flag_is_a_one_line_error_and_nothing_is_written(tmp_path):
    result = CliRunner().invoke(app, ["train", str(ROOT / "recipes/toy.yaml"), "--device", "cpu",
                                      "--set", "train.cuda_graph=true", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "train.cuda_graph needs a CUDA device" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_learning_rate_changes_in_place_so_a_captured_graph_sees_it():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=2e-4)
    graphs.settle_optimizer(optimizer, capturable=True, device=torch.device("cpu"))
    group = optimizer.param_groups[0]
    rate = group["lr"]
    assert torch.is_tensor(rate) and group["capturable"]
    graphs.set_learning_rate(group, 1e-4)
    assert group["lr"] is rate and rate.item() == pytest.approx(1e-4)
    graphs.settle_optimizer(optimizer, capturable=False, device=torch.device("cpu"))  # resumed without graphs
    assert group["lr"] == pytest.approx(1e-4) and not torch.is_tensor(group["lr"]) and not group["capturable"]


def test_a_checkpoint_with_tensor_learning_rates_resumes_without_graphs(tmp_path, toy_recipe):
    recipe = toy_recipe("train.lr_decay_start=3")
    run_dir = train.run(recipe, train.RunOptions(out=tmp_path / "run", device="cpu"))
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[0]
    payload = checkpoint.load(path)
    for name in ("opt_G", "opt_D"):  # as a train.cuda_graph run on a GPU writes them
        for group in payload[name]["param_groups"]:
            group["lr"], group["capturable"] = torch.tensor(group["lr"]), True
    checkpoint.atomic_save(payload, path)
    (run_dir / "checkpoints" / checkpoint.checkpoint_name(12)).unlink()
    train.run(recipe, train.RunOptions(out=run_dir, device="cpu", resume=str(path)))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    decayed = [line["lr/G"] for line in lines if line["kind"] == "train"][-2:]  # the resumed run's lines
    rate = recipe.train.lr_generator
    assert decayed == pytest.approx([rate * (1 - 5 / 9), rate * (1 - 8 / 9)])  # the decay went on, as floats


def test_the_static_batch_is_refilled_in_place_and_refuses_another_shape():
    batch = Batch(real=torch.zeros(2, 3), gen_input=torch.zeros(2, 4), extras={"labels": torch.zeros(2)})
    static = graphs.clone_batch(batch)
    where = static.real.data_ptr(), static.gen_input.data_ptr(), static.extras["labels"].data_ptr()
    graphs.copy_batch(Batch(real=torch.ones(2, 3), gen_input=torch.ones(2, 4), extras={"labels": torch.ones(2)}),
                      static)
    assert (static.real.data_ptr(), static.gen_input.data_ptr(), static.extras["labels"].data_ptr()) == where
    assert static.real.sum() == 6 and static.gen_input.sum() == 8 and static.extras["labels"].sum() == 2
    with pytest.raises(FalError, match="batch field real changed shape"):
        graphs.copy_batch(Batch(real=torch.ones(1, 3), gen_input=torch.ones(1, 4), extras={}), static)


# --- on a GPU: the same losses with and without the graph ---

STREETS_TINY = [
    "data.image_size=32", "data.load_size=36", "data.train_count=8", "data.val_count=4",
    "model.generator_channels=8", "model.depth=3", "model.discriminator_channels=8",
    "model.discriminator_layers=2", "feedback.encoder_channels=4", "feedback.hidden_channels=4",
    "train.batch_size=2", "train.sample_every=0", "evaluate.num_samples=4",
]


def losses_with_and_without_graph(tmp_path, recipe_file: str, overrides: list[str]) -> tuple[list, list]:
    runs = []
    for graphed in (False, True):
        recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides + [
            "train.iterations=12", "train.log_every=1", "train.checkpoint_every=12", "train.lr_decay_start=4",
            f"train.cuda_graph={str(graphed).lower()}"])
        torch.manual_seed(0)
        run_dir = train.run(recipe, train.RunOptions(out=tmp_path / f"graph-{graphed}", device="cuda"))
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        runs.append([{k: v for k, v in line.items() if k.startswith("loss/")} for line in lines
                     if line["kind"] == "train"])
    return runs[0], runs[1]


@pytest.mark.gpu
@pytest.mark.parametrize("recipe_file, overrides, tolerance", [
    # fp32, lazy R1 every 2nd iteration (two captured variants), WGAN-GP (random draws inside the graph)
    ("toy.yaml", ["model.hidden=32", "data.points=512", "train.batch_size=64", "loss.adversarial=wgan-gp",
                  "loss.r1_weight=1", "loss.r1_every=2", "train.precision=fp32"], 1e-4),
    # bf16 autocast, channels_last, batch norm and dropout in a U-Net with feedback
    ("streets.yaml", STREETS_TINY + ["model.dropout=false"], 3e-2),
])
def test_cuda_graph_keeps_the_losses(tmp_path, recipe_file, overrides, tolerance):
    eager, graphed = losses_with_and_without_graph(tmp_path, recipe_file, overrides)
    assert len(eager) == len(graphed) == 12
    for iteration, (a, b) in enumerate(zip(eager, graphed), start=1):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=tolerance, abs=tolerance), (iteration, key)
