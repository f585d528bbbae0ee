"""`fal`: train, refine and evaluate feedback-adversarial GANs from YAML recipes.

Each command resolves its inputs, prints, and delegates to the verb module of the same name; user mistakes
become one red line and exit code 2.
Longer than ~400 lines because each command's options are declared here with their help text; the work is in
falcli/commands/.
"""
from __future__ import annotations

import functools
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Callable

import typer
from typer.core import TyperGroup, TyperOption

try:  # typer >= 0.26 parses with its own copy of click; older ones with click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

from falcli import __version__
from falcli.errors import FalError


def _flag_type(option: TyperOption, ctx) -> str | None:
    """A flag (--dry-run, --kid, --help) takes no value: no `<bool>` placeholder beside it in the help (Typer
    prints one for every option), which also leaves the long option names their full width at 80 columns."""
    return None if option.is_flag else _option_type(option, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type


class _OneLineUsageErrors(TyperGroup):
    """A wrong type, a missing or unknown option: one red line and exit code 2, like every other user error
    (click's own is a boxed usage message over several lines)."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as error:  # bare `fal` / `fal evaluate`: the help, as before
            from typer import rich_utils  # keeps --help fast

            rich_utils.rich_format_error(error)
            sys.exit(error.exit_code)
        except click_errors.UsageError as error:
            from falcli.console import print_error  # keeps --help fast

            where = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
            print_error(" ".join(error.format_message().split()) + where)
            sys.exit(2)
        except click_errors.ClickException as error:
            from falcli.console import print_error  # keeps --help fast

            print_error(" ".join(error.format_message().split()))
            sys.exit(error.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", add_completion=False, cls=_OneLineUsageErrors,
                  help="Feedback adversarial learning (FAL) and its successors, from YAML recipes.")

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value, e.g. "
                                                  "train.iterations=500 (repeatable)")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: runs/<recipe name>]")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
SeedOpt = Annotated[int | None, typer.Option(help="Override the recipe's seed")]


def user_errors(command: Callable) -> Callable:
    """Turn FalError into one red line and exit code 2 (programming errors keep their traceback)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FalError as error:
            from falcli.console import print_error  # keeps --help fast

            print_error(str(error))
            raise typer.Exit(code=2) from None
        except (KeyboardInterrupt, Terminated) as stop:
            from falcli.console import print_error  # keeps --help fast

            # What stopped may say how it goes on (a judge trained on demand resumes by itself, not with a flag).
            hint = getattr(stop, "resume_hint", None) or ("a run continues from its last checkpoint: the same command "
                                                           "with --resume auto")
            print_error(f"interrupted; what was finished is kept ({hint})")
            raise typer.Exit(code=stop.code if isinstance(stop, Terminated) else 130) from None
        except OSError as error:
            # Outputs on a read-only mount, a full disk, a folder without permission: the path and the reason,
            # in one line (the temporary files of what was being written are removed on the way out).
            from falcli.console import print_error  # keeps --help fast

            # the output's own name, not that of the temporary sibling it is written as (.NAME.tmp-PID)
            where = re.sub(r"(^|/)\.([^/]+)\.(tmp|partial)-[^/]*$", r"\1\2", str(error.filename or "an output file"))
            print_error(f"{where}: {error.strerror or error} ({type(error).__name__}); choose a writable location "
                        f"with free space (e.g. another --out) and retry")
            raise typer.Exit(code=2) from None
    return wrapper


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) like Ctrl-C; exit code 143."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fal {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit")] = False) -> None:
    """Feedback adversarial learning (FAL) and its successors, from YAML recipes."""
    # SIGTERM (timeout, Slurm, torchrun stopping a job) unwinds like Ctrl-C, so that a half-written dataset's
    # temporary folder or a checkpoint's temporary file is removed on the way out.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame) -> None:
    raise Terminated()


