"""Will a recipe's training step fit? Estimated on the meta device (no memory), compared with the machine.

Training holds, per parameter, fp32 weights, gradients, Adam's two moments and at most an EMA copy: 20 bytes.
On top come the activations of one training step at the recipe's batch size: the G step keeps, for backward,
the outputs of every layer of T generator passes and of the T discriminator passes that score them; the D step
those of D on the reals and on every step's fakes. Both are measured by running G and D on meta tensors with a
forward hook on every leaf module that sums the bytes of what it returns (fp32: under bf16 autocast a step
needs less). docs/reliability.md compares the estimate with a measured peak.

Two checks, each naming the key that most likely made the recipe too large:
- `check_parameters`, wherever a recipe is loaded (falcli/resolve.py; `fal sample` on a checkpoint too; not in
  a torch-free `--dry-run` of a default-sized recipe), before a single weight is
  allocated: G and D alone against the larger of this machine's RAM and its largest GPU (building on the meta
  device is cheap; the forward passes of the activation count are not, so they are left to the next check);
- `check_training`, before `fal train` builds anything (and in a `--dry-run` that imports torch anyway): the
  whole step against the device
  it picked (the RAM available now on the CPU, the GPU's memory on CUDA).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from falcli.core.batch import Batch
from falcli.core.feedback import unroll
from falcli.errors import FalError

BYTES_PER_PARAMETER = 20
# Keys that scale the activations, besides the model's widths: what a refusal may tell the user to lower.
ACTIVATION_KEYS = ("train.batch_size", "feedback.steps", "data.image_size", "data.resolution")


@dataclass(frozen=True)
class Estimate:
    parameters: int                     # of G and D together
    activation_bytes: int               # the larger of the G step's and the D step's, at the per-process batch
    batch_size: int                     # the per-process batch the activations were counted at

    @property
    def parameter_bytes(self) -> int:
        return self.parameters * BYTES_PER_PARAMETER

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes

    def describe(self) -> str:
        return (f"{self.parameters / 1e6:.2f} M parameters in G and D; ~{_gib(self.total_bytes)} to train at "
                f"batch {self.batch_size} ({_gib(self.parameter_bytes)} weights, gradients and Adam state, "
                f"{_gib(self.activation_bytes)} activations)")


def parameters(recipe, task) -> int | str:
    """Parameters of G and D together, or why they cannot be counted before the data is there."""
    return _cached(("parameters", id(task), recipe.model, recipe.data, recipe.feedback, recipe.method),
                   lambda: _on_meta(task, recipe, None))


def estimate(recipe, task, world: int = 1) -> Estimate | str:
    """The memory one of `world` training processes needs, or why it cannot be estimated yet."""
    batch = max(1, math.ceil(recipe.train.batch_size / max(1, world)))  # the global batch is split
    # Only these sections shape the networks and the step (the seed and the schedule do not): a recipe loaded
    # again (from its checkpoint, or with another --set train.iterations) reuses its estimate.
    return _cached(("estimate", id(task), recipe.model, recipe.data, recipe.feedback, recipe.method, batch),
                   lambda: _on_meta(task, recipe, batch))


_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, compute):
    try:
        hash(key)
    except TypeError:  # a config holding a list: estimated every time
        return compute()
    if key not in _CACHE:
        if len(_CACHE) >= 64:
            _CACHE.clear()
        _CACHE[key] = compute()
    return _CACHE[key]


def _on_meta(task, recipe, batch: int | None):
    """G and D built on the meta device: their parameter count, or (batch given) the whole Estimate."""
    state = torch.random.get_rng_state()  # make_networks seeds the global RNG; loading must not shift it
    try:
        with torch.device("meta"):
            G, D, input_shape = task.memory_probe(recipe)
            count = sum(p.numel() for module in (G, D) for p in module.parameters())
            if batch is None:
                return count
            return Estimate(count, _activation_bytes(task, recipe, G, D, (batch, *input_shape)), batch)
    except FalError as error:
        return f"skipped: {error}"
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError) as error:
        # an op the meta device lacks: no estimate rather than a refusal
        return f"skipped: the networks do not run on the meta device ({type(error).__name__})"
    finally:
        torch.random.set_rng_state(state)


def _activation_bytes(task, recipe, G: nn.Module, D: nn.Module, input_shape: tuple[int, ...]) -> int:
    """max(G step, D step) of the bytes the leaf modules return, on meta tensors (nothing is computed).

    Steps 2 … T are alike (the same networks on inputs of the same shapes), so at most two are run and the
    last one counted T − 2 more times: feedback.steps=100000 is estimated as fast as 3.
    """
    passes: dict[str, list[int]] = {"G": [], "D": []}  # bytes returned by the leaves, per call of G and of D

    def counter(key: str):
        def hook(module, inputs, output) -> None:
            passes[key][-1] += _tensor_bytes(output)
        return hook

    handles = [leaf.register_forward_hook(counter(key)) for key, net in (("G", G), ("D", D))
               for leaf in net.modules() if not any(True for _ in leaf.children())]
    handles += [net.register_forward_pre_hook(lambda module, inputs, key=key: passes[key].append(0))
                for key, net in (("G", G), ("D", D))]
    fb = recipe.feedback
    run = min(fb.steps, 2)
    try:
        gen_input = torch.empty(input_shape)
        batch = Batch(real=gen_input, gen_input=gen_input, condition=gen_input if task.conditional else None)
        out = unroll(G.train(), D.train(), gen_input, batch.condition, run, fb,
                     partial(task.discriminator_input, batch=batch))
    finally:
        for handle in handles:
            handle.remove()
    more = fb.steps - run
    generator = sum(passes["G"]) + more * passes["G"][-1]
    per_D_pass = passes["D"][-1]
    sample = _tensor_bytes(out.samples[-1])
    g_step = generator + fb.steps * (per_D_pass + sample)
    fakes = fb.steps if fb.discriminate == "all" else 1
    d_step = (1 + fakes) * per_D_pass + fb.steps * sample
    return int(max(g_step, d_step))


def _tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return 0


def machine_bytes() -> int:
    """The larger of physical RAM and the largest visible GPU's memory."""
    gpu = 0
    if torch.cuda.is_available():
        gpu = max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return max(_ram_bytes(available=False), gpu)


