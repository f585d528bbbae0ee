"""`fal ablate`: FAL against its baselines — the plain GAN at the same iterations, the plain GAN given the FAL
model's training FLOPs (compute-matched: k× the iterations, k counted by flops.py), and the plain GAN refined at
test time by D alone (latent DOT) — and, by name, FAL's successors EqGAN-SA, GLeaD and FAL + each; trained from
one recipe with one budget over several seeds, each scored by the task's own per-step metrics (quality next to
coverage), and written as `ablation.md` and `ablation.json`.

Every (config, seed) trains into `<out>/<config>-s<seed>/`, an ordinary run folder; `plain_dot` trains nothing:
`<out>/plain_dot-s<seed>/` is `fal refine --method dot-latent` (translation: dot-sample) of that seed's plain run.
A run whose final checkpoint exists is reused, not retrained, after checking it was trained with exactly the
recipe this command would use (so an interrupted ablation continues where it stopped, and runs trained by hand with
`fal train` count). A folder holding an unfinished run is refused unless `--resume auto` continues it. Runs are
never deleted or overwritten; the two reports are rebuilt from the runs each time.

Over 400 lines: the plan, the runs and the tables share one Planned list and one results layout; the table
writers are the first part to move out if it grows.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Callable

from falcli import methods
from falcli.commands import flops, train
from falcli.commands.refine import RefineOptions, refine
from falcli.config import Recipe, TrainConfig, recipe_to_dict
from falcli.core import checkpoint
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.fileio import write_atomic
from falcli.judges import provision
from falcli.metrics.feature_space import INCEPTION_MIN_IMAGES
from falcli.metrics.weights import INCEPTION_FID, _candidates
from falcli.resolve import recipe_from_dict, restore
from falcli.tasks import TASKS
from falcli.tasks.base import EvaluatePaths


@dataclasses.dataclass(frozen=True)
class Config:
    label: str
    feedback: bool = False              # FAL's T steps (the recipe's feedback.steps), else 1
    eqgan_sa: bool = False
    glead: bool = False
    compute_matched: bool = False       # the iterations that cost what the FAL model's do (compute_ratio)
    dot: bool = False                   # no run of its own: the plain run refined with D alone (latent DOT)


# The order is the table's.
CONFIGS: dict[str, Config] = {
    "plain": Config("plain GAN"),
    "plain_compute_matched": Config("plain GAN, compute-matched", compute_matched=True),
    "plain_dot": Config("plain GAN + DOT", dot=True),
    "fal": Config("FAL", feedback=True),
    "eqgan_sa": Config("EqGAN-SA", eqgan_sa=True),
    "glead": Config("GLeaD", glead=True),
    "fal_eqgan_sa": Config("FAL + EqGAN-SA", feedback=True, eqgan_sa=True),
    "fal_glead": Config("FAL + GLeaD", feedback=True, glead=True),
}
LABELS = {name: config.label for name, config in CONFIGS.items()}
# FAL and the three baselines every comparison needs (issue 18). The successors are image-only switches and
# cost two runs per seed each, so they are asked for by name: `--configs plain,fal,eqgan_sa,…`.
DEFAULT_CONFIGS = ["plain", "plain_compute_matched", "plain_dot", "fal"]
IGNORED_SECTIONS = ("name", "evaluate")  # differences there do not change what was trained
DOT_STEPS = 2                           # plain + DOT's steps: t=1 = G(z), t=2 = after DOT's iterations
# The headline of the tables, in this order of preference (the task's evaluation decides which exist), and the
# per-step columns: quality, then coverage. ablation.json keeps every metric of every step.
HEADLINES = ("fid_judge", "fid_inception", "high_quality", "accuracy", "fcn/class_iou", "labels/class_iou", "l1")
QUALITY = ("fid_judge", "fid_inception", "precision_judge", "precision_inception", "density_judge",
           "density_inception", "high_quality", "sw_to_mixture", "sliced_wasserstein", "precision", "density",
           "accuracy", "mmd_iou", "l1", "psnr", "ssim", "lpips", "fcn/class_iou", "fcn/pixel_accuracy",
           "labels/class_iou", "abs_rel", "rmse")
COVERAGE = ("recall_judge", "recall_inception", "coverage_judge", "coverage_inception", "modes_covered", "recall",
            "coverage")

Progress = Callable[..., None]  # progress_bar's update(done, total, stats, description=…)


@dataclasses.dataclass(frozen=True)
class Planned:
    config: str
    seed: int
    recipe: Recipe
    run_dir: Path
    action: str                         # "reuse", "resume", "train" or "refine" (plain_dot)
    done: int = 0                       # iterations already trained (resume)


def parse_configs(text: str | None) -> list[str]:
    """'plain,fal,…' → names in the table's order; None = DEFAULT_CONFIGS. plain_dot refines the plain runs, so
    asking for it brings the plain row too."""
    if text is None:
        return list(DEFAULT_CONFIGS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown or not names:
        raise FalError(f"--configs {text!r}: unknown {', '.join(unknown) or 'empty list'}; choose from "
                       f"{', '.join(CONFIGS)}")
    if any(CONFIGS[name].dot for name in names):
        names.append("plain")
    return [name for name in CONFIGS if name in names]


def variant(recipe: Recipe, config: str) -> Recipe:
    """The recipe of one config: the same model, data, loss and budget; only the switches differ."""
    chosen = CONFIGS[config]
    feedback = recipe.feedback
    if chosen.feedback and feedback.steps < 2:
        raise FalError(f"config {config!r} needs FAL: the recipe's feedback.steps must be >= 2 (got "
                       f"{feedback.steps}); it is the T of the FAL configs, while plain ones use 1")
    train = recipe.train
    if chosen.compute_matched:
        train = stretched(train, compute_ratio(recipe))
    if not chosen.feedback:
        feedback = feedback.plain()
    method = dataclasses.replace(recipe.method, eqgan_sa=chosen.eqgan_sa, glead=chosen.glead)
    made = dataclasses.replace(recipe, feedback=feedback, method=method, train=train)
    TASKS[made.task].validate(made)  # e.g. D's map must be small enough for the method
    methods.check(TASKS[made.task], made)
    return made


def compute_ratio(recipe: Recipe) -> float:
    """The FAL model's training FLOPs per iteration over the plain GAN's (falcli/commands/flops.py), counted once
    per recipe (the seeds share it); T where the counter cannot follow the step (each FAL iteration runs G and D
    T times)."""
    key = json.dumps(recipe_to_dict(dataclasses.replace(recipe, seed=0)), sort_keys=True, default=str)
    if key not in _RATIOS:
        # The `fal` row against its plain GAN: both without EqGAN-SA and GLeaD, as those two configs train.
        fal = dataclasses.replace(recipe, method=dataclasses.replace(recipe.method, eqgan_sa=False, glead=False))
        plain = dataclasses.replace(fal, feedback=fal.feedback.plain())
        fal_flops, plain_flops = flops.iteration_flops(fal), flops.iteration_flops(plain)
        _RATIOS[key] = fal_flops / plain_flops if fal_flops and plain_flops else float(recipe.feedback.steps)
    return _RATIOS[key]


_RATIOS: dict[str, float] = {}


def stretched(train: TrainConfig, k: float) -> TrainConfig:
    """`train` with k× the iterations, the decay start and the log, checkpoint and sample intervals stretched alike
    (rounded; checkpoints stay on a log line)."""
    log_every = max(1, round(train.log_every * k))
    return dataclasses.replace(
        train, iterations=max(1, round(train.iterations * k)), log_every=log_every,
        checkpoint_every=log_every * max(1, round(train.checkpoint_every * k / log_every)),
        sample_every=round(train.sample_every * k),
        lr_decay_start=None if train.lr_decay_start is None else round(train.lr_decay_start * k))


def quick_recipe(recipe: Recipe) -> Recipe:
    """A smoke-test version: 40 iterations and 300 samples per step, same models."""
    return dataclasses.replace(
        recipe,
        train=dataclasses.replace(recipe.train, iterations=40, log_every=20, checkpoint_every=40, sample_every=0),
        evaluate=dataclasses.replace(recipe.evaluate, num_samples=300),
    )


# --- planning: what to train, what to reuse (all checks before anything is trained) ---

def plan(recipe: Recipe, out: Path, seeds: int, configs: list[str], resume: bool) -> list[Planned]:
    planned = []
    for config in configs:
        for index in range(seeds):
            made = variant(dataclasses.replace(recipe, seed=recipe.seed + index), config)
            run_dir = out / f"{config}-s{made.seed}"
            planned.append(_plan_one(config, made, run_dir, resume))
    return planned


def _plan_one(config: str, recipe: Recipe, run_dir: Path, resume: bool) -> Planned:
    if CONFIGS[config].dot:
        if (run_dir / "refine.json").is_file():
            return Planned(config, recipe.seed, recipe, run_dir, "reuse")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FalError(f"{run_dir} holds something other than a `fal refine` folder (no refine.json); move it "
                           f"away or choose another --out")
        return Planned(config, recipe.seed, recipe, run_dir, "refine")
    final = run_dir / "checkpoints" / checkpoint.checkpoint_name(recipe.train.iterations)
    if final.is_file():
        _check_same_recipe(checkpoint.load(final), recipe, final)
        return Planned(config, recipe.seed, recipe, run_dir, "reuse", recipe.train.iterations)
    if not checkpoint.run_files(run_dir):  # absent, empty, or only the lock of a run that never started
        return Planned(config, recipe.seed, recipe, run_dir, "train")
    found = checkpoint.latest_valid(run_dir / "checkpoints")
    if found is None:
        raise FalError(f"{run_dir} holds a run without a checkpoint (still starting, or stopped early); wait "
                       f"for it, move it away, or choose another --out")
    path, payload = found
    _check_same_recipe(payload, recipe, path)
    if not resume:
        raise FalError(f"{run_dir} holds an unfinished run ({payload['iteration']} of {recipe.train.iterations} "
                       f"iterations); pass --resume auto to continue it (wait if it is still training)")
    return Planned(config, recipe.seed, recipe, run_dir, "resume", payload["iteration"])


def _check_same_recipe(payload: dict, recipe: Recipe, path: Path) -> None:
    stored = _flat(recipe_to_dict(recipe_from_dict(payload["recipe"], source=str(path))))
    wanted = _flat(recipe_to_dict(recipe))
    for key in sorted(set(stored) | set(wanted)):
        if key.split(".")[0] in IGNORED_SECTIONS or stored.get(key) == wanted.get(key):
            continue
        raise FalError(f"{path}: trained with {key} = {stored.get(key)!r}, but this ablation needs "
                       f"{wanted.get(key)!r}; choose another --out (runs are never overwritten)")


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- training and evaluation ---

def train_all(planned: list[Planned], device: str, update: Progress | None = None) -> None:
    """Train (or continue) every planned run; one progress count over all of their iterations."""
    todo = [p for p in planned if p.action in ("train", "resume")]
    total = sum(p.recipe.train.iterations - p.done for p in todo)
    offset = 0
    for item in todo:
        label = f"train {item.config} seed {item.seed}"

        def progress(done: int, iterations: int, stats=None, start=item.done, label=label, offset=offset):
            if update is not None:
                update(offset + done - start, total, stats, description=label)

        options = train.RunOptions(out=item.run_dir, device=device,
                                   resume="auto" if item.action == "resume" else None)
        train.run(item.recipe, options, on_progress=progress)
        offset += item.recipe.train.iterations - item.done


def final_checkpoint(run_dir: Path, recipe: Recipe) -> Path:
    return run_dir / "checkpoints" / checkpoint.checkpoint_name(recipe.train.iterations)


def evaluate_run(item: Planned, device: str, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
    """The task's per-step metrics for a run's final checkpoint (G_ema when the run kept one), given the judges
    in `paths`."""
    _, G, D, G_ema, _ = restore(final_checkpoint(item.run_dir, item.recipe), pick_device(device),
                                expect_task=item.recipe.task)
    task = TASKS[item.recipe.task]
    steps = item.recipe.feedback.sampling_steps
    where = next(G.parameters()).device
    return task.evaluate(G_ema if G_ema is not None else G, D, item.recipe, where, steps,
                         item.recipe.evaluate.num_samples, paths)


def refine_with_dot(item: Planned, device: str, say: Callable[[str], None]) -> dict:
    """plain + DOT: `fal refine --method dot-latent` (dot-sample where G has no latent) of the seed's plain run,
    on the latents of the task's evaluation (its fixed batch draws them from seed + 1), so t = 1 is the plain row's
    own samples and t = 2 the same samples after DOT; scored by refine.json's task metrics."""
    plain = final_checkpoint(item.run_dir.parent / f"plain-s{item.seed}", item.recipe)
    count = item.recipe.evaluate.num_samples
    if item.action == "reuse":
        result = json.loads((item.run_dir / "refine.json").read_text())
        if Path(result.get("checkpoint", "")) != plain.resolve() or result.get("count") != count:
            raise FalError(f"{item.run_dir}: refined {result.get('count')} samples of {result.get('checkpoint')}, "
                           f"but this ablation needs {count} of {plain}; choose another --out")
    else:
        method = "dot-sample" if TASKS[item.recipe.task].conditional else "dot-latent"
        result = refine(RefineOptions(plain, out=item.run_dir, steps=DOT_STEPS, method=method, count=count,
                                      seed=item.seed + 1, device=device), warn=say, say=say)
    if not result.get("task_metrics"):
        raise FalError(f"{item.run_dir}: the task's metrics could not score the DOT samples "
                       f"({'; '.join(result.get('notes') or ['no reason recorded'])})")
    return result