def _resolve(recipe: Path, set_: list[str] | None, seed: int | None, quick: bool = False):
    from falcli.resolve import load_recipe  # keeps --help fast

    overrides = list(set_ or []) + ([f"seed={seed}"] if seed is not None else [])
    return load_recipe(recipe, overrides, quick=quick)


@app.command()
@user_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/toy.yaml, or a shipped recipe's name "
                                                "(`fal recipes`)")],
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = None,
    resume: Annotated[str | None, typer.Option(help="'auto' (newest checkpoint in the run folder) or a "
                                                    "checkpoint path")] = None,
    workers: Annotated[int, typer.Option(min=0, metavar="<int>", help="DataLoader worker processes")] = 0,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also write TensorBoard events to "
                                              "RUN/tensorboard/ (pip install \"falcli\\[tensorboard]\")")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print the resolved recipe and exit (a default-"
                                          "sized one without loading torch: --device is not checked)")] = False,
) -> None:
    """Train a generator and discriminator with spatial feedback."""
    from falcli.console import console, print_recipe, progress_bar  # keeps --help fast
    from falcli.resolve import defaults_dict, stays_torch_free  # keeps --help fast
    from falcli.tasks.sections import TASK_NAMES  # keeps --help fast

    resolved = _resolve(recipe, set_, seed, quick=dry_run)
    if dry_run and (resolved.task not in TASK_NAMES or stays_torch_free(resolved)):
        # torch-free: the recipe is checked and shown, the device is not looked at. A judge's recipe has no
        # estimate; a larger model than the task's default has imported torch anyway, so it is estimated below
        print_recipe(resolved, defaults_dict(resolved))
        if resolved.task in TASK_NAMES:
            console.print("memory estimate: checked when training starts (--dry-run stays torch-free)",
                          soft_wrap=True, highlight=False)
        raise typer.Exit()
    from falcli.core.runtime import pick_device  # keeps --help fast
    from falcli.judges import JudgeRecipe  # keeps --help fast

    picked = pick_device(device)  # a wrong --device fails before anything is printed or written
    if resume not in (None, "auto") and not isinstance(resolved, JudgeRecipe):  # and a --resume that is no checkpoint
        from falcli.core import checkpoint  # keeps --help fast

        checkpoint.check_file(checkpoint.resolve(Path(resume)))
    found = None
    if not isinstance(resolved, JudgeRecipe):  # a step the device cannot hold fails here too (train.run checks)
        from falcli.nn import budget  # keeps --help fast
        from falcli.tasks import TASKS  # keeps --help fast

        found = budget.check_training(resolved, TASKS[resolved.task], picked, int(os.environ.get("WORLD_SIZE") or 1),
                                      str(recipe))
    quiet = os.environ.get("RANK", "0") != "0"  # under torchrun only the first process talks
    if not quiet:
        print_recipe(resolved, defaults_dict(resolved))
    if dry_run:
        about = found if isinstance(found, str) else found.describe()
        console.print(f"memory estimate ({picked.type}): {about}", soft_wrap=True, highlight=False)
        raise typer.Exit()

    if isinstance(resolved, JudgeRecipe):
        from falcli.judges.run import run_judge  # keeps --help fast

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise FalError("judges train in one process (a few minutes): run `fal train` on this recipe without "
                           "torchrun")

        with progress_bar(f"train {resolved.name}", resolved.train.iterations) as update:
            path = run_judge(resolved, out, device, resume=resume, on_progress=update)
        console.print(f"[green]done[/] → {path}")
        return
    from falcli.commands import train as training  # keeps --help fast

    options = training.RunOptions(out=out, device=device, resume=resume, workers=workers, tensorboard=tensorboard)
    if quiet:
        training.run(resolved, options)
        return
    with progress_bar(f"train {resolved.name}", resolved.train.iterations) as update:
        run_dir = training.run(resolved, options, on_progress=update,
                               say=lambda line: console.print(f"note: {line}", markup=False, soft_wrap=True))
    console.print(f"[green]done[/] → {run_dir}")


