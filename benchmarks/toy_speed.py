"""Where `fal toy`'s CPU time goes, and the floor its arithmetic sets (issue 18 item 6: ≤ 20 s CPU for the default
run on a 2-core machine).

    OMP_NUM_THREADS=1 python benchmarks/toy_speed.py [--iterations 300] [--set key=value ...]

For the plain GAN (feedback.steps 1) and FAL (the recipe's T) of recipes/toy.yaml, one thread, as `fal toy` runs:
- step ms: CPU time per training iteration of `falcli.commands.train.TrainStep`, the call `fal train` makes (after
  20 warm-up iterations; the batch is fixed, so the data path is not in it);
- GFLOP: FLOPs of one iteration counted by torch.utils.flop_counter (R1's double backward is not counted: the
  counter cannot follow it; it adds one D forward and two backward-sized passes on the reals);
- GFLOP/s achieved, against a dense float32 matmul of the same shapes (batch × hidden × hidden) on this core:
  the share of the step that is arithmetic, the rest being per-operation overhead;
- the run's floor: iterations × step ms, and what the matmul rate alone would allow.
Then the parts of `fal toy` outside training: evaluation of every step (2500 samples) and the poster figure.
`--compile` wraps the generator in torch.compile and reports the compilation's CPU time apart (the discriminator
cannot be compiled: R1's penalty needs a double backward, which torch.compile's aot_autograd refuses).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from falcli.commands import flops, train  # noqa: E402
from falcli.commands.toy_experiment import gan_is_fal_step_one, variants  # noqa: E402
from falcli.resolve import load_recipe  # noqa: E402
from falcli.tasks import TASKS  # noqa: E402


def step_of(recipe, device=torch.device("cpu"), compile_generator: bool = False):
    task = TASKS[recipe.task]
    G, D = train.build_networks(task, recipe, device)
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, device, recipe.feedback.lr)
    G_step = torch.compile(G) if compile_generator else G
    step = train.TrainStep(task, recipe, G_step, D, G_step, D, opt_G, opt_D, False, device)
    dataset = task.make_dataset(recipe, "train")
    raw = dataset.__getitems__(list(range(recipe.train.batch_size)))
    batch = task.make_batch(raw, recipe, training=True)
    return step, batch, task, G, D


def cpu_ms(fn, repeats: int) -> float:
    start = time.process_time()
    for i in range(repeats):
        fn(i)
    return 1000 * (time.process_time() - start) / repeats


def flops_per_step(recipe) -> float:
    """GFLOP of one training iteration at the recipe's batch size (R1 left out: falcli/commands/flops.py)."""
    return flops.iteration_flops(recipe, recipe.train.batch_size) / 1e9


def matmul_gflops(batch: int, hidden: int, repeats: int = 2000) -> float:
    a, w = torch.randn(batch, hidden), torch.randn(hidden, hidden)
    ms = cpu_ms(lambda i: a @ w, repeats)
    return 2 * batch * hidden * hidden / (ms / 1000) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/toy.yaml")
    parser.add_argument("--iterations", type=int, default=300, help="timed iterations per model")
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--compile", action="store_true", help="torch.compile the generator (needs a C++ compiler)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe, args.set)
    peak = matmul_gflops(recipe.train.batch_size, recipe.model.hidden)
    print(f"one thread; dense matmul {recipe.train.batch_size}×{recipe.model.hidden}×{recipe.model.hidden}: "
          f"{peak:.1f} GFLOP/s")
    print("| model | T | step ms (CPU) | GFLOP / step (no R1) | GFLOP/s | × matmul rate | training s "
          f"({recipe.train.iterations} its) | at the matmul rate |")
    print("|---|---|---|---|---|---|---|---|")
    training: dict[str, float] = {}  # label → seconds of CPU for the recipe's iterations
    for label, variant in variants(recipe).items():
        step, batch, *_ = step_of(variant, compile_generator=args.compile)
        if args.compile:
            print(f"{label}: first iteration (compiles): {cpu_ms(lambda i: step(batch, i), 1) / 1000:.1f} s CPU")
        cpu_ms(lambda i: step(batch, i), 20)  # warm-up: allocator, Adam's state
        ms = cpu_ms(lambda i: step(batch, i), args.iterations)
        gflop = flops_per_step(variant)
        seconds = training[label] = ms * variant.train.iterations / 1000
        print(f"| {label} | {variant.feedback.steps} | {ms:.2f} | {gflop:.3f} | {gflop / ms * 1000:.1f} | "
              f"{gflop / ms * 1000 / peak:.2f} | {seconds:.1f} | {gflop * variant.train.iterations / peak:.1f} |")
    print(f"training both: {sum(training.values()):.1f} s CPU")
    if gan_is_fal_step_one(recipe):  # then `fal toy` trains FAL alone and reads the plain GAN off its step 1
        print(f"fal toy trains FAL only (its step 1 is the plain GAN): {training['FAL']:.1f} s CPU")

    # The rest of `fal toy`: the evaluation of every step and the figure, on the FAL model.
    from falcli.commands.toy_experiment import _figure

    fal = variants(recipe)["FAL"]
    _, _, task, G, D = step_of(fal)
    start = time.process_time()
    task.evaluate(G, D, fal, torch.device("cpu"), fal.feedback.sampling_steps, fal.evaluate.num_samples)
    evaluation = time.process_time() - start
    out = Path("/tmp/toy_speed_figure.png")
    start = time.process_time()
    _figure(fal, {"GAN": (fal, G, D), "FAL": (fal, G, D)}, out)
    figure = time.process_time() - start
    print(f"evaluation of {fal.feedback.sampling_steps} steps × {fal.evaluate.num_samples} samples: {evaluation:.2f} s "
          f"CPU; poster figure: {figure:.2f} s CPU")


if __name__ == "__main__":
    main()