def train_seconds(run_dir: Path) -> float | None:
    """Seconds spent in training steps, from metrics.jsonl (sampling and checkpoints excluded)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train" and "time/iteration_ms" in row:
            lines[row["iteration"]] = row["time/iteration_ms"]  # a resumed run logs an interval again: keep one
    seconds, previous = 0.0, 0
    for iteration in sorted(lines):
        seconds += lines[iteration] * (iteration - previous) / 1000
        previous = iteration
    return seconds


# --- the table ---

def check_scorable(recipe: Recipe) -> None:
    """Refuse, before any training, an ablation of unconditional images whose runs could get no FID (their
    headline metric); other tasks are scored by whatever their evaluation gives."""
    if not {"eqgan_sa", "glead"} <= TASKS[recipe.task].supports_methods:  # the image task: scored by FID
        return
    samples = recipe.evaluate.num_samples
    needs = TASKS[recipe.task].judge_needs(recipe)  # shapes data: fid_judge, in the shapes judge's features
    if needs:
        dims = provision.judge_recipe(needs[0]).model.features  # the cached judge is trained from this recipe
        if min(samples, recipe.data.shapes_val) <= dims:
            raise FalError(f"the shapes judge's FID needs more than {dims} images per side, but evaluate.num_samples "
                           f"is {samples} and data.shapes_val {recipe.data.shapes_val}; raise them")
    elif not any(path.is_file() for path in _candidates(INCEPTION_FID.filename)) or samples < INCEPTION_MIN_IMAGES:
        raise FalError(f"runs on {recipe.data.source} data are scored by Inception FID, which needs "
                       f"{INCEPTION_FID.filename} in the torch hub cache and evaluate.num_samples >= "
                       f"{INCEPTION_MIN_IMAGES} (it is {samples})")


def _keep_table_rows(recipe: Recipe, out: Path, planned: list[Planned], resume: bool) -> list[Planned]:
    """The tables are rebuilt from every run they held, so a narrower request (`--configs fal`) adds to them and
    never drops rows: runs held but not asked for are planned again (reused when finished, else refused)."""
    stored = out / "ablation.json"
    if not stored.is_file():
        return planned
    try:
        report = json.loads(stored.read_text())
        held = [(config, run["seed"]) for config, runs in report["runs"].items() for run in runs]
    except (ValueError, KeyError, TypeError):
        raise FalError(f"{stored}: not an ablation table fal wrote; move it away or choose another --out") from None
    asked = {(item.config, item.seed) for item in planned}
    extra = []
    for config, seed in held:
        if (config, seed) not in asked and config in CONFIGS:
            made = variant(dataclasses.replace(recipe, seed=seed), config)
            extra.append(_plan_one(config, made, out / f"{config}-s{seed}", resume))
    order = {config: n for n, config in enumerate(CONFIGS)}
    return sorted(planned + extra, key=lambda item: (order.get(item.config, len(order)), item.seed))


def metric_name(rows: list[dict[str, float]]) -> str:
    """The tables' headline: the first of HEADLINES the task's evaluation gave."""
    for name in HEADLINES:
        if name in rows[0]:
            return name
    raise FalError("the runs' evaluation gave none of " + ", ".join(HEADLINES) + " (shapes data gives fid_judge; "
                   "other image data needs the Inception weights in the torch hub cache and >= 2048 samples per step)")


def table_keys(results: dict[str, list[dict]]) -> list[str]:
    """The per-step table's columns: quality, then coverage, among the metrics every run has at every step."""
    present = set.intersection(*(set(step) for runs in results.values() for run in runs for step in run["steps"]))
    return [key for key in QUALITY + COVERAGE if key in present]