@app.command()
@user_errors
def recipes() -> None:
    """List the recipes that come with fal: `fal train NAME` runs one from any folder."""
    import yaml  # keeps --help fast

    from falcli.config import SHIPPED_RECIPES, shipped_recipes  # keeps --help fast
    from falcli.console import console  # keeps --help fast

    for path in shipped_recipes():
        text = path.read_text()
        task = (yaml.safe_load(text) or {}).get("task", "?")
        about = _first_sentence(text)
        console.print(f"[bold]{path.stem:<22}[/] {task:<17} {about}", soft_wrap=True)
    console.print(f"in {SHIPPED_RECIPES}", soft_wrap=True)


def _first_sentence(text: str) -> str:
    """The first sentence of a recipe's leading comment, which may run over lines (less the file's own name)."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    about = " ".join(words).split(" — ", 1)[-1] if words else ""
    # a sentence ends at a full stop and a space, but not the abbreviations' ("et al. 2019", "Fig. 1", "e.g. x")
    return re.split(r"(?<!\bal\.)(?<!\bFig\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<=\.)\s+", about, maxsplit=1)[0]


def _count(n: int, noun: str) -> str:
    """'1 step', '3 steps'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _free_folder(first: Path) -> Path:
    """`first` if it is free (missing or empty), else first-2, first-3, …: a repeated experiment gets its own."""
    candidate, n = first, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = first.with_name(f"{first.name}-{n}")
    return candidate


@app.command()
@user_errors
def toy(
    recipe: Annotated[Path, typer.Argument(help="Toy recipe")] = Path("recipes/toy.yaml"),
    set_: SetOpt = None,
    out: OutOpt = None,
    device: DeviceOpt = "auto",
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (recipe seed, +1, …); tables show "
                                                   "mean ± std")] = 1,
    quick: Annotated[bool, typer.Option("--quick", help="A few-second run (for tests and smoke checks)")] = False,
) -> None:
    """Reproduce the paper's 2D experiment: plain GAN vs FAL, same seed and budget; figure and per-step table."""
    from falcli.commands import toy_experiment  # keeps --help fast
    from falcli.console import console  # keeps --help fast

    resolved = _resolve(recipe, set_, None)
    out = out or _free_folder(Path("runs") / f"{resolved.name}-experiment")
    result = toy_experiment.run(resolved, out, device=device, seeds=seeds, quick=quick)
    toy_experiment.print_table(result, console)
    console.print(f"[green]done[/] → {out / 'toy_figure.png'}, {out / 'toy_table.json'}")


@app.command()
@user_errors
def ablate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/shapes.yaml")],
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder of the runs and the tables; finished "
                                             "runs there are reused [default: runs/ablation-<recipe name>]")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per config (recipe seed, +1, …); mean ± std")] = 3,
    configs: Annotated[str | None, typer.Option(help="Comma-separated, of plain, plain_compute_matched (the "
                                                     "iterations of FAL's training FLOPs), plain_dot (the plain "
                                                     "run + latent DOT), fal, eqgan_sa, glead, fal_eqgan_sa, "
                                                     "fal_glead \\[default: plain, plain_compute_matched, "
                                                     "plain_dot, fal]")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[str | None, typer.Option(help="'auto' (continue the unfinished runs found in --out) or "
                                                    "the folder of an earlier ablation to continue")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="40 iterations per run (for tests and smoke checks)")] = False,
) -> None:
    """FAL against the plain GAN, the compute-matched plain GAN and plain + DOT (and, by name, EqGAN-SA, GLeaD,
    FAL + each), over seeds: the task's per-step metrics, quality next to coverage, as ablation.md and .json."""
    import shlex  # keeps --help fast
    import sys  # keeps --help fast

    from falcli.commands import ablate as ablation  # keeps --help fast
    from falcli.console import console, progress_bar  # keeps --help fast

    resolved = _resolve(recipe, set_, None)
    names = ablation.parse_configs(configs)
    out, continuing = ablation.resume_mode(resume, out)
    out = out or Path("runs") / f"ablation-{resolved.name}"
    # The table's "Command:" line: the user's own words, whether run as `fal` or `python -m falcli`
    own = sys.argv and (Path(sys.argv[0]).name == "fal" or Path(sys.argv[0]).parent.name == "falcli")
    command = "fal " + shlex.join(sys.argv[1:]) if own else \
        f"fal ablate {recipe}"
    # One bar (every run's iterations, then every run's evaluation), drawn at its first update: a refused plan
    # prints no empty bar.
    with progress_bar("ablate", 1) as update:
        report = ablation.run(resolved, out, seeds, names, device, quick, continuing, command, on_progress=update,
                              say=lambda line: console.print(f"note: {line}", markup=False, soft_wrap=True))
    from rich.markdown import Markdown  # keeps --help fast

    console.print(Markdown(ablation.markdown(report)))
    console.print(f"[green]done[/] → {out / 'ablation.md'}, {out / 'ablation.json'}")


