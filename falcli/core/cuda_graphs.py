"""The whole training step replayed from CUDA graphs (`train.cuda_graph: true`).

At the paper's batch size a GAN step is hundreds of small kernels, and launching them from Python costs more
than running them; a CUDA graph replays the recorded kernels with one launch. On an H100 that alone made the
reference pix2pix step 2–3.4× faster (ecosystem.md §8). The maths are the step's own: the graph records
`falcli.commands.train.TrainStep.__call__`, the call that eager training makes.

What capture needs, and how it gets it:
- fixed shapes and addresses: each batch is copied into one static batch that the graph reads, and the
  losses come back in the same static tensors after every replay (read them before the next one);
- no host synchronisation inside the step: TrainStep keeps its losses on the device;
- an optimizer that can run inside a graph: fused Adam with `capturable`, its learning rate a device tensor
  that the linear decay changes in place between replays (`set_learning_rate`);
- warm-up: every variant of the step (lazy R1 makes two: with and without the penalty) runs eagerly a few
  times on a side stream before its capture, so that lazy initialisation (cuBLAS workspaces, Adam's state)
  never happens while capturing; the capture runs on that same stream, on the run's device (the process's
  current one, falcli/core/runtime.py), and the step returns detached losses, so no autograd node of the warm-up
  outlives it;
- autocast without its cast cache, as PyTorch's CUDA-graph notes require.

One process only for now: capture under DDP needs its own warm-up rules and could not be tested here.
"""
from __future__ import annotations

import dataclasses
import warnings

import torch

from falcli.errors import FalError
from falcli.tasks.base import Batch

WARMUP_RUNS = 3  # eager runs of each step variant before it is captured (PyTorch's examples use 3)


def check_supported(device: torch.device, world: int) -> None:
    """Refuse, in one line, a run that asks for graphs where they cannot work."""
    if device.type != "cuda":
        raise FalError(f"train.cuda_graph needs a CUDA device, and this run is on {device.type}; "
                       f"set train.cuda_graph=false")
    if world > 1:
        raise FalError("train.cuda_graph is not supported under torchrun yet; set train.cuda_graph=false "
                       "for multi-process runs")


def set_learning_rate(group: dict, value: float) -> None:
    """Set a param group's learning rate: in place when it is a tensor, because a captured graph reads that
    very tensor (assigning a new one would leave the graph on the old rate)."""
    if torch.is_tensor(group["lr"]):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def settle_optimizer(optimizer: torch.optim.Optimizer, capturable: bool, device: torch.device) -> None:
    """Make a just-loaded optimizer update the way this run builds it, whatever run wrote the checkpoint.

    load_state_dict replaces each param group by the saved one, so without this a CPU checkpoint resumed on
    CUDA keeps `fused=False` (silently slower) and its step counters on the CPU, which capturable Adam refuses
    ("params and state_steps must be on supported devices"); a CUDA checkpoint resumed on the CPU keeps fused
    and capturable. Settled here: `fused` and `foreach` as this optimizer was constructed (make_optimizers
    chose them for this device), `capturable` as asked, the rate a device tensor exactly when capturable (a
    graph reads it in place), and every step counter where that setting keeps it: on its parameter's device
    for fused or capturable updates, a CPU scalar otherwise (as Adam creates it, read without a GPU sync).
    """
    for group in optimizer.param_groups:
        rate = float(group["lr"])
        for key in ("fused", "foreach"):
            group[key] = optimizer.defaults.get(key)
        group["capturable"] = capturable
        group["lr"] = torch.tensor(rate, device=device) if capturable else rate
        on_device = capturable or bool(group["fused"])
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(param.device if on_device else "cpu")


class GraphedStep:
    """Call it exactly like the `TrainStep` it wraps: step(batch, iteration) -> losses on the device."""

    def __init__(self, step, warmup: int = WARMUP_RUNS) -> None:
        self.step = dataclasses.replace(step, autocast_cache=False)
        self.warmup = warmup
        self.eager_runs: dict[bool, int] = {}
        self.captured: dict[bool, tuple[torch.cuda.CUDAGraph, Batch, dict[str, torch.Tensor]]] = {}
        self.side_stream = torch.cuda.Stream(device=step.device)

    def variant(self, iteration: int) -> bool:
        """What changes the recorded kernels from one iteration to the next: whether lazy R1 runs."""
        loss = self.step.recipe.loss
        return bool(loss.r1_weight) and iteration % loss.r1_every == 0

    def __call__(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        variant = self.variant(iteration)
        if variant in self.captured:
            graph, static_batch, static_losses = self.captured[variant]
            copy_batch(batch, static_batch)
            graph.replay()
            return static_losses
        if self.eager_runs.get(variant, 0) < self.warmup:
            self.eager_runs[variant] = self.eager_runs.get(variant, 0) + 1
            return self._eager_on_side_stream(batch, iteration)
        static_batch = clone_batch(batch)
        graph = torch.cuda.CUDAGraph()
        # On the warm-up's stream and device: torch.cuda.graph's own default stream is made on whichever GPU is
        # current when it is first used, and a capture on another GPU's stream records nothing.
        # thread_local: the DataLoader's pin-memory thread may allocate pinned memory while this thread captures.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.cuda.graph(graph, stream=self.side_stream, capture_error_mode="thread_local"):
                static_losses = self.step(static_batch, iteration)
        check_capture_warnings(caught)
        graph.replay()  # capture only records: this iteration's update happens now
        self.captured[variant] = (graph, static_batch, static_losses)
        return static_losses

    def _eager_on_side_stream(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        current = torch.cuda.current_stream(self.step.device)
        self.side_stream.wait_stream(current)
        with torch.cuda.stream(self.side_stream):
            losses = self.step(batch, iteration)
        current.wait_stream(self.side_stream)
        return losses


def check_capture_warnings(caught: list[warnings.WarningMessage]) -> None:
    """An empty graph replays as nothing, every iteration, with the logged losses frozen: refuse it in one
    line. Other warnings of the capture are passed on to the filters in force (-W error included)."""
    for warning in caught:
        if "CUDA Graph is empty" in str(warning.message):
            raise FalError("train.cuda_graph: the captured step recorded no GPU work (captured on another "
                           "device's stream?), so replays would not train; set train.cuda_graph=false and "
                           "report this")
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def clone_batch(batch: Batch) -> Batch:
    """A batch with its own storage, that the graph reads at every replay."""
    own = lambda v: v.clone() if torch.is_tensor(v) else v  # noqa: E731
    return Batch(real=own(batch.real), gen_input=own(batch.gen_input), condition=own(batch.condition),
                 extras={k: own(v) for k, v in batch.extras.items()})


def copy_batch(source: Batch, target: Batch) -> None:
    """Copy a new batch into the static one; a batch of another shape cannot be replayed."""
    def copy(name: str, src: torch.Tensor, dst: torch.Tensor) -> None:
        if src.shape != dst.shape:
            raise FalError(f"train.cuda_graph: batch field {name} changed shape ({tuple(dst.shape)} → "
                           f"{tuple(src.shape)}); a graph replays fixed shapes, set train.cuda_graph=false")
        dst.copy_(src, non_blocking=True)

    for name in ("real", "gen_input", "condition"):
        src, dst = getattr(source, name), getattr(target, name)
        if torch.is_tensor(dst):
            copy(name, src, dst)
    for name, dst in target.extras.items():
        if torch.is_tensor(dst):
            copy(f"extras[{name!r}]", source.extras[name], dst)