def summarise(results: dict[str, list[dict]], metric: str, keys: list[str]) -> dict[str, dict]:
    """Per config: mean and std over seeds of every table key (and d_logit) at every step, plus the headline
    metric at step 1 and at the last step."""
    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    summary = {}
    for config, runs in results.items():
        steps = len(runs[0]["steps"])
        per_step = [{"step": t + 1, **{key: spread([r["steps"][t][key] for r in runs])
                                       for key in dict.fromkeys([metric, *keys, "d_logit"])
                                       if all(key in r["steps"][t] for r in runs)}}
                    for t in range(steps)]
        seconds = [r["train_seconds"] for r in runs if r["train_seconds"] is not None]
        summary[config] = {"label": LABELS[config], "steps": steps, "seeds": [r["seed"] for r in runs],
                           "per_step": per_step, "step1": per_step[0][metric], "last": per_step[-1][metric],
                           "train_seconds": spread(seconds) if seconds else None}
    return summary


LOWER_IS_BETTER = ("fid_judge", "fid_inception", "sw_to_mixture", "sliced_wasserstein", "mmd_iou", "l1", "lpips",
                   "abs_rel", "rmse")
DESCRIBED = {"fid_judge": "FID in the shapes judge's feature space", "fid_inception": "Inception FID",
             "high_quality": "high-quality share (within 3σ of a mode)", "accuracy": "voxel classifier accuracy",
             "fcn/class_iou": "FCN class IoU", "labels/class_iou": "label class IoU", "l1": "L1 to the target"}


