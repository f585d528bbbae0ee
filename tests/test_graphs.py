"""train.cuda_graph: the whole step replayed from CUDA graphs keeps the maths (on a GPU), and is refused in one
line where it cannot run; the pieces it relies on (in-place learning rates, static batches) on the CPU."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from falcli.core import checkpoint, cuda_graphs as graphs, runtime
from falcli.commands import train
from falcli.cli import app
from falcli.resolve import load_recipe
from falcli.errors import FalError
from falcli.data.loader import batch_stream
from falcli.core.losses import gradient_penalty, r1_penalty
from falcli.tasks import TASKS
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


def test_a_checkpoint_written_on_a_gpu_with_graphs_resumes_on_the_cpu_as_a_cpu_run(tmp_path, toy_recipe):
    recipe = toy_recipe("train.lr_decay_start=3")
    run_dir = train.run(recipe, train.RunOptions(out=tmp_path / "run", device="cpu"))
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[0]
    payload = checkpoint.load(path)
    for name in ("opt_G", "opt_D"):  # as a train.cuda_graph run on a GPU writes them: fused, capturable
        for group in payload[name]["param_groups"]:
            group["lr"], group["capturable"], group["fused"], group["foreach"] = torch.tensor(group["lr"]), True, \
                True, None
    checkpoint.atomic_save(payload, path)
    (run_dir / "checkpoints" / checkpoint.checkpoint_name(12)).unlink()
    train.run(recipe, train.RunOptions(out=run_dir, device="cpu", resume=str(path)))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    decayed = [line["lr/G"] for line in lines if line["kind"] == "train"][-2:]  # the resumed run's lines
    rate = recipe.train.lr_generator
    assert decayed == pytest.approx([rate * (1 - 5 / 9), rate * (1 - 8 / 9)])  # the decay went on, as floats
    final = checkpoint.load(run_dir / "checkpoints" / checkpoint.checkpoint_name(12))
    for name in ("opt_G", "opt_D"):  # the CPU build's update, not the checkpoint's
        for group in final[name]["param_groups"]:
            assert not group["fused"] and not group["capturable"] and isinstance(group["lr"], float)
        assert all(state["step"].item() == 12 for state in final[name]["state"].values())


def adam_states(fused_after: bool) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, list, list]:
    """An Adam run 3 steps, and its state loaded into a new Adam built with fused=`fused_after`."""
    torch.manual_seed(0)
    first = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    original = torch.optim.Adam(first, lr=1e-2)
    for _ in range(3):
        original.zero_grad()
        sum((p ** 2).sum() for p in first).backward()
        original.step()
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    resumed = torch.optim.Adam(second, lr=1e-2, fused=fused_after)
    resumed.load_state_dict(copy.deepcopy(original.state_dict()))  # its own tensors, as read from a file
    return original, resumed, first, second


def test_resuming_in_a_fused_build_keeps_fused_adam_and_continues_the_same_update():
    original, resumed, first, second = adam_states(fused_after=True)
    assert not resumed.param_groups[0]["fused"]  # what load_state_dict alone leaves: the checkpoint's setting
    graphs.settle_optimizer(resumed, capturable=False, device=torch.device("cpu"))
    assert resumed.param_groups[0]["fused"] and resumed.param_groups[0]["foreach"] is None
    for optimizer, params in ((original, first), (resumed, second)):
        for _ in range(2):
            optimizer.zero_grad()
            sum((p ** 2).sum() for p in params).backward()
            optimizer.step()
    for a, b in zip(first, second):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_cpu_checkpoint_moves_its_step_counters_to_the_parameters_device_for_capturable_updates():
    """A CPU checkpoint resumed with graphs on a GPU: capturable Adam refuses step counters on the CPU. The
    GPU is simulated by the meta device (parameters without data); settle moves every counter there."""
    param = torch.nn.Parameter(torch.empty(3, device="meta"))
    optimizer = torch.optim.Adam([param], lr=2e-4)
    optimizer.state[param]["step"] = torch.tensor(6.0)  # as load_state_dict leaves a non-fused CPU checkpoint's
    graphs.settle_optimizer(optimizer, capturable=False, device=torch.device("meta"))
    assert optimizer.state[param]["step"].device.type == "cpu"  # non-capturable, non-fused: a CPU scalar
    graphs.settle_optimizer(optimizer, capturable=True, device=torch.device("meta"))
    assert optimizer.state[param]["step"].device.type == "meta"
    assert optimizer.param_groups[0]["lr"].device.type == "meta" and optimizer.param_groups[0]["capturable"]


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


def toy_step(recipe, device: torch.device, graphed: bool = False):
    """The toy recipe's step as `fal train` builds it, and a stream of its training batches."""
    task = TASKS["toy"]
    G, D = train.build_networks(task, recipe, device)
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, device)
    step = train.TrainStep(task, recipe, G, D, G, D, opt_G, opt_D, runtime.use_bf16(recipe.train.precision, device),
                           device)
    stream = batch_stream(task.make_dataset(recipe, "train"), recipe.train.batch_size, recipe.seed)
    batches = (task.make_batch(runtime.to_device(next(stream), device), recipe, training=True) for _ in iter(int, 1))
    return (graphs.GraphedStep(step) if graphed else step), batches


