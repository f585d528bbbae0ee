"""Training speed of translation: fal's own training step against a reference-style pix2pix step, one process.

    python benchmarks/train_speed.py        # unet_256 + 70×70 PatchGAN at 256², batch 1 and 16, T=1 and T=3
    python benchmarks/train_speed.py --cuda-graph   # …and fal's step replayed from CUDA graphs too
    OMP_NUM_THREADS=1 python benchmarks/train_speed.py --device cpu --size 64 --channels 16 --batch 1 4

Rows, all on the same device and the same on-device batch (the first pairs of the dataset, jittered once), so
the step alone is timed:
- baseline: pix2pix as the reference repository trains it (junyanz/pytorch-CycleGAN-and-pix2pix,
  models/pix2pix_model.py): plain fp32, NCHW, torch.optim.Adam with its defaults; forward G, then the D step on
  the detached fake and the real (their mean, BCE), then the G step (GAN + 100·L1) through the updated D;
  with cudnn.benchmark on, as the reference's BaseModel sets it (for its default fixed-size crops).
  Its networks are fal's U-Net and PatchGAN without feedback (layer for layer the reference's), with batch
  norm keeping running averages as the reference's does.
- fal T=t: `falcli.commands.train.TrainStep`, the very call `fal train` makes every iteration, on the networks and
  optimizers `fal train` builds (on CUDA: bf16 autocast unless --precision fp32, channels_last, fused Adam),
  with feedback.steps = t, and cudnn.benchmark as `fal train` leaves it (torch's default, off). fal's step
  updates G then D; the reference updates D then G (its G step through the just-updated D): the same FLOPs
  in another order. Logging, sample pictures and checkpoints are not part of the step.
- fal T=t graph (--cuda-graph): the same step wrapped as `fal train` wraps it with train.cuda_graph: true
  (falcli/core/cuda_graphs.py): 3 eager runs, then capture, then replays. The default warm-up (10) covers the capture.

Columns: img/s (pairs trained per second), × baseline (against the baseline at the same batch size), peak
memory (CUDA's max_memory_allocated over building and timing; "n/a" on the CPU), GFLOP per image and the
achieved TFLOP/s (FLOPs of one step counted once with torch.utils.flop_counter), and MFU: achieved over
--peak-tflops (default on CUDA: the H100 SXM's dense bf16 peak, the same yardstick for every row).

The data path is timed separately: pairs/s from a prepared dataset (--prepared DIR, or by default a small
random one written with fal's own store writer into a temporary folder) through `fal train`'s DataLoader
(falcli/data/loader.py) to the device and the task's training jitter (resize, random crop, flip).
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from falcli.commands import train
from falcli.core import cuda_graphs as graphs
from falcli.resolve import load_recipe
from falcli.console import console, print_error
from falcli.data.loader import batch_stream
from falcli.errors import FalError
from falcli.formats.store import write_dataset
from falcli.core.runtime import pick_device, to_device, use_bf16
from falcli.tasks import TASKS
from falcli.tasks.base import Batch
from falcli.tasks.translation.nets import PatchDiscriminator, UNetGenerator

ROOT = Path(__file__).resolve().parents[1]
TASK = TASKS["translation"]
H100_BF16_DENSE_TFLOPS = 989.4  # H100 SXM5 tensor cores, bf16 without sparsity (NVIDIA's datasheet: 1979 with)


@dataclass
class Row:
    """One timed configuration."""

    name: str
    batch: int
    steps: int                          # feedback steps T (the baseline is plain pix2pix: 1)
    recipe: str                         # what the step runs with: precision, memory format, optimizer
    images_per_s: float
    ratio: float                        # images_per_s over the baseline's at the same batch size
    peak_memory_bytes: int | None       # CUDA only
    cudnn_benchmark: bool               # torch.backends.cudnn.benchmark while this row was built and timed
    flops_per_step: float
    tflops_per_s: float
    mfu: float | None                   # None without a peak to divide by


# --- the baseline: pix2pix the reference way ---

class ReferencePix2PixStep:
    """`Pix2PixModel.optimize_parameters` of the reference repository, on fp32 NCHW networks."""

    def __init__(self, G: nn.Module, D: nn.Module, l1_weight: float = 100.0, lr: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999)):
        self.G, self.D, self.l1_weight = G, D, l1_weight
        self.opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
        device = next(G.parameters()).device
        self.real_label = torch.tensor(1.0, device=device)  # GANLoss('vanilla'): buffers expanded per map
        self.fake_label = torch.tensor(0.0, device=device)
        self.bce, self.l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()

    def __call__(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        fake_B = self.G(real_A)                                       # forward()
        self.D.requires_grad_(True)                                   # update D
        self.opt_D.zero_grad()
        pred_fake = self.D(torch.cat((real_A, fake_B), 1).detach())
        loss_D_fake = self.bce(pred_fake, self.fake_label.expand_as(pred_fake))
        pred_real = self.D(torch.cat((real_A, real_B), 1))
        loss_D_real = self.bce(pred_real, self.real_label.expand_as(pred_real))
        ((loss_D_fake + loss_D_real) * 0.5).backward()
        self.opt_D.step()
        self.D.requires_grad_(False)                                  # update G
        self.opt_G.zero_grad()
        pred_fake = self.D(torch.cat((real_A, fake_B), 1))
        loss_G = self.bce(pred_fake, self.real_label.expand_as(pred_fake)) + self.l1(fake_B, real_B) * self.l1_weight
        loss_G.backward()
        self.opt_G.step()


def reference_networks(recipe, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The recipe's U-Net and PatchGAN without feedback, fp32, NCHW, batch norm with running averages."""
    model, pairing = recipe.model, TASK.pairing(recipe)
    torch.manual_seed(recipe.seed)
    G = UNetGenerator(pairing.input_channels, pairing.target_channels, model.generator_channels, model.depth,
                      model.norm, model.dropout, feedback=None)
    D = PatchDiscriminator(pairing.input_channels + pairing.target_channels, model.discriminator_channels,
                           model.discriminator_layers, model.norm)
    return with_running_averages(G).to(device), with_running_averages(D).to(device)


