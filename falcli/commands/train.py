"""The training loop, one for every task: G step over the unrolled feedback steps, then D step, then EMA.

Read top to bottom it is the whole story. Tasks only say how to feed the networks (falcli/tasks/base.py).
The step keeps losses on the device and reads them only at the logging interval, so it never waits on the
GPU mid-step (and could be captured whole in a CUDA graph).
Longer than ~400 lines on purpose: the loop, its resume and its checkpoints stay in one file to be read as one.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from falcli.core import checkpoint, cuda_graphs, tracking
from falcli import methods
from falcli.config import Recipe, TrainConfig, recipe_to_dict, recipe_to_yaml
from falcli.data.loader import batch_stream, check_batch_size
from falcli.errors import FalError
from falcli.fileio import append_jsonl
from falcli.nn import budget
from falcli.core.feedback import diversity_loss, proximity_loss, unroll
from falcli.core.losses import ADVERSARIAL, gradient_penalty, r1_penalty
from falcli.core.runtime import autocast, barrier, finish_processes, start_processes, to_device, use_bf16
from falcli.tasks import TASKS

ProgressFn = Callable[[int, int, "dict[str, float] | None"], None]  # (iterations done, total, logged stats)


@dataclass(frozen=True)
class RunOptions:
    out: Path | None = None             # run folder; None = runs/<recipe name>
    device: str = "auto"                # auto, cpu, cuda or cuda:N
    resume: str | None = None           # "auto" (newest checkpoint in the run folder) or a checkpoint path
    workers: int = 0                    # DataLoader worker processes
    tensorboard: bool = False           # also write TensorBoard events to RUN/tensorboard/ (needs the extra)


class TrainingDiverged(FalError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def run(recipe: Recipe, options: RunOptions = RunOptions(), on_progress: ProgressFn | None = None,
        say: Callable[[str], None] | None = None) -> Path:
    """Train `recipe` into its run folder and return the folder; `say` hears the run's notes as they are logged."""
    task = TASKS[recipe.task]
    cfg = recipe.train
    methods.check(task, recipe)
    if options.tensorboard:
        tracking.check_available()  # before anything is written
    processes, device = start_processes(options.device)  # one process, or one of a torchrun job
    if cfg.cuda_graph:
        cuda_graphs.check_supported(device, processes.world)
    if recipe.feedback.later_steps_train == "feedback_only" and processes.world > 1:
        # Two backward passes per G step; DDP's gradient hooks expect one.
        raise FalError("feedback.later_steps_train: feedback_only runs in one process; use `all` under torchrun")
    bf16 = use_bf16(cfg.precision, device)
    budget.check_training(recipe, task, device, processes.world)  # a step this device cannot hold: refused now
    if processes.is_main and (options.out is not None or options.resume in (None, "auto")):
        checkpoint.check_unlocked(options.out or Path("runs") / recipe.name)  # a live writer: refused at once
    # The inputs first, so that missing data or a batch too large leaves no run folder behind.
    dataset = task.make_dataset(recipe, "train")
    check_batch_size(len(dataset), cfg.batch_size, processes.world)
    preview = task.fixed_batch(recipe, device, 64)  # the sample pictures' fixed inputs (the val split)
    notes = methods.prepare(recipe, device)
    try:
        run_dir, resumed = _open_run_dir(recipe, options, processes.is_main)
    except BaseException:
        checkpoint.abandon_run(options.out or Path("runs") / recipe.name)
        raise
    if resumed:
        notes = [*_changed_train_settings(resumed, recipe, run_dir), *notes]
    if processes.is_main:  # notes are kept with the run: the recipe alone would not tell
        for note in notes:
            _log(run_dir, {"kind": "note", "iteration": resumed["iteration"] if resumed else 0, "note": note})
            if say is not None:
                say(note)
    start = resumed["iteration"] if resumed else 0
    tracker = None
    try:
        if options.tensorboard and processes.is_main:
            # A resume drops what the interrupted run logged after the checkpoint it continues from (`start`).
            tracker = tracking.Tracker(run_dir, purge_step=start + 1 if resumed else None)
        _train(task, recipe, options, processes, device, bf16, dataset, preview, run_dir, resumed, start,
               tracker, on_progress)
    finally:
        if tracker is not None:
            tracker.close()
        checkpoint.unlock_run(run_dir)  # on any exit; the kernel would drop it at the process's end anyway
    finish_processes()
    return run_dir