def test_the_step_returns_losses_without_their_autograd_graphs(toy_recipe):
    """A loss kept with its graph keeps the parameters' AccumulateGrad nodes alive into the next step, which a
    CUDA graph's capture (another stream) then trips on."""
    step, batches = toy_step(toy_recipe("loss.adversarial=wgan-gp", "loss.r1_every=2"), torch.device("cpu"))
    for iteration in range(2):  # with and without lazy R1
        stats = step(next(batches), iteration)
        assert "loss/D/gp" in stats and ("loss/D/r1" in stats) == (iteration == 0)
        for key, value in stats.items():
            assert value.grad_fn is None and not value.requires_grad, key


class AutocastProbe(torch.autograd.Function):
    """Identity that records, in its backward, whether autocast was on."""

    seen: list[bool] = []

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        AutocastProbe.seen.append(torch.is_autocast_enabled("cpu"))
        return grad


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_penalties_take_their_input_gradient_outside_autocast_and_in_fp32(penalty):
    layers = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.LeakyReLU(0.2), torch.nn.Linear(8, 1))
    D = lambda x: layers[2](AutocastProbe.apply(layers[1](layers[0](x))))  # noqa: E731
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    AutocastProbe.seen = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(real)
        value = r1_penalty(D, real) if penalty == "r1" else gradient_penalty(D, real, fake)
        assert logits.dtype == torch.bfloat16  # D's forward itself does run in bf16 here
    assert AutocastProbe.seen == [False]  # the penalty's autograd.grad: autocast off
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()  # and the penalty stays differentiable for D's update
    assert layers[0].weight.grad is not None and torch.isfinite(layers[0].weight.grad).all()


