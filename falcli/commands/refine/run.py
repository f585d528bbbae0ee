"""`fal refine` end to end: check the options, open the checkpoint, pick the source, run the method into a fresh
folder (RUN/refine-K when --out is absent) and write refine.json."""
from __future__ import annotations

import json
from pathlib import Path

from falcli.commands.refine.common import RefineOptions
from falcli.commands.refine.runners import refine_rejection, refine_source
from falcli.commands.refine.sources import plan, run_folder
from falcli.commands.sample import ProgressFn, WarnFn, _warn, check_batch_size, check_steps, open_checkpoint, \
    require_steps
from falcli.core.files import check_fresh, fresh_folder
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.methods import refinement
from falcli.tasks import TASKS

def refine(options: RefineOptions, on_progress: ProgressFn | None = None, warn: WarnFn = _warn,
           say: WarnFn | None = None) -> dict:
    """Refine samples with options.method and write everything into options.out (or a new RUN/refine-K);
    returns refine.json's content (scores and metrics per step, inversion errors, the method's numbers).
    `say` receives one line saying what is refined (the run's samples or fresh draws) when --input is absent."""
    chosen = refinement.method(options.method)
    if options.steps is not None:
        require_steps(options.steps)
    if options.invert_iterations is not None and options.invert_iterations < 1:
        raise FalError(f"--invert-iterations must be >= 1 (got {options.invert_iterations})")
    if options.batch_size is not None:
        check_batch_size(options.batch_size)
    if options.count is not None and options.count < 1:
        raise FalError(f"--count must be >= 1 (got {options.count})")
    if options.out is not None:
        check_fresh(options.out)
    device = pick_device(options.device)
    recipe, G, D, _ = open_checkpoint(options.checkpoint, device)
    task = TASKS[recipe.task]
    conditional = task.conditional
    steps = _steps_for(chosen, options, recipe, warn)
    _check_method(chosen, options, conditional)
    notes: list[str] = []  # what could not be scored, and why: into refine.json and on the console

    def note(line: str) -> None:
        notes.append(line)
        (say or warn)(line)

    say = say or (lambda message: None)

    if chosen.space == "rejection":
        source = None
        say(f"drs draws its samples from the checkpoint (--seed {options.seed}) until "
            f"{options.count or recipe.evaluate.num_samples} are accepted")
    else:
        source = plan(options, recipe, warn, chosen, say, G, device)
    out = Path(options.out) if options.out is not None else claim_numbered(run_folder(options.checkpoint))
    try:
        with fresh_folder(out) as tmp:
            if source is None:
                result = refine_rejection(options, recipe, task, G, D, device, tmp, on_progress, note)
            else:
                result = refine_source(options, chosen, steps, recipe, task, source, G, D, device, tmp,
                                       on_progress, warn, note)
            result["notes"] = notes
            result["out"] = str(out)  # where the folder ends up (it is written under a temporary name)
            (tmp / "refine.json").write_text(json.dumps(result, indent=2) + "\n")
    except BaseException:
        if options.out is None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the numbered folder claimed for this call, still empty
        raise
    return result


def _steps_for(chosen: refinement.Method, options: RefineOptions, recipe, warn: WarnFn) -> int:
    if chosen.space == "loop":
        steps = options.steps if options.steps is not None else recipe.feedback.sampling_steps
        if steps > 1 and recipe.feedback.steps == 1:
            raise FalError("this checkpoint was trained without feedback (feedback.steps: 1): its generator cannot "
                           "read D's map; use --steps 1, a checkpoint trained with feedback.steps >= 2, or a "
                           "method that refines with D alone (--method dot-latent, dot-sample, gradient or drs)")
        check_steps(steps, recipe, warn)
        return steps
    if chosen.space == "rejection":
        if options.steps not in (None, 2):
            raise FalError(f"--steps {options.steps}: drs has two steps, before and after rejection; drop --steps")
        return 2
    steps = options.steps if options.steps is not None else 2
    if steps < 2:
        raise FalError(f"--steps {steps}: {chosen.name} records the start and the final iterate at least "
                       f"(--steps 2, or more for points in between)")
    return steps


def _check_method(chosen: refinement.Method, options: RefineOptions, conditional: bool) -> None:
    """Where a method is not defined, one line naming the one that applies."""
    if conditional and chosen.name == "dot-latent":
        raise FalError("--method dot-latent: a translation generator has no latent to optimise; use --method "
                       "dot-sample (the same transport on the output itself)")
    if conditional and chosen.space == "rejection":
        raise FalError("--method drs: a translation generator makes one output per input, so there is nothing to "
                       "reject among; use --method dot-sample or gradient")
    if chosen.space == "rejection" and options.input is not None:
        raise FalError("--method drs draws its own samples from the checkpoint (it needs many more than it keeps); "
                       "drop --input")
    if not chosen.iterative and (options.iterations is not None or options.lr is not None):
        raise FalError(f"--iterations and --lr are for dot-latent, dot-sample and gradient, not {chosen.name}")
    if chosen.space != "latent" and chosen.name != "dot-sample" and options.k_eff is not None:
        raise FalError(f"--k-eff is for dot-latent and dot-sample, not {chosen.name}")
    if options.k_eff is not None and not options.k_eff > 0:
        raise FalError(f"--k-eff must be > 0 (got {options.k_eff})")


# --- where results go ---

def claim_numbered(run: Path, prefix: str = "refine") -> Path:
    """Create RUN/refine-K for the smallest free K and return it. mkdir(exist_ok=False) is atomic, so two calls
    at once get different folders; an existing folder is never touched."""
    numbers = [int(p.name[len(prefix) + 1:]) for p in run.glob(f"{prefix}-*")
               if p.name[len(prefix) + 1:].isdigit()]
    k = max(numbers, default=0) + 1
    while True:
        folder = run / f"{prefix}-{k}"
        try:
            folder.mkdir(exist_ok=False)
            return folder
        except FileExistsError:
            k += 1