def _matched_note(report: dict) -> str:
    matched = report.get("compute_matched")
    if not matched:
        return ""
    return (f"the compute-matched plain GAN: {matched['iterations']}, {matched['ratio']:.2f}× that — the FAL "
            f"model's training FLOPs per iteration over the plain GAN's, R1 left out; ")


def markdown(report: dict) -> str:
    metric, summary, keys = report["metric"], report["summary"], report.get("keys", [])
    what = DESCRIBED.get(metric, metric)
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    seeds = report["seeds"]
    lines = [f"# Ablation: {report['recipe']}", "",
             f"{what} ({better} is better), mean ± std over {len(seeds)} seed{'s' * (len(seeds) > 1)} "
             f"({', '.join(map(str, seeds))}); {report['num_samples']} samples of G_ema per step against the "
             f"task's references; {report['iterations']} iterations per run ({_matched_note(report)}plain + "
             f"DOT: the plain run, t=2 after DOT). Command:", "",
             f"    {report['command']}", "",
             f"| config | T | {metric} t=1 | {metric} t=T | {metric} per step t = 1 … T | train time per run |",
             "|---|---|---|---|---|---|"]
    cell = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    for row in summary.values():
        per_step = " → ".join(cell(s[metric]) for s in row["per_step"]) if row["steps"] > 1 else "—"
        seconds = row["train_seconds"]
        time = f"{seconds['mean']:.0f} ± {seconds['std']:.0f} s" if seconds else "—"
        lines.append(f"| {row['label']} | {row['steps']} | {cell(row['step1'])} | {cell(row['last'])} | "
                     f"{per_step} | {time} |")
    if keys:
        coverage = [key for key in keys if key in COVERAGE]
        lines += ["", f"Quality and coverage per step ({', '.join(coverage) or 'no coverage metric'}: coverage; "
                  f"the rest: quality; every metric of every run is in ablation.json):", "",
                  "| config | t | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
        for row in summary.values():
            for step in row["per_step"]:
                lines.append(f"| {row['label']} | {step['step']} | "
                             + " | ".join(cell(step[key]) if key in step else "—" for key in keys) + " |")
    lines += ["", f"Per seed ({metric} at t = 1 … T):", "", f"| config | seed | {metric} per step | run |",
              "|---|---|---|---|"]
    for config, runs in report["runs"].items():
        for run in runs:
            values = " → ".join(f"{step[metric]:.3f}" for step in run["steps"])
            lines.append(f"| {LABELS[config]} | {run['seed']} | {values} | `{run['run']}` |")
    return "\n".join(lines) + "\n"


def resume_mode(resume: str | None, out: Path | None) -> tuple[Path | None, bool]:
    """`--resume auto` continues the unfinished runs found in --out; `--resume PATH` continues the ablation in
    the folder PATH (as `fal train --resume PATH` continues a run), which --out then must name too or omit."""
    if resume is None:
        return out, False
    if resume == "auto":
        return out, True
    folder = Path(resume)
    if not folder.is_dir():
        raise FalError(f"--resume {resume}: not a folder; pass auto (the runs in --out) or an ablation's folder")
    if out is not None and Path(out).resolve() != folder.resolve():
        raise FalError(f"--resume {resume} and --out {out} name different folders; drop one")
    return folder, True


def run(recipe: Recipe, out: Path, seeds: int = 3, configs: list[str] | None = None, device: str = "auto",
        quick: bool = False, resume: bool = False, command: str = "fal ablate",
        on_progress: Progress | None = None, say: Callable[[str], None] = lambda line: None) -> dict:
    """Plan, train what is missing, evaluate every run, and write <out>/ablation.md and ablation.json."""
    if seeds < 1:
        raise FalError(f"--seeds must be >= 1 (got {seeds})")
    if quick:
        recipe = quick_recipe(recipe)
    if out.exists() and not out.is_dir():
        raise FalError(f"--out {out}: a file, not a folder; choose a folder for the ablation's runs")
    check_scorable(recipe)
    planned = plan(recipe, out, seeds, configs or list(DEFAULT_CONFIGS), resume)
    planned = _keep_table_rows(recipe, out, planned, resume)
    # The judges first (trained on first use): the variants differ in method and seed, not in data.
    paths = provision.fill(EvaluatePaths(), TASKS[recipe.task].judge_needs(recipe), pick_device(device))
    train_all(planned, device, on_progress)

    results: dict[str, list[dict]] = {}
    for index, item in enumerate(planned):
        if on_progress is not None:
            on_progress(index, len(planned), None, description=f"evaluate {item.config} seed {item.seed}")
        entry = {"seed": item.seed, "run": str(item.run_dir), "reused": item.action == "reuse"}
        if CONFIGS[item.config].dot:
            refined = refine_with_dot(item, device, say)
            entry.update(steps=refined["metrics"], train_seconds=None, refine_seconds=refined["seconds"])
        else:
            entry.update(steps=evaluate_run(item, device, paths), train_seconds=train_seconds(item.run_dir))
        results.setdefault(item.config, []).append(entry)
    if on_progress is not None:
        on_progress(len(planned), len(planned), None, description="evaluated")
    metric = metric_name(next(iter(results.values()))[0]["steps"])
    keys = table_keys(results)
    report = {"recipe": recipe.name, "command": command, "metric": metric, "keys": keys,
              "seeds": sorted({item.seed for item in planned}), "iterations": recipe.train.iterations,
              "num_samples": recipe.evaluate.num_samples, "summary": summarise(results, metric, keys),
              "runs": results}
    matched = [item for item in planned if CONFIGS[item.config].compute_matched]
    if matched:
        report["compute_matched"] = {"iterations": matched[0].recipe.train.iterations,
                                     "ratio": compute_ratio(recipe)}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "ablation.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "ablation.md", markdown(report))
    return report