def _train(task, recipe: Recipe, options: RunOptions, processes, device, bf16, dataset, preview, run_dir: Path,
           resumed: dict | None, start: int, tracker, on_progress: ProgressFn | None) -> None:
    cfg = recipe.train

    # Networks and optimizers, rebuilt from the recipe (weights come from the checkpoint when resuming).
    G, D = build_networks(task, recipe, device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema_decay else None
    G_train, D_train = _distribute(G, D, processes.world, device)  # what gradients flow through
    opt_G, opt_D = make_optimizers(G, D, cfg, device, recipe.feedback.lr)

    # Data: the same batch order whether or not the run was interrupted.
    stream = batch_stream(dataset, cfg.batch_size, recipe.seed,
                          start_iteration=start, rank=processes.rank, world=processes.world,
                          workers=options.workers, pin_memory=device.type == "cuda")
    if resumed:
        checkpoint.load_weights(G, resumed["G"], Path(f"--resume {options.resume}"), "G")
        checkpoint.load_weights(D, resumed["D"], Path(f"--resume {options.resume}"), "D")
        for optimizer, state in ((opt_G, resumed["opt_G"]), (opt_D, resumed["opt_D"])):
            optimizer.load_state_dict(state)
            cuda_graphs.settle_optimizer(optimizer, cfg.cuda_graph, device)  # either setting resumes either
        if G_ema is not None:
            checkpoint.load_weights(G_ema, resumed["G_ema"], Path(f"--resume {options.resume}"), "G_ema")
        checkpoint.set_rng_state(resumed["rng"])  # after the DataLoader drew its worker seed, as a fresh run
    step = TrainStep(task, recipe, G, D, G_train, D_train, opt_G, opt_D, bf16, device)
    if cfg.cuda_graph:
        step = cuda_graphs.GraphedStep(step)

    sums: dict[str, torch.Tensor] = {}
    window, window_start = 0, time.perf_counter()
    for iteration in range(start, cfg.iterations):
        _set_learning_rates(opt_G, opt_D, cfg, iteration)
        batch = task.make_batch(to_device(next(stream), device), recipe, training=True)
        stats = step(batch, iteration)

        if G_ema is not None:
            _ema_update(G_ema, G, cfg.ema_decay)

        # Bookkeeping: sum losses on the device; read, check and log them only at the interval.
        for key, value in stats.items():
            sums[key] = sums.get(key, 0) + value.detach().float()
        window += 1
        done = iteration + 1
        logged = None
        if done % cfg.log_every == 0 or done == cfg.iterations:
            logged = _flush(run_dir if processes.is_main else None, done, sums, window,
                            time.perf_counter() - window_start, opt_G, opt_D)
            if tracker is not None:
                tracker.scalars(done, logged)
            sums, window, window_start = {}, 0, time.perf_counter()
        if not processes.is_main:  # the other processes only train; the main one writes
            continue
        if (cfg.sample_every and done % cfg.sample_every == 0) or done == cfg.iterations:
            picture = run_dir / "samples" / f"iter-{done:07d}.png"
            _save_samples(task, G_ema if G_ema is not None else G, D, preview, recipe, picture)
            if tracker is not None and picture.is_file():
                tracker.picture(done, "samples (every feedback step, with D's maps)", picture)
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:  # always right after a checked log line
            _save_checkpoint(run_dir, done, recipe, G, D, G_ema, opt_G, opt_D)
        if on_progress is not None:
            on_progress(done, cfg.iterations, logged)


# --- one iteration ---

def build_networks(task, recipe: Recipe, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """G and D from the recipe, on the device; channels_last for 2D convnets on CUDA (faster under bf16)."""
    G, D = task.make_networks(recipe)
    G, D = G.to(device), D.to(device)
    if task.dims == 2 and device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    return G, D


def make_optimizers(G: nn.Module, D: nn.Module, cfg: TrainConfig, device: torch.device,
                    feedback_lr: float | None = None) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    fused = device.type == "cuda"  # one kernel per update instead of one per parameter
    opt_G = torch.optim.Adam(_generator_groups(G, cfg, feedback_lr), cfg.lr_generator, betas=cfg.betas,
                             fused=fused)
    opt_D = torch.optim.Adam(D.parameters(), cfg.lr_discriminator, betas=cfg.betas, fused=fused)
    if cfg.cuda_graph:  # updates inside a graph: the rate becomes a device tensor the decay changes in place
        cuda_graphs.settle_optimizer(opt_G, True, device)
        cuda_graphs.settle_optimizer(opt_D, True, device)
    return opt_G, opt_D


@dataclass(frozen=True)
class TrainStep:
    """What one iteration updates; `step(batch, iteration)` runs it and returns its losses, on the device and
    detached from autograd.

    `run` calls it once per iteration; benchmarks/train_speed.py times the very same call.
    """

    task: object
    recipe: Recipe
    G: nn.Module
    D: nn.Module
    G_train: nn.Module                  # what gradients flow through: G and D, or their DDP wrappers
    D_train: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    bf16: bool
    device: torch.device
    autocast_cache: bool = True         # off when the step is captured in a CUDA graph (falcli/core/cuda_graphs.py)

    def __call__(self, batch, iteration: int) -> dict[str, torch.Tensor]:
        task, recipe, fb, device, bf16 = self.task, self.recipe, self.recipe.feedback, self.device, self.bf16
        G, D, G_train, D_train, opt_G, opt_D = self.G, self.D, self.G_train, self.D_train, self.opt_G, self.opt_D
        d_real_loss, d_fake_loss, g_loss = ADVERSARIAL[recipe.loss.adversarial]
        stats: dict[str, torch.Tensor] = {}
        discriminate = partial(task.discriminator_input, batch=batch)

        # G step: unroll T passes and fool D at every step. D is frozen: it scores, it does not learn here.
        D.requires_grad_(False)
        with autocast(bf16, device, cache=self.autocast_cache):
            out = unroll(G_train, D, batch.gen_input, batch.condition, fb.steps, fb, discriminate)
            loss_G = torch.zeros((), device=device)
            loss_later = torch.zeros((), device=device)  # steps ≥ 2, kept apart for later_steps_train
            for t, (weight, logits) in enumerate(zip(fb.weights, out.logits), start=1):
                stats[f"loss/G/step{t}"] = g_loss(logits)
                if t > 1 and fb.later_steps_train == "feedback_only":
                    loss_later = loss_later + weight * stats[f"loss/G/step{t}"]
                else:
                    loss_G = loss_G + weight * stats[f"loss/G/step{t}"]
            for name, term in (("proximity", proximity_loss(out, fb)), ("diversity", diversity_loss(out, fb))):
                if term is None:
                    continue
                stats[f"loss/G/{name}"] = term
                if fb.later_steps_train == "feedback_only":
                    loss_later = loss_later + term
                else:
                    loss_G = loss_G + term
            for name, term in task.extra_generator_losses(out, batch, recipe).items():
                stats[f"loss/G/{name}"] = term
                loss_G = loss_G + term
            for name, term in methods.generator_terms(recipe, G_train, D, out, batch).items():
                stats[f"loss/G/{name}"] = term
                loss_G = loss_G + term
        if fb.later_steps_train == "feedback_only" and fb.steps > 1:
            _step_split(opt_G, loss_G, loss_later, list(_feedback_modules(G).parameters()))
            loss_G = loss_G + loss_later
        else:
            _step(opt_G, loss_G)
        D.requires_grad_(True)
        stats["loss/G"] = loss_G

        # D step: reals against the detached fakes of every step (or of the last or the first only). G is frozen:
        # methods that run G here (GLeaD's decoding) must not train it.
        G.requires_grad_(False)
        fakes = [x.detach() for x in _discriminated(out.samples, fb.discriminate)]
        with autocast(bf16, device, cache=self.autocast_cache):
            real_input = discriminate(batch.real)
            stats["loss/D/real"] = d_real_loss(D_train(real_input))
            stats["loss/D/fake"] = sum(d_fake_loss(D_train(discriminate(x))) for x in fakes) / len(fakes)
            loss_D = stats["loss/D/real"] + stats["loss/D/fake"]
            if recipe.loss.adversarial == "wgan-gp":
                stats["loss/D/gp"] = gradient_penalty(D, real_input, discriminate(fakes[-1]))
                loss_D = loss_D + recipe.loss.gp_weight * stats["loss/D/gp"]
            if recipe.loss.r1_weight and iteration % recipe.loss.r1_every == 0:
                # Lazy R1 (StyleGAN2 §B): applied every N iterations, so weighted N times to keep its strength.
                stats["loss/D/r1"] = r1_penalty(D, real_input)
                loss_D = loss_D + recipe.loss.r1_weight * recipe.loss.r1_every * stats["loss/D/r1"]
            for name, term in methods.discriminator_terms(recipe, G, D_train, real_input, fakes, batch).items():
                stats[f"loss/D/{name}"] = term
                loss_D = loss_D + term
        _step(opt_D, loss_D)
        G.requires_grad_(True)
        stats["loss/D"] = loss_D
        # Detached: a loss kept with its autograd graph (the caller sums them until the logging interval, a
        # captured graph keeps its static ones) would keep this step's AccumulateGrad nodes alive into the
        # next backward, which then runs on another stream (warm-up → capture) and breaks the capture.
        return {key: value.detach() for key, value in stats.items()}


# --- the step's helpers ---

def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _step_split(optimizer: torch.optim.Optimizer, loss: torch.Tensor, later: torch.Tensor,
                feedback_parameters: list[nn.Parameter]) -> None:
    """`feedback.later_steps_train: feedback_only`: the later steps' loss reaches only the feedback modules."""
    optimizer.zero_grad(set_to_none=True)
    later.backward(inputs=feedback_parameters, retain_graph=True)
    loss.backward()
    optimizer.step()


def _discriminated(samples: list[torch.Tensor], which: str) -> list[torch.Tensor]:
    """The steps whose fakes D trains on: `feedback.discriminate` all, last or first."""
    return {"all": samples, "last": samples[-1:], "first": samples[:1]}[which]


def _feedback_modules(G: nn.Module) -> nn.Module:
    """The generator's feedback modules (every task's G keeps them as `.feedback`)."""
    modules = getattr(getattr(G, "module", G), "feedback", None)
    if modules is None:
        raise FalError("feedback.later_steps_train: feedback_only needs feedback modules (feedback.steps > 1)")
    return modules


@torch.no_grad()
def _ema_update(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for ema_buffer, buffer in zip(G_ema.buffers(), G.buffers()):
        ema_buffer.copy_(buffer)


def _generator_groups(G: nn.Module, cfg: TrainConfig, feedback_lr: float | None):
    """G's parameters: one group, or (with `feedback.lr`) the backbone and the feedback modules apart.

    Each group remembers its own base rate in "base_lr", which the decay scales.
    """
    if feedback_lr is None or getattr(G, "feedback", None) is None:
        return G.parameters()
    feedback = {id(p) for p in G.feedback.parameters()}
    return [{"params": [p for p in G.parameters() if id(p) not in feedback], "base_lr": cfg.lr_generator},
            {"params": list(G.feedback.parameters()), "lr": feedback_lr, "base_lr": feedback_lr}]


def learning_rate_factor(cfg: TrainConfig, iteration: int) -> float:
    """1 until the decay start (lr_decay_start, or lr_decay_start_fraction of the run), then linear to 0 at the
    last iteration (pix2pix's 'linear' policy)."""
    start = cfg.decay_start
    if start is None or iteration < start:
        return 1.0
    return 1.0 - (iteration - start) / (cfg.iterations - start)


def _set_learning_rates(opt_G, opt_D, cfg: TrainConfig, iteration: int) -> None:
    factor = learning_rate_factor(cfg, iteration)
    for group in opt_G.param_groups:
        cuda_graphs.set_learning_rate(group, group.get("base_lr", cfg.lr_generator) * factor)
    for group in opt_D.param_groups:
        cuda_graphs.set_learning_rate(group, cfg.lr_discriminator * factor)


# --- bookkeeping ---

def _distribute(G: nn.Module, D: nn.Module, world: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """DDP wrappers under torchrun (gradients averaged across processes); the modules themselves otherwise.

    The G step calls the *unwrapped* D: D is frozen there, and a DDP module whose parameters get no gradient
    in a backward pass would wait for them forever. static_graph lets G and D run several forward passes
    (one per feedback step) before their single backward.
    """
    if world == 1:
        return G, D
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":  # batch statistics over the global batch, as with one process
        G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(G, device_ids=ids, static_graph=True), DDP(D, device_ids=ids, static_graph=True)


def _open_run_dir(recipe: Recipe, options: RunOptions, is_main: bool = True) -> tuple[Path, dict | None]:
    """Create a fresh run folder, or open one for resuming. Never overwrites earlier results.

    Every process checks; then only the main process writes, after all have checked.
    """
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        raise FalError(f"--out {options.out}: a file, not a folder; choose a folder for the run")
    if options.resume is None:
        run_dir = options.out or Path("runs") / recipe.name
        if is_main:
            checkpoint.lock_run(run_dir)  # before looking: a second writer is refused, naming the live one
        if checkpoint.run_files(run_dir):
            if not (run_dir / "recipe.yaml").is_file():
                raise FalError(f"{run_dir} holds other files and no run; choose another --out")
            if not checkpoint.list_checkpoints(run_dir / "checkpoints"):
                raise FalError(f"{run_dir} holds a run that stopped before its first checkpoint (nothing to "
                               f"resume); delete that folder, or choose another --out")
            raise FalError(f"{run_dir} already holds a run; continue it with --resume auto, "
                           f"or choose another --out")
        barrier()
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.yaml").write_text(recipe_to_yaml(recipe))
        return run_dir, None

    if options.resume == "auto":
        run_dir = options.out or Path("runs") / recipe.name
        if is_main and run_dir.is_dir():
            checkpoint.lock_run(run_dir)
        found = checkpoint.latest_valid(run_dir / "checkpoints")
        if found is None:
            raise FalError(f"--resume auto: no checkpoint in {run_dir / 'checkpoints'} (a run that stopped before "
                           f"its first one cannot be resumed); start without --resume, with another --out or "
                           f"after deleting {run_dir}")
        path, payload = found
    else:
        path = checkpoint.resolve(Path(options.resume))  # a checkpoint file, or a run folder's newest
        payload = checkpoint.load(path)
        run_dir = options.out or _run_dir_of(path)
        if is_main:
            checkpoint.lock_run(run_dir)
    _check_resumable(payload, recipe, path)
    later = [p for p in checkpoint.list_checkpoints(run_dir / "checkpoints")
             if p.name > checkpoint.checkpoint_name(payload["iteration"])]
    if later and options.resume != "auto":  # auto: the later ones failed to load
        raise FalError(f"{path} is older than {later[-1]} in {run_dir}; continuing from it there would overwrite "
                       f"the later checkpoints: pass --out NEW_FOLDER to branch off, or --resume auto")
    stored = run_dir / "recipe.yaml"
    if not stored.exists() and checkpoint.run_files(run_dir):
        raise FalError(f"{run_dir} holds other files and no run; pass an empty or new --out for the continued run")
    barrier()
    if is_main:
        if not stored.exists():  # a new folder continuing another run's checkpoint
            run_dir.mkdir(parents=True, exist_ok=True)
            stored.write_text(recipe_to_yaml(recipe))
        elif stored.read_text() != recipe_to_yaml(recipe):
            (run_dir / f"recipe-resumed-at-{payload['iteration']:07d}.yaml").write_text(recipe_to_yaml(recipe))
        # what a killed writer left: half-saved checkpoints, and log lines after the checkpoint resumed from
        checkpoint.discard_temporary(run_dir / "checkpoints")
        checkpoint.truncate_log(run_dir / "metrics.jsonl", payload["iteration"])
    return run_dir, payload


def _changed_train_settings(payload: dict, recipe: Recipe, run_dir: Path) -> list[str]:
    """A note naming the `train` settings a resume changes: resuming from the shipped recipe without the first
    command's --set flags would otherwise turn a 200-iteration run into a 1000-iteration one without a word."""
    before, now = payload["recipe"].get("train", {}), recipe_to_dict(recipe)["train"]
    changed = [f"{key} {now[key]!r} (was {before[key]!r})" for key in now if key in before and before[key] != now[key]]
    if not changed:
        return []
    return [f"resuming with train settings other than the checkpoint's: {', '.join(changed)}; to keep the run's "
            f"own, resume with its recipe: fal train {run_dir / 'recipe.yaml'} --out {run_dir} --resume auto"]


def _run_dir_of(path: Path) -> Path:
    """The run folder a checkpoint was written into (…/RUN/checkpoints/iter-N.pt)."""
    run_dir = path.parent.parent
    if path.parent.name != "checkpoints" or not (run_dir / "recipe.yaml").is_file():
        raise FalError(f"--resume {path}: not inside a run folder (RUN/checkpoints/); pass --out FOLDER for the "
                       f"continued run")
    return run_dir


def _check_resumable(payload: dict, recipe: Recipe, path: Path) -> None:
    if payload["task"] != recipe.task:
        raise FalError(f"{path}: a checkpoint of task {payload['task']!r}, but the recipe trains "
                       f"{recipe.task!r}; pass a checkpoint of the same task")
    current = recipe_to_dict(recipe)
    for section in ("model", "data", "feedback", "method", "seed"):
        if payload["recipe"].get(section) != current[section]:
            raise FalError(f"{path}: the recipe's `{section}` differs from the checkpoint's; resume with the "
                           f"run's own recipe.yaml (only `train` settings may change)")
    if payload["iteration"] >= recipe.train.iterations:
        raise FalError(f"{path}: already trained for {payload['iteration']} iterations; continue with "
                       f"--set train.iterations=N (N > {payload['iteration']})")


def _flush(run_dir: Path | None, done: int, sums: dict, window: int, seconds: float, opt_G,
           opt_D) -> dict[str, float]:
    """Average the interval's losses (over processes too), check them, and append a metrics.jsonl line."""
    keys = sorted(sums)
    values = torch.stack([sums[k] for k in keys]).div(window)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
        values /= torch.distributed.get_world_size()
    logged = dict(zip(keys, values.tolist()))  # the one host sync per interval
    _check_finite(run_dir, done, logged)
    logged["time/iteration_ms"] = 1000.0 * seconds / window
    logged["lr/G"] = float(opt_G.param_groups[0]["lr"])
    logged["lr/D"] = float(opt_D.param_groups[0]["lr"])
    if run_dir is not None:
        _log(run_dir, {"kind": "train", "iteration": done, **logged})
    return logged


def _log(run_dir: Path, record: dict) -> None:
    """Append one JSON line to the run's metrics.jsonl."""
    append_jsonl(run_dir / "metrics.jsonl", record)


def _check_finite(run_dir: Path | None, done: int, values: dict[str, float]) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        kept = checkpoint.list_checkpoints(run_dir / "checkpoints") if run_dir is not None else []
        last = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
        raise TrainingDiverged(f"iteration {done}: {bad[0]} is not finite; {last}. Lower the learning rates "
                               f"or try another loss.adversarial, then --resume")


def _save_samples(task, G, D, preview, recipe: Recipe, path: Path) -> None:
    was_training = G.training, D.training
    G.eval(), D.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # pictures must not shift the training RNG
        out = unroll(G, D, preview.gen_input, preview.condition, recipe.feedback.sampling_steps,
                     recipe.feedback, partial(task.discriminator_input, batch=preview))
        path.parent.mkdir(parents=True, exist_ok=True)
        task.save_samples(out, preview, path)
    G.train(was_training[0]), D.train(was_training[1])


def _save_checkpoint(run_dir: Path, done: int, recipe: Recipe, G, D, G_ema, opt_G, opt_D) -> None:
    payload = {
        "format": "fal-checkpoint", "version": checkpoint.FORMAT_VERSION,
        "task": recipe.task, "iteration": done, "recipe": recipe_to_dict(recipe),
        "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict() if G_ema is not None else None,
        "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(), "rng": checkpoint.rng_state(),
        "versions": {"torch": str(torch.__version__), "fal": __import__("falcli").__version__},
    }
    directory = run_dir / "checkpoints"
    checkpoint.atomic_save(payload, directory / checkpoint.checkpoint_name(done))
    checkpoint.prune(directory, recipe.train.keep_checkpoints)