def test_a_single_process_run_makes_its_gpu_the_current_one(monkeypatch):
    """--device cuda:1 without torchrun: cuda:1 becomes the current device, so that torch.cuda.graph's capture
    stream and everything else made without a device is on the run's GPU (simulated: no GPU here)."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert runtime.start_processes("cuda:1")[1] == torch.device("cuda", 1)
    assert runtime.start_processes("cuda")[1] == torch.device("cuda", 0)  # "cuda" names the current one
    assert chosen == [torch.device("cuda", 1), torch.device("cuda", 0)]
    with pytest.raises(FalError, match="--device cuda:2: this machine has 2 CUDA device"):
        runtime.pick_device("cuda:2")


def test_an_empty_capture_is_refused_and_other_capture_warnings_pass_on():
    def caught(message: str) -> list[warnings.WarningMessage]:
        with warnings.catch_warnings(record=True) as found:
            warnings.simplefilter("always")
            warnings.warn(message, UserWarning)
        return found

    with pytest.raises(FalError, match="recorded no GPU work"):
        graphs.check_capture_warnings(caught("The CUDA Graph is empty. This usually means …"))
    with pytest.warns(UserWarning, match="The AccumulateGrad node's stream"):
        graphs.check_capture_warnings(caught("The AccumulateGrad node's stream does not match"))


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
    # …with dropout: its masks drawn inside the graph (CUDA graphs advance the Philox offset per replay as
    # eager kernels do, so the draws are the eager run's)
    ("streets.yaml", STREETS_TINY + ["model.dropout=true"], 3e-2),
])
def test_cuda_graph_keeps_the_losses(tmp_path, recipe_file, overrides, tolerance):
    eager, graphed = losses_with_and_without_graph(tmp_path, recipe_file, overrides)
    assert len(eager) == len(graphed) == 12
    for iteration, (a, b) in enumerate(zip(eager, graphed), start=1):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=tolerance, abs=tolerance), (iteration, key)


# --- on a GPU: final weights, variants, workers, resume and warnings ---

# fp32 toy with lazy R1 every 2nd iteration and LR decay. The vanilla loss, not WGAN-GP: a WGAN critic's
# last-layer biases can have an analytically zero gradient, whose rounding noise Adam turns into ~0.1·lr
# steps, so two float-level-different runs part by ~1e-4 there (tests/test_distributed.py's docstring).
TOY_GPU = ["model.hidden=32", "data.points=512", "train.batch_size=64", "loss.adversarial=vanilla",
           "loss.r1_weight=1", "loss.r1_every=2", "train.precision=fp32", "train.iterations=12",
           "train.log_every=1", "train.checkpoint_every=6", "train.lr_decay_start=4", "train.sample_every=0"]


def toy_run(out: Path, *overrides: str, device: str = "cuda", workers: int = 0, resume: str | None = None) -> dict:
    recipe = load_recipe(ROOT / "recipes" / "toy.yaml", TOY_GPU + list(overrides))
    run_dir = train.run(recipe, train.RunOptions(out=out, device=device, workers=workers, resume=resume))
    return checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    for net in ("G", "D"):
        for name, tensor in a[net].items():
            assert torch.allclose(tensor.float(), b[net][name].float(), atol=atol, rtol=1e-4), f"{net}.{name}"


@pytest.mark.gpu
def test_cuda_graph_keeps_the_final_weights_after_updates_with_decaying_rates(tmp_path):
    """Weights after 12 updates (fused Adam, capturable, rates decaying in place from iteration 4): an empty
    graph, a rate the graph does not see or a lost update would all show here; losses alone at iteration 0
    would not."""
    eager = toy_run(tmp_path / "eager", "train.cuda_graph=false")
    graphed = toy_run(tmp_path / "graphed", "train.cuda_graph=true")
    assert_same_weights(eager, graphed)
    start = load_recipe(ROOT / "recipes" / "toy.yaml", TOY_GPU)
    G0, _ = TASKS["toy"].make_networks(start)
    moved = max((graphed["G"][k].cpu() - v).abs().max().item() for k, v in G0.state_dict().items())
    assert moved > 1e-3  # the replays trained: an empty graph would leave G at its initial weights
    assert all(group["capturable"] and group["fused"] for group in graphed["opt_G"]["param_groups"])


@pytest.mark.gpu
def test_lazy_r1_captures_exactly_two_variants_after_their_warm_ups(toy_recipe):
    recipe = toy_recipe("train.precision=fp32", "loss.r1_weight=1", "loss.r1_every=2", "train.cuda_graph=true")
    step, batches = toy_step(recipe, torch.device("cuda"), graphed=True)
    losses = []
    for iteration in range(2 * graphs.WARMUP_RUNS + 6):
        stats = step(next(batches), iteration)
        assert ("loss/D/r1" in stats) == (iteration % 2 == 0)
        losses.append(stats["loss/D"].item())  # read before the next replay overwrites it
    assert sorted(step.captured) == [False, True]
    assert step.eager_runs == {False: graphs.WARMUP_RUNS, True: graphs.WARMUP_RUNS}
    assert len(set(losses[-4:])) == 4  # replays compute new losses (an empty graph would repeat them)


@pytest.mark.gpu
def test_cuda_graph_with_two_workers_and_pinned_memory(tmp_path):
    """The DataLoader's pin-memory thread allocates while the main thread captures (capture_error_mode
    thread_local); the batches, and so the weights, are those of a run without workers."""
    alone = toy_run(tmp_path / "alone", "train.cuda_graph=true")
    with_workers = toy_run(tmp_path / "workers", "train.cuda_graph=true", workers=2)
    assert_same_weights(alone, with_workers, atol=0)


@pytest.mark.gpu
def test_a_cpu_checkpoint_resumes_on_the_gpu_with_graphs(tmp_path):
    """CPU Adam state (non-fused, step counters on the CPU) continued by capturable fused Adam; the same
    weights as the same checkpoint continued on the GPU without graphs."""
    cpu = tmp_path / "cpu"
    toy_run(cpu, device="cpu")  # its checkpoint at 6 is continued on the GPU
    first = cpu / "checkpoints" / checkpoint.checkpoint_name(6)
    eager = toy_run(tmp_path / "eager", "train.cuda_graph=false", resume=str(first))
    graphed = toy_run(tmp_path / "graphed", "train.cuda_graph=true", resume=str(first))
    assert_same_weights(eager, graphed)
    for payload, capturable in ((eager, False), (graphed, True)):
        for group in payload["opt_D"]["param_groups"]:
            assert group["fused"] and group["capturable"] == capturable


@pytest.mark.gpu
def test_graph_capture_raises_no_stream_warnings_under_w_error(tmp_path):
    """In a fresh process (both are warned once per process): -W error on the stale-AccumulateGrad-stream
    warning, and an empty capture refused by fal itself."""
    sets = [arg for item in TOY_GPU + ["train.cuda_graph=true"] for arg in ("--set", item)]
    command = [sys.executable, "-W", "error:The AccumulateGrad node's stream:UserWarning",
               "-W", "error:The CUDA Graph is empty:UserWarning", "-m", "falcli", "train",
               str(ROOT / "recipes/toy.yaml"), "--device", "cuda", "--out", str(tmp_path / "run"), *sets]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "AccumulateGrad" not in output and "CUDA Graph is empty" not in output


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_cuda_graph_on_a_gpu_that_is_not_the_first(tmp_path):
    """--device cuda:N with N > 0: the capture must record on cuda:N's stream (else the graph is empty)."""
    last = f"cuda:{torch.cuda.device_count() - 1}"
    eager = toy_run(tmp_path / "eager", "train.cuda_graph=false", device=last)
    graphed = toy_run(tmp_path / "graphed", "train.cuda_graph=true", device=last)
    assert_same_weights(eager, graphed)