def with_running_averages(module: nn.Module) -> nn.Module:
    """fal's batch norm normalises with batch statistics only; the reference's also updates running averages
    in training (a few more kernels per layer, which the baseline should pay)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not child.track_running_stats:
            norm = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            if child.affine:
                with torch.no_grad():
                    norm.weight.copy_(child.weight), norm.bias.copy_(child.bias)
            setattr(module, name, norm)
        else:
            with_running_averages(child)
    return module


# --- fal's step ---

def fal_step(recipe, device: torch.device) -> train.TrainStep | graphs.GraphedStep:
    """The networks, optimizers and step exactly as `fal train` builds them (one process)."""
    G, D = train.build_networks(TASK, recipe, device)
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, device)
    step = train.TrainStep(TASK, recipe, G, D, G, D, opt_G, opt_D, use_bf16(recipe.train.precision, device),
                           device)
    if recipe.train.cuda_graph:
        graphs.check_supported(device, world=1)
        return graphs.GraphedStep(step)
    return step


def eager(step: train.TrainStep | graphs.GraphedStep) -> train.TrainStep:
    """The step itself: FLOPs are counted on eager calls (a graph replay bypasses torch's dispatcher)."""
    return step.step if isinstance(step, graphs.GraphedStep) else step


def describe(step: train.TrainStep | graphs.GraphedStep) -> str:
    """What the step really runs with, read off the built objects rather than assumed."""
    graphed = isinstance(step, graphs.GraphedStep)
    step = eager(step)
    parts = ["bf16 autocast" if step.bf16 else "fp32"]
    conv = next(m for m in step.G.modules() if isinstance(m, nn.Conv2d))
    if not conv.weight.is_contiguous() and conv.weight.is_contiguous(memory_format=torch.channels_last):
        parts.append("channels_last")
    if step.opt_G.defaults.get("fused"):
        parts.append("fused Adam")
    if graphed:
        parts.append("CUDA graph")
    return ", ".join(parts)


# --- data ---

def write_random_pairs(root: Path, size: int, count: int, seed: int = 0) -> Path:
    """A Cityscapes-shaped prepared dataset (photo and label_color, uint8, `size`²) of random pixels."""
    rng = np.random.default_rng(seed)
    fields = {"photo": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
              "label_color": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)}
    meta = {"size": size, "directions": {"labels_to_photo": ["label_color", "photo"]},
            "default_direction": "labels_to_photo",
            "resize_filter": {"photo": "bicubic", "label_color": "nearest"}}
    return write_dataset(root, "paired", "benchmark", {"train": fields}, meta)