@app.command(name="edit-heatmaps")
@user_errors
def edit_heatmaps(
    ckpt: Annotated[Path, typer.Option("--ckpt", help="Checkpoint of an EqGAN-SA run (method.eqgan_sa: true)")],
    centre: Annotated[list[str], typer.Option(help="Where to put the heatmaps' centre: y,x in [-1, 1] (-1 = "
                                                   "top/left); one row per --centre, e.g. --centre=-0.5,0")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New PNG file")],
    count: Annotated[int, typer.Option(help="Samples per row (the same latents in every row)")] = 8,
    width: Annotated[float | None, typer.Option(help="Level-1 heatmap width σ [default: drawn per sample]")] = None,
    steps: Annotated[int | None, typer.Option(help="Feedback steps; the last is shown [default: the recipe's]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latents and heatmap codes")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """EqGAN-SA spatial editing: the same samples with their heatmaps moved to each --centre."""
    from falcli.console import console  # keeps --help fast
    from falcli.commands.edit_heatmaps import edit_picture  # keeps --help fast

    path = edit_picture(ckpt, centre, out, count, seed, steps, width, device)
    console.print(f"[green]done[/] → {path} ({len(centre)} rows: heatmap, then {count} samples)")


@app.command()
@user_errors
def prepare(
    dataset: Annotated[str, typer.Argument(help="cityscapes, nyu, celeba, images, pix2pix, shapenet, or a "
                                                "built-in: streets, shapes, primitives")],
    raw_argument: Annotated[Path | None, typer.Argument(metavar="[RAW]", show_default=False,
                                                        help="The raw download, as --raw")] = None,
    raw: Annotated[Path | None, typer.Option(help="The raw download: archive or folder")] = None,
    out: OutOpt = None,
    size: Annotated[int | None, typer.Option(help="Output size in pixels or voxels")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated classes (shapenet, primitives)")] = None,
    splits: Annotated[Path | None, typer.Option(help="splits.mat for NYU [default: next to the .mat]")] = None,
    count: Annotated[int | None, typer.Option(help="Training items of a built-in dataset [default: 2000]")] = None,
    follow_links: Annotated[bool, typer.Option("--follow-links", help="Follow symbolic links in a raw folder "
                                               "(to regular files and folders, never in a loop)")] = False,
) -> None:
    """Convert a raw dataset into fal's prepared format (never downloads); out defaults to data/<dataset>."""
    from falcli.console import console, stage_progress  # keeps --help fast
    from falcli.commands.prepare import prepare as run_prepare  # keeps --help fast

    if raw_argument is not None and raw is not None and raw_argument != raw:
        raise FalError(f"two raw downloads given ({raw_argument} and --raw {raw}); pass one")
    raw = raw or raw_argument  # `fal prepare images DIR` reads as well as `--raw DIR`
    out = out or Path("data") / dataset
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with stage_progress() as progress:
        path = run_prepare(dataset, raw, out, size=size, classes=class_list, splits_file=splits,
                           progress=progress, count=count, follow_links=follow_links,
                           warn=lambda message: console.print(f"[yellow]warning:[/] {message}", soft_wrap=True))
    console.print(f"[green]done[/] → {path}")


GeneratorCkptOpt = Annotated[Path, typer.Option("--ckpt", help="Checkpoint written by `fal train` "
                                                                "(…/checkpoints/iter-*.pt), or a run folder "
                                                                "(its newest)")]
FreshOutOpt = Annotated[Path, typer.Option("--out", "-o", help="New output folder (refused when not empty)")]
SampleBatchOpt = Annotated[int | None, typer.Option(help="Samples per forward pass (default: 16, or the "
                                                         "samples' own)")]


@app.command()
@user_errors
def sample(
    ckpt: GeneratorCkptOpt,
    count: Annotated[int, typer.Option(help="Number of samples")],
    out: FreshOutOpt,
    steps: Annotated[int | None, typer.Option(help="Feedback steps; the last one is written (default: the "
                                                   "recipe's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latents (unconditional tasks)")] = 0,
    device: DeviceOpt = "auto",
    batch_size: SampleBatchOpt = None,
    voxels: Annotated[str, typer.Option(help="Voxel checkpoints: binvox (one file per sample) or npy (all in "
                                             "voxels.npy, N×R×R×R uint8, z up)")] = "binvox",
) -> None:
    """Write samples as files (PNG, .binvox or voxels.npy, points.npy) with their latents or inputs, for
    `fal refine`."""
    from falcli.console import console, stage_progress  # keeps --help fast
    from falcli.commands.sample import BATCH_SIZE, SampleOptions, sample as run_sample  # keeps --help fast

    options = SampleOptions(ckpt, out, count, steps, seed, device,
                            BATCH_SIZE if batch_size is None else batch_size, voxels)
    with stage_progress() as progress:
        manifest = run_sample(options, on_progress=progress)
    console.print(f"[green]done[/] → {out} ({_count(manifest['count'], manifest['task'] + ' sample')} after "
                  f"{_count(manifest['steps'], 'step')})")


@app.command()
@user_errors
def refine(
    ckpt: GeneratorCkptOpt,
    steps: Annotated[int | None, typer.Option(help="fal: steps, 1 = the input itself, then one pass of G per step "
                                                   "\\[default: the recipe's]; dot-*, gradient: recorded points of "
                                                   "the iteration, first = start, last = final \\[default: 2]")] = None,
    input_: Annotated[Path | None, typer.Option("--input", help="Samples: a `fal sample` folder, a folder of "
                                                "outputs (PNG/.binvox), or toy points .npy \\[default: the run's "
                                                "own `fal sample` folder of this checkpoint, else fresh draws]")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="New output folder (refused when not empty) "
                                             "\\[default: a new RUN/refine-K]")] = None,
    method: Annotated[str, typer.Option(help="fal (the feedback loop), dot-latent, dot-sample, gradient or "
                                             "drs")] = "fal",
    inputs: Annotated[Path | None, typer.Option(help="Translation: the input images of --input's outputs, "
                                                     "matched by file name")] = None,
    invert_iterations: Annotated[int | None, typer.Option(help="Samples without latents: Adam iterations "
                                                               "to find them by inversion first")] = None,
    count: Annotated[int | None, typer.Option(help="Fresh draws, and drs's accepted samples \\[default: the "
                                                   "recipe's evaluate.num_samples]")] = None,
    iterations: Annotated[int | None, typer.Option(help="dot-*, gradient: optimiser steps \\[default: 30 / "
                                                        "20]")] = None,
    lr: Annotated[float | None, typer.Option(help="dot-*: Adam's rate \\[0.01]; gradient: the step size "
                                                  "\\[0.3]")] = None,
    k_eff: Annotated[float | None, typer.Option(help="dot-*: D's Lipschitz constant \\[default: estimated over "
                                                     "random pairs]")] = None,
    drs_percentile: Annotated[float, typer.Option(help="drs: γ = this percentile of F over the burn-in")] = 80.0,
    drs_burn_in: Annotated[int, typer.Option(help="drs: draws that set D's maximum logit and γ")] = 10_000,
    drs_max_draws: Annotated[int | None, typer.Option(help="drs: give up after this many draws \\[default: 100 "
                                                           "× count]")] = None,
    device: DeviceOpt = "auto",
    batch_size: SampleBatchOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of fresh draws and of the inversion's starting latents")] = 0,
) -> None:
    """Refine samples with D: FAL's feedback loop or a reference method; every step's output, D's heat maps, a
    grid and refine.json."""
    from falcli.console import console, stage_progress  # keeps --help fast
    from falcli.commands.refine import RefineOptions, refine as run_refine  # keeps --help fast

    options = RefineOptions(ckpt, input_, out, steps, inputs, invert_iterations, device, batch_size, seed,
                            method=method, count=count, iterations=iterations, lr=lr, k_eff=k_eff,
                            drs_percentile=drs_percentile, drs_burn_in=drs_burn_in, drs_max_draws=drs_max_draws)
    with stage_progress() as progress:
        result = run_refine(options, on_progress=progress, say=lambda line: console.print(line, markup=False,
                                                                                           soft_wrap=True))
    if result["inversion"]:
        inversion = result["inversion"]
        console.print(f"inversion: reconstruction error (MSE) {inversion['error_start']:.4f} → "
                      f"{inversion['error']:.4f} after {_count(inversion['iterations'], 'iteration')}")
    if result.get("drs"):
        drs = result["drs"]
        console.print(f"drs: accepted {drs['accepted']} of {drs['draws']} draws (acceptance {drs['acceptance']:.1%})")
    scores = "  ".join(f"t={t}: {s:.3f}" for t, s in enumerate(result["d_real_probability"], start=1))
    console.print(f"D's mean score σ(D) per step  {scores}")
    console.print(f"[green]done[/] → {result['out']} ({_count(result['count'], 'sample')}, "
                  f"{_count(result['steps'], 'step')}, {result['method']})")


@app.command()
@user_errors
def evaluate(
    metric: Annotated[str, typer.Argument(help="fid, kid, l1, psnr, ssim, ssim-gaussian, lpips, fcn, depth, voxel-accuracy, toy, "
                                               "or all (the task's default metrics; needs --ckpt)")],
    a: Annotated[Path | None, typer.Argument(help="Outputs: a folder (matched by name with B), an .npy; fid/kid: "
                                                  "a folder, .npz or .pt")] = None,
    b: Annotated[Path | None, typer.Argument(help="Targets, label maps, true depth; fid/kid: the other side")] = None,
    ckpt: Annotated[Path | None, typer.Option(help="A checkpoint or its run folder: one row per feedback "
                                                   "step")] = None,
    steps: Annotated[int | None, typer.Option(help="Feedback steps \\[default: the recipe's]; more than "
                                                   "trained is allowed")] = None,
    num_samples: Annotated[int | None, typer.Option(help="Samples per step \\[default: the recipe's]")] = None,
    device: DeviceOpt = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result here \\[default: "
                                                   "<run folder>/evaluate-METRIC.json for a checkpoint]")] = None,
    dims: Annotated[int, typer.Option(help="fid/kid: Inception feature size, 64/192/768/2048")] = 2048,
    weights: Annotated[Path | None, typer.Option(help="Inception (fid, kid) or AlexNet (lpips) weights "
                                                      "\\[default: the torch hub cache]")] = None,
    allow_unofficial_weights: Annotated[bool, typer.Option("--allow-unofficial-weights", help="Accept weights with "
                                                                "another hash (labelled not comparable)")] = False,
    kid: Annotated[bool, typer.Option("--kid", help="fid: also KID")] = False,
    save_stats: Annotated[bool, typer.Option("--save-stats", help="fid: write A's statistics to the .npz "
                                                                  "B")] = False,
    feature_space: Annotated[str, typer.Option(help="fid/kid: inception, judge or judge:PATH")] = "inception",
    batch_size: Annotated[int, typer.Option(help="fid/kid: images per forward pass")] = 50,
    workers: Annotated[int | None, typer.Option(min=0, metavar="<int>", help="fid/kid: image-decoding processes")] = None,
    seg_weights: Annotated[Path | None, typer.Option(help="fcn: a segmenter judge.pt \\[default: trained on "
                                                      "first use into the user cache]")] = None,
    judge: Annotated[Path | None, typer.Option(help="voxel-accuracy, all: a voxel- or shapes-classifier judge.pt "
                                                "\\[default: trained on first use into the user cache]")] = None,
    class_name: Annotated[str | None, typer.Option("--class", help="voxel-accuracy on files: the shapes' "
                                                                   "class")] = None,
    dataset: Annotated[str | None, typer.Option(help="toy on an .npy of points: ring or grid")] = None,
    min_depth: Annotated[float, typer.Option(help="depth: valid truth above this, metres")] = 1e-3,
    max_depth: Annotated[float, typer.Option(help="depth: valid truth below this, metres")] = 10.0,
    eigen_crop: Annotated[bool, typer.Option("--eigen-crop", help="depth on files: Eigen's NYU crop")] = False,
    kid_subset_size: Annotated[int, typer.Option(help="kid: samples per subset; each side needs at least "
                                                      "this many")] = 1000,
    class_means: Annotated[str, typer.Option(help="fcn: pix2pix (absent classes count 0, the FCN-score) or "
                                                  "present (keys *_present)")] = "pix2pix",
) -> None:
    """Score files or a checkpoint (one row per feedback step): a table, and JSON (docs/evaluate.md)."""
    from falcli.console import console, stage_progress  # keeps --help fast
    from falcli.commands.evaluate.checkpoints import EvaluateOptions, print_evaluation, run  # keeps --help fast

    options = EvaluateOptions(a=a, b=b, ckpt=ckpt, steps=steps, num_samples=num_samples, device=device,
                              json_path=json_path, dims=dims, weights=weights,
                              allow_unofficial_weights=allow_unofficial_weights, kid=kid, save_stats=save_stats,
                              feature_space=feature_space, batch_size=batch_size, workers=workers,
                              seg_weights=seg_weights, judge=judge, class_name=class_name, dataset=dataset,
                              min_depth=min_depth, max_depth=max_depth, eigen_crop=eigen_crop,
                              kid_subset_size=kid_subset_size, class_means=class_means)
    with stage_progress() as progress:
        evaluation = run(metric, options, progress)
    print_evaluation(evaluation, console)
    if evaluation.written is not None:
        console.print(f"[green]done[/] → {evaluation.written}", soft_wrap=True)


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `fal train`, or folders of runs "
                                                    "(e.g. an ablation's); several are compared on one page")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The HTML file \\[default: RUN/report.html for "
                                                                 "one run, else compare.html in the runs' common "
                                                                 "folder; -2, -3 … when taken]")] = None,
) -> None:
    """One self-contained HTML page: loss curves, metrics per step, samples with D's maps, recipe(s)."""
    from falcli.console import console  # keeps --help fast
    from falcli.commands.report import write_report  # keeps --help fast

    console.print(f"[green]done[/] → {write_report(runs, out)}", soft_wrap=True)