def device_bytes(device: torch.device) -> int:
    """What a training process can use on `device`: the GPU's memory, or the RAM available now on the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    if device.type == "cpu":
        return _ram_bytes(available=True)
    return 0  # another backend: not checked


def _ram_bytes(available: bool) -> int:
    if available:  # MemAvailable: what can be allocated without swapping (Linux); else all of it
        try:
            with open("/proc/meminfo") as handle:
                for line in handle:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_parameters(recipe, task, source: str) -> None:
    """At load: FalError naming the model key when G and D alone cannot be trained on any device here."""
    count, available = parameters(recipe, task), machine_bytes()
    if isinstance(count, str) or not available or count * BYTES_PER_PARAMETER <= available:
        return
    raise FalError(f"{source}: {_blame(recipe, task, ('model',))} makes G and D {count / 1e9:.1f} G parameters "
                   f"(~{_gib(count * BYTES_PER_PARAMETER)} to train), more than this machine's {_gib(available)}; "
                   f"lower it")


def check_training(recipe, task, device: torch.device, world: int = 1, source: str | None = None) -> Estimate | str:
    """Before a run builds anything: FalError naming the key to lower when one training step cannot be held on
    `device` (its GPU memory, or the RAM available now); else the estimate (or why there is none)."""
    found, available = estimate(recipe, task, world), device_bytes(device)
    if isinstance(found, str) or not available or found.total_bytes <= available:
        return found
    source = source or recipe.name
    where = f"the {_gib(available)} of RAM available now" if device.type == "cpu" else \
        f"the {_gib(available)} of {device}"
    if found.parameter_bytes > available:
        raise FalError(f"{source}: {_blame(recipe, task, ('model',))} makes G and D {found.parameters / 1e9:.1f} "
                       f"G parameters (~{_gib(found.parameter_bytes)} to train), more than {where}; lower it")
    key = _blame(recipe, task, ("model", "activations"))
    others = [k for k in ("train.batch_size", "the resolution", "feedback.steps") if not key.startswith(k)]
    raise FalError(f"{source}: {key} needs ~{_gib(found.total_bytes)} to train ({_gib(found.activation_bytes)} of "
                   f"activations at batch {found.batch_size}, feedback.steps={recipe.feedback.steps}), more than "
                   f"{where}; lower it (or {', '.join(others)})")


def _blame(recipe, task, kinds: tuple[str, ...]) -> str:
    """`KEY=VALUE` of the integer furthest above its default (the likely typo): a model key, or one of the keys
    that scale the activations."""
    candidates = []
    if "model" in kinds:
        default = task.ModelConfig()
        candidates += [(f"model.{f.name}", getattr(recipe.model, f.name), getattr(default, f.name, None))
                       for f in dataclasses.fields(recipe.model)]
    if "activations" in kinds:
        defaults = {"train": type(recipe.train)(), "feedback": type(recipe.feedback)(), "data": task.DataConfig()}
        for key in ACTIVATION_KEYS:
            section, name = key.split(".")
            if hasattr(getattr(recipe, section), name):
                candidates.append((key, getattr(getattr(recipe, section), name), getattr(defaults[section], name)))
    best, ratio = "the model section", 0.0
    for key, value, base in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and isinstance(base, int) and base > 0:
            if value / base > ratio:
                best, ratio = f"{key}={value}", value / base
    return best


def _gib(count: float) -> str:
    if count < 2**30:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**30:.1f} GiB" if count < 10 * 2**30 else f"{count / 2**30:.0f} GiB"