def make_recipe(args: argparse.Namespace, root: Path, steps: int, batch: int, cuda_graph: bool = False):
    """recipes/cityscapes.yaml (pix2pix's protocol) on `root`, at the benchmark's size, widths and batch."""
    overrides = [f"data.root={root}", "data.direction=null", f"data.image_size={args.size}",
                 f"data.load_size={args.load_size}", f"model.generator_channels={args.channels}",
                 f"model.depth={args.depth}", f"model.discriminator_channels={args.channels}",
                 f"model.discriminator_layers={args.d_layers}", f"feedback.steps={steps}",
                 f"train.batch_size={batch}", f"train.precision={args.precision}",
                 f"train.cuda_graph={str(cuda_graph).lower()}", *args.set]
    return load_recipe(ROOT / "recipes" / "cityscapes.yaml", overrides)


def first_batch(recipe, device: torch.device) -> Batch:
    """The dataset's first `batch_size` pairs on the device, through the training jitter (one fixed draw)."""
    dataset = TASK.make_dataset(recipe, "train")
    if len(dataset) < recipe.train.batch_size:
        raise FalError(f"the dataset's train split has {len(dataset)} pairs, fewer than --batch "
                       f"{recipe.train.batch_size}; lower --batch or use a larger dataset")
    torch.manual_seed(0)
    raw = dataset.__getitems__(list(range(recipe.train.batch_size)))
    return TASK.make_batch(to_device(raw, device), recipe, training=True)


def data_path_rate(recipe, device: torch.device, batches: int, warmup: int, workers: int) -> float:
    """Pairs per second from the prepared arrays through `fal train`'s loader, to the device, jittered."""
    stream = batch_stream(TASK.make_dataset(recipe, "train"), recipe.train.batch_size, recipe.seed,
                          workers=workers, pin_memory=device.type == "cuda")

    def once(_: int) -> None:
        TASK.make_batch(to_device(next(stream), device), recipe, training=True)

    seconds = timed(once, batches, warmup, device)
    del stream  # stops the worker processes
    return recipe.train.batch_size * batches / seconds


# --- measuring ---

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run_once: Callable[[int], object], iterations: int, warmup: int, device: torch.device) -> float:
    """Seconds for `iterations` calls after `warmup` untimed ones; the GPU is drained before and after."""
    for i in range(warmup):
        run_once(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + iterations):
        run_once(i)
    synchronize(device)
    return time.perf_counter() - start


def count_flops(run_once: Callable[[int], object]) -> float:
    """FLOPs of one call (convolutions and matrix products, forward and backward), counted by torch."""
    with FlopCounterMode(display=False) as counter:
        run_once(0)
    return float(counter.get_total_flops())


def fresh_memory(device: torch.device) -> None:
    """Free the previous configuration so each peak is this configuration's own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


UPDATE_ORDER = ("fal's step updates G, then D (FAL: G's unrolled steps against the current D); the reference "
                "updates D, then G through the just-updated D (pix2pix's optimize_parameters): the same FLOPs "
                "in another order")


def cudnn_benchmark_for(row: str, setting: str) -> bool:
    """--cudnn-benchmark reference: each side as it trains (the reference on, fal train torch's default, off)."""
    if setting == "reference":
        return row == "baseline"
    return setting == "on"


def measure(name: str, build: Callable[[], tuple[Callable[[int], object], Callable[[int], object], str]],
            batch: int, steps: int, args: argparse.Namespace, device: torch.device,
            peak_tflops: float | None) -> Row:
    """`build` returns the call to time, the same step called eagerly (to count its FLOPs), and a label."""
    fresh_memory(device)
    benchmark = cudnn_benchmark_for(name.split()[0], args.cudnn_benchmark)
    previous, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, benchmark
    try:
        run_once, run_eagerly, recipe = build()
        seconds = timed(run_once, args.iters, args.warmup, device)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        flops = count_flops(run_eagerly)
    finally:
        torch.backends.cudnn.benchmark = previous
    achieved = flops * args.iters / seconds / 1e12
    return Row(name, batch, steps, recipe, batch * args.iters / seconds, math.nan, peak, benchmark, flops,
               achieved, achieved / peak_tflops if peak_tflops else None)


# --- reporting ---

def goals(rows: list[Row]) -> list[dict]:
    """Issue 8's targets (set for an H100) for the configurations that were measured."""
    found: dict[tuple[str, int, int], Row] = {}  # the fastest row of each kind (eager or graphed)
    for r in rows:
        key = (r.name.split()[0], r.batch, r.steps)
        if key not in found or r.images_per_s > found[key].images_per_s:
            found[key] = r
    checks = []
    for batch, steps, target in ((16, 1, 3.0), (16, 3, 1.0), (1, 1, 4.0), (1, 3, 1.5)):
        row = found.get(("fal", batch, steps))
        if row is not None:
            checks.append({"goal": f"batch {batch}, T={steps}: ≥ {target:g}× the baseline's img/s",
                           "value": round(row.ratio, 3), "met": row.ratio >= target})
    for batch in sorted({r.batch for r in rows}):
        t1, t3 = found.get(("fal", batch, 1)), found.get(("fal", batch, 3))
        if t1 and t3 and t1.peak_memory_bytes and t3.peak_memory_bytes:
            share = t3.peak_memory_bytes / t1.peak_memory_bytes
            checks.append({"goal": f"batch {batch}: peak memory at T=3 ≤ 2× T=1", "value": round(share, 3),
                           "met": share <= 2.0})
    return checks


def show(rows: list[Row], data_rows: list[dict], checks: list[dict], header: str, cuda: bool) -> None:
    runs_with = {r.name.split(" T=")[0] + (" graph" if "graph" in r.name else ""): r.recipe for r in rows}
    caption = "; ".join(f"{name}: {recipe}" for name, recipe in runs_with.items())
    table = Table(title=header, title_justify="left", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("config", no_wrap=True)
    for column in ("batch", "img/s", "× base", "peak mem", "GFLOP/img", "TFLOP/s", "MFU"):
        table.add_column(column, justify="right")
    for r in rows:
        memory = f"{r.peak_memory_bytes / 2 ** 30:.2f} GiB" if r.peak_memory_bytes is not None else "n/a"
        mfu = f"{100 * r.mfu:.1f} %" if r.mfu is not None else "n/a"
        table.add_row(r.name, str(r.batch), f"{r.images_per_s:,.2f}", f"{r.ratio:.2f}×", memory,
                      f"{r.flops_per_step / r.batch / 1e9:.4g}", f"{r.tflops_per_s:.3g}", mfu)
    console.print(table)
    console.print(f"update order: {UPDATE_ORDER}")
    console.print("data path: prepared arrays → DataLoader → device → training jitter")
    data = Table(box=box.SIMPLE_HEAD)
    for column in ("batch", "workers", "pairs/s"):
        data.add_column(column, justify="right")
    for d in data_rows:
        data.add_row(str(d["batch"]), str(d["workers"]), f"{d['pairs_per_s']:,.1f}")
    console.print(data)
    if not cuda:
        console.print("[dim]issue 8's goals are set for an H100: not checked on this device[/]")
        return
    for check in checks:
        mark = "[green]met[/]" if check["met"] else "[red]not met[/]"
        console.print(f"goal (issue 8, for an H100): {check['goal']}: {check['value']:g} → {mark}")


def write_json(path: Path, payload: dict) -> None:
    """Never replaces a file: written to a temporary name beside it, then renamed."""
    if path.exists():
        raise FalError(f"--json {path}: already exists; pass another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "w") as file:
            json.dump(payload, file, indent=2)
            file.write("\n")
        os.replace(tmp, path)
    except OSError as error:
        raise FalError(f"--json {path}: cannot write it ({error}); pass another path") from None


# --- the command ---

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--size", type=int, default=256, help="image side (pix2pix: 256)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3], help="feedback steps T of fal's rows")
    parser.add_argument("--iters", type=int, default=None, help="timed steps (default: 50 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 CUDA, 1 CPU)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="fal's rows (train.precision); the baseline is always fp32")
    parser.add_argument("--channels", type=int, default=64, help="G and D width (pix2pix ngf = ndf = 64)")
    parser.add_argument("--depth", type=int, default=None, help="U-Net halvings (default log2(size): unet_256)")
    parser.add_argument("--d-layers", type=int, default=3, help="PatchGAN stride-2 layers (3 = 70×70)")
    parser.add_argument("--load-size", type=int, default=None, help="jitter resize (default size·286/256)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="further recipe overrides, e.g. feedback.encoder_channels=16 (model.* shapes the "
                             "baseline too)")
    parser.add_argument("--prepared", type=Path, default=None,
                        help="prepared paired dataset (`fal prepare`) to read pairs from (default: random pairs)")
    parser.add_argument("--pairs", type=int, default=64, help="pairs in the default random dataset")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers on the data path")
    parser.add_argument("--data-batches", type=int, default=None, help="timed batches on the data path")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help=f"device peak for MFU (default on CUDA: {H100_BF16_DENSE_TFLOPS}, H100 bf16 dense)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="also time fal's step replayed from CUDA graphs (train.cuda_graph; CUDA only)")
    parser.add_argument("--cudnn-benchmark", choices=("reference", "on", "off"), default="reference",
                        help="torch.backends.cudnn.benchmark: 'reference' (default) as each side trains, on for "
                             "the baseline (the reference repository sets it) and off for fal (fal train leaves "
                             "torch's default); 'on' or 'off' for every row")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here (a new file)")
    args = parser.parse_args(argv)
    for name in ("batch", "steps"):
        if min(getattr(args, name)) < 1:
            raise FalError(f"--{name}: every value must be >= 1")
    for name in ("iters", "data_batches", "pairs", "size", "channels"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise FalError(f"--{name.replace('_', '-')} must be >= 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise FalError("--peak-tflops must be > 0")
    if (args.warmup is not None and args.warmup < 0) or args.workers < 0:
        raise FalError("--warmup and --workers must be >= 0")
    if args.json is not None and args.json.exists():
        raise FalError(f"--json {args.json}: already exists; pass another path")
    if args.depth is None:
        args.depth = max(2, int(math.log2(args.size)))
    if args.load_size is None:
        args.load_size = round(args.size * 286 / 256)
    return args


def measure_all(args: argparse.Namespace, root: Path, device: torch.device,
                peak_tflops: float | None) -> tuple[list[Row], list[dict]]:
    """Per batch size: the baseline, fal at every T, then the data path; a progress bar over them all."""
    batches, all_steps = sorted(set(args.batch)), sorted(set(args.steps))
    rows: list[Row] = []
    data_rows: list[dict] = []
    variants = (False, True) if args.cuda_graph else (False,)  # fal's step eager, and replayed from a graph
    total = len(batches) * (2 + len(all_steps) * len(variants))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, auto_refresh=False) as progress:  # no redraw thread while timing
        bar = progress.add_task("measuring", total=total)

        def advance(description: str) -> None:
            progress.update(bar, description=description)
            progress.refresh()

        for batch in batches:
            recipe = make_recipe(args, root, 1, batch)

            def build_baseline(recipe=recipe):
                step = ReferencePix2PixStep(*reference_networks(recipe, device))
                data = first_batch(recipe, device)
                run_once = lambda _: step(data.gen_input, data.real)  # noqa: E731
                return run_once, run_once, "fp32, NCHW, torch.optim.Adam (reference)"

            advance(f"baseline, batch {batch}")
            base = measure("baseline", build_baseline, batch, 1, args, device, peak_tflops)
            base.ratio = 1.0
            rows.append(base)
            progress.advance(bar)
            for steps, graphed in itertools.product(all_steps, variants):
                recipe = make_recipe(args, root, steps, batch, graphed)

                def build_fal(recipe=recipe):
                    step, data = fal_step(recipe, device), first_batch(recipe, device)
                    return (lambda i: step(data, i)), (lambda i: eager(step)(data, i)), describe(step)

                name = f"fal T={steps}" + (" graph" if graphed else "")
                advance(f"{name}, batch {batch}")
                row = measure(name, build_fal, batch, steps, args, device, peak_tflops)
                row.ratio = row.images_per_s / base.images_per_s
                rows.append(row)
                progress.advance(bar)
            advance(f"data path, batch {batch}")
            rate = data_path_rate(make_recipe(args, root, 1, batch), device, args.data_batches, 2, args.workers)
            data_rows.append({"batch": batch, "workers": args.workers, "pairs_per_s": rate})
            progress.advance(bar)
        advance("done")
    return rows, data_rows


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the tables and return what --json writes."""
    args = parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if args.cuda_graph and not cuda:
        raise FalError(f"--cuda-graph needs a CUDA device, and this run is on {device.type}; drop --cuda-graph")
    args.iters = args.iters or (50 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    args.data_batches = args.data_batches or (100 if cuda else 10)
    peak_tflops = args.peak_tflops or (H100_BF16_DENSE_TFLOPS if cuda else None)

    with tempfile.TemporaryDirectory(prefix="fal-train-speed-") as tmp:
        root = args.prepared or write_random_pairs(Path(tmp) / "pairs", args.size, max(args.pairs, *args.batch))
        use_bf16(make_recipe(args, root, max(args.steps), max(args.batch)).train.precision, device)  # fail early
        rows, data_rows = measure_all(args, root, device, peak_tflops)
        fresh_memory(device)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                           f"{torch.get_num_threads()} threads)"
    header = (f"translation training step on {name}, torch {torch.__version__}: {args.size}², G/D width "
              f"{args.channels}, U-Net depth {args.depth}, {args.d_layers}-layer PatchGAN; timed steps: {args.iters} "
              f"(after {args.warmup} warm-up); cudnn.benchmark: " + {
                  "reference": "on for the baseline (as the reference), off for fal (as fal train)",
                  "on": "on for every row", "off": "off for every row"}[args.cudnn_benchmark])
    checks = goals(rows)
    show(rows, data_rows, checks, header, cuda)
    results = {"device": name, "torch": str(torch.__version__), "peak_tflops": peak_tflops,
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "update_order": UPDATE_ORDER, "rows": [asdict(r) for r in rows], "data_path": data_rows,
               "goals": checks}
    if args.json is not None:
        write_json(args.json, results)
        console.print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FalError as error:
        print_error(str(error))
        sys.exit(2)
