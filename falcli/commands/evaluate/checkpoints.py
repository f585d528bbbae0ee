"""`fal evaluate METRIC`: one metric on files (folders, `.npy`, `.npz`) or on a checkpoint, one row per feedback step.

METRICS maps each name to a function that reads its inputs and returns an Evaluation: rows, the protocol and
notes. The maths lives in falcli/metrics, fid.py (next to this module) and the tasks' own evaluation code; this
module rebuilds checkpoints and dispatches (files are read and scored in files.py, next to this module), then
prints a table and writes a JSON file that never replaces an existing one. Longer than ~400 lines because
each checkpoint metric's checks (which weights, judges and data it needs) sit next to its dispatch.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from rich.table import Table
from rich.text import Text
from torch import nn

from falcli import __version__, resolve
from falcli.commands.evaluate import files
from falcli.commands.evaluate.fid import fid_command, protocol_lines
from falcli.commands.sample import refuse_feedback_of_plain_gan
from falcli.core import checkpoint, tracking
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.fileio import write_new_file
from falcli.judges import provision
from falcli.metrics.image import SSIM_PROTOCOLS
from falcli.metrics.segmentation import CLASS_MEANS
from falcli.tasks import TASKS
from falcli.tasks.base import EvaluatePaths
from falcli.tasks.translation import evaluate as translation_eval
from falcli.tasks.voxel import evaluate_voxel

ProgressFn = Callable[[str, int, int], None]  # (description, done, total)
MetricFn = Callable[[str, "EvaluateOptions", ProgressFn], "Evaluation"]
FilesFn = Callable[[str, "EvaluateOptions", ProgressFn], "files.FileScore"]
# What a metric keeps of a task's per-step rows: a name matches the key itself and every `name/…` key.
SELECT: dict[str, tuple[str, ...]] = {
    "l1": ("l1",), "psnr": ("psnr",), "ssim": ("ssim",), "ssim-gaussian": ("ssim_gaussian",), "lpips": ("lpips",),
    "fcn": ("fcn", "fcn_real", "labels"), "depth": ("depth",),
    "voxel-accuracy": ("accuracy", "predicted", "real_accuracy"),
    "d_score": ("d_logit", "d_real_probability"),  # the one name D's score had before: old recipes keep working
}


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """What `fal evaluate` was asked (keyword-only: two dozen fields are not kept apart by position)."""

    a: Path | None = None               # first input: outputs (folder), points (.npy); fid: folder, .npz or .pt
    b: Path | None = None               # second input: targets, label maps, true depth; fid: the reference
    ckpt: Path | None = None            # a checkpoint, or a run folder (its newest checkpoint)
    steps: int | None = None            # feedback steps to unroll; None = the recipe's sampling steps
    num_samples: int | None = None      # samples (pairs) per step; None = the recipe's evaluate.num_samples
    device: str = "auto"                # auto, cpu, cuda or cuda:N
    json_path: Path | None = None       # None = <run folder>/evaluate-<metric>.json for a checkpoint, else none
    dims: int = 2048                    # fid/kid: Inception feature block
    weights: Path | None = None         # Inception (fid, kid) or AlexNet (lpips) weights; None = torch hub cache
    allow_unofficial_weights: bool = False  # accept weights with another hash; the value is labelled not comparable
    kid: bool = False                   # fid: also KID
    save_stats: bool = False            # fid: write A's statistics to the .npz B instead of comparing
    feature_space: str = "inception"    # fid/kid: inception, judge or judge:PATH
    batch_size: int = 50                # fid/kid: images per forward pass
    workers: int | None = None          # fid/kid: image-decoding processes; None = min(8, CPUs)
    seg_weights: Path | None = None     # fcn: a segmenter judge.pt
    judge: Path | None = None           # voxel-accuracy: a voxel-classifier judge.pt
    class_name: str | None = None       # voxel-accuracy on files: the class the shapes should be
    dataset: str | None = None          # toy on an .npy: the mixture, ring or grid
    min_depth: float = 1e-3             # depth: ground truth is valid in (min_depth, max_depth), metres
    max_depth: float = 10.0
    eigen_crop: bool = False            # depth on files: score only inside Eigen's NYU crop
    kid_subset_size: int = 1000         # fid/kid: samples per KID subset (torch-fidelity's default)
    class_means: str = "pix2pix"        # fcn: pix2pix's get_scores (absent classes 0) or present (keys *_present)


@dataclass
class Evaluation:
    metric: str
    rows: list[dict[str, Any]]          # {"step": t, key: value}; step None for files
    inputs: dict[str, Any]              # what was scored
    protocol: dict[str, Any] = field(default_factory=dict)  # how it was scored
    notes: list[str] = field(default_factory=list)          # warnings and skipped parts, one line each
    checkpoint: dict[str, Any] | None = None  # path, task, iteration, generator, steps, trained_steps, num_samples
    saved: list[str] = field(default_factory=list)          # fid --save-stats outputs
    run_dir: Path | None = None         # the checkpoint's run folder: where the JSON goes by default
    written: Path | None = None         # the JSON file written, if any

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "fal_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inputs": self.inputs,
                "checkpoint": self.checkpoint, "protocol": self.protocol, "rows": self.rows,
                "notes": self.notes, "saved": self.saved}


# --- the command ---

def run(metric: str, options: EvaluateOptions, progress: ProgressFn | None = None) -> Evaluation:
    """Compute `metric` on the inputs in `options`, write the JSON (see `write_json`) and return the result."""
    if metric not in METRICS:
        raise FalError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")

    if options.class_means not in CLASS_MEANS:
        raise FalError(f"--class-means {options.class_means!r}: choose one of {', '.join(CLASS_MEANS)}")
    options = _check_options(metric, options)
    evaluation = METRICS[metric](metric, options, progress or (lambda *_: None))
    evaluation.written = write_json(evaluation, options.json_path)
    if evaluation.run_dir is not None and evaluation.checkpoint:  # the run's TensorBoard events, if it keeps any
        tracking.log_evaluation(evaluation.run_dir, evaluation.checkpoint.get("iteration") or 0, metric,
                                evaluation.rows)
    return evaluation


def _check_options(metric: str, options: EvaluateOptions) -> EvaluateOptions:
    """Fail on bad flags before anything is loaded; a lone `.pt` input counts as --ckpt outside fid/kid."""
    if options.steps is not None and options.steps < 1:
        raise FalError(f"--steps must be >= 1 (got {options.steps}); step 1 is the generator's first pass")
    if options.num_samples is not None and options.num_samples < 1:
        raise FalError(f"--num-samples must be >= 1 (got {options.num_samples})")
    if not 0 <= options.min_depth < options.max_depth:  # nan compares false: refused too
        raise FalError(f"--min-depth {options.min_depth} and --max-depth {options.max_depth}: need 0 <= min < max "
                       f"(metres)")
    if options.json_path is not None and options.json_path.exists():
        raise FalError(f"{options.json_path}: already exists; choose another --json path or delete it")
    if metric not in ("fid", "kid"):
        lone_pt = options.a is not None and options.a.suffix == ".pt" and options.b is None
        if options.ckpt is None and lone_pt:
            options = replace(options, ckpt=options.a, a=None)
        elif options.ckpt is not None and (options.a is not None or options.b is not None):
            raise FalError(f"pass either --ckpt or input files to `fal evaluate {metric}`, not both")
    fid_only = [flag for flag, given in (("--kid", options.kid), ("--dims", options.dims != 2048),
                                         ("--save-stats", options.save_stats)) if given]
    if fid_only and metric not in ("fid", "kid"):
        raise FalError(f"{fid_only[0]} applies to `fal evaluate fid` (or kid), not to {metric}; drop it")
    on_checkpoint = options.ckpt is not None or any(p is not None and p.suffix == ".pt"
                                                    for p in (options.a, options.b))
    if not on_checkpoint and (options.steps is not None or options.num_samples is not None):
        raise FalError("--steps and --num-samples apply to a checkpoint (--ckpt CKPT); files are scored as they are")
    return options


def write_json(evaluation: Evaluation, explicit: Path | None) -> Path | None:
    """Write the result to `explicit` (never replacing a file), else to <run folder>/evaluate-<metric>.json
    (or -2, -3 … when taken) for a checkpoint; files alone are only printed."""
    data = (json.dumps(evaluation.to_json(), indent=1, default=_plain) + "\n").encode()
    if explicit is not None:
        if not write_new_file(explicit, data):
            raise FalError(f"{explicit}: already exists; choose another --json path or delete it")
        return explicit
    if evaluation.run_dir is None:
        return None
    for n in range(1, 10_000):
        path = evaluation.run_dir / (f"evaluate-{evaluation.metric}.json" if n == 1
                                     else f"evaluate-{evaluation.metric}-{n}.json")
        if write_new_file(path, data):
            return path
    raise FalError(f"{evaluation.run_dir}: too many evaluate-{evaluation.metric}-N.json files; pass --json PATH")


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths."""
    return value.item() if hasattr(value, "item") else str(value)


# --- tables (the console here, the HTML report in falcli/commands/report.py) ---

def metric_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, lines): one line per metric key, one column per feedback step ("value" for files)."""
    header = ["metric"] + ["value" if r.get("step") is None else f"t={r['step']}" for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "step"))
    return header, [[key] + [format_value(r.get(key)) for r in rows] for key in keys]


def format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def title(evaluation: Evaluation) -> str:
    ck = evaluation.checkpoint
    if ck is not None:
        return (f"{evaluation.metric}: {ck['path']} (iteration {ck['iteration']}, {ck['generator']}, "
                f"{ck['num_samples']} samples per step)")
    return f"{evaluation.metric}: " + " vs ".join(str(v) for k, v in evaluation.inputs.items() if k in ("a", "b"))


def print_evaluation(evaluation: Evaluation, console) -> None:
    if "label" in evaluation.protocol:  # fid: whether the value is comparable with published ones comes first
        label, *details = protocol_lines(evaluation.protocol)
        console.print(label, markup=False)
        for line in details:
            console.print(Text(line, style="dim"), soft_wrap=True)
    for path in evaluation.saved:
        console.print(f"saved {path}", markup=False)
    if evaluation.rows:
        header, lines = metric_table(evaluation.rows)
        console.print(Text(title(evaluation), style="bold"), soft_wrap=True)  # paths may hold [brackets]
        table = Table()
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    for note in evaluation.notes:
        console.print(Text.assemble(("note: ", "yellow"), note), soft_wrap=True)


# --- checkpoints ---

@dataclass
class Restored:
    """A checkpoint rebuilt for evaluation: G is G_ema when the run kept one (as for the sample pictures)."""

    path: Path
    recipe: Any
    G: nn.Module
    D: nn.Module
    device: torch.device
    steps: int
    num_samples: int
    info: dict[str, Any]

    def evaluation(self, metric: str, rows: list[dict], notes: list[str], protocol: dict | None = None) -> Evaluation:
        rows = [{"step": t, **row} for t, row in enumerate(rows, start=1)]
        return Evaluation(metric, rows, {"checkpoint": str(self.path)}, protocol or {}, notes, self.info,
                          run_dir=run_dir_of(self.path))


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file as given, or the newest one of a run folder."""
    return checkpoint.resolve(path)


def run_dir_of(path: Path) -> Path:
    """The run folder of runs/x/checkpoints/iter-N.pt, or the checkpoint's own folder."""
    folder = path.parent
    if folder.name == "checkpoints" and (folder.parent / "recipe.yaml").is_file():
        return folder.parent
    return folder


def scoring_tasks(metric: str) -> tuple[str, ...]:
    """The tasks whose checkpoints `metric` scores (each task lists its metrics in checkpoint_metrics)."""
    return tuple(name for name, task in TASKS.items() if metric in task.checkpoint_metrics)


def restore(metric: str, options: EvaluateOptions, any_task: bool, notes: list[str]) -> Restored:
    """Rebuild the checkpoint of --ckpt; FalError when `metric` does not score its task (unless any_task)."""
    path = resolve_checkpoint(options.ckpt)
    device = pick_device(options.device)
    restored = resolve.restore(path, device)  # G is G_ema when the run kept one
    recipe, payload = restored.recipe, restored.payload
    tasks = scoring_tasks(metric)
    if not any_task and recipe.task not in tasks:
        raise FalError(f"{path}: a checkpoint of task {recipe.task!r}, but `fal evaluate {metric}` scores "
                       f"{' or '.join(repr(t) for t in tasks)} checkpoints; `fal evaluate all --ckpt {path}` "
                       f"runs its task's own metrics")
    steps = checkpoint_steps(options.steps, recipe.feedback, notes)
    num_samples = options.num_samples or recipe.evaluate.num_samples
    available = TASKS[recipe.task].evaluation_pool(recipe)  # translation: the val pairs
    if available is not None and num_samples > available:
        notes.append(f"{num_samples} samples asked for, but the val split has {available} pairs: all of them "
                     f"are scored")
        num_samples = available
    info = {"path": str(path), "task": recipe.task, "iteration": payload["iteration"],
            "generator": restored.generator, "steps": steps,
            "trained_steps": recipe.feedback.steps, "num_samples": num_samples}
    return Restored(path, recipe, restored.sampler, restored.D, device, steps, num_samples, info)


def checkpoint_steps(requested: int | None, feedback, notes: list[str]) -> int:
    """--steps, or the recipe's sampling steps; more than were trained is allowed, with a warning."""
    if requested is None:
        return feedback.sampling_steps
    refuse_feedback_of_plain_gan(requested, feedback.steps)  # as `fal sample` and `fal refine` refuse it
    if requested > feedback.steps:
        notes.append(f"--steps {requested}: the model was trained with {feedback.steps} feedback step(s); "
                     f"steps {feedback.steps + 1}..{requested} run the loop beyond what it learned")
    return requested


def judges_for(ck: Restored, paths: EvaluatePaths, slots: tuple[str, ...] | None = None) -> EvaluatePaths:
    """`paths` with the judges the checkpoint's task needs (those of `slots`) that were not given: from the user
    cache, or trained there now (falcli/judges/provision.py)."""
    return provision.fill(paths, TASKS[ck.recipe.task].judge_needs(ck.recipe), ck.device, slots)


def _selected(rows: list[dict], names: tuple[str, ...]) -> list[dict]:
    return [{k: v for k, v in row.items() if any(k == n or k.startswith(n + "/") for n in names)} for row in rows]


@contextlib.contextmanager
def _busy(progress: ProgressFn, description: str) -> Iterator[None]:
    """A one-unit bar (its clock runs) around work whose inner loop lives in a task module."""
    progress(description, 0, 1)
    yield
    progress(description, 1, 1)


# --- fid and kid: falcli/commands/evaluate/fid.py ---

def _fid(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
    a, b = options.a, options.b
    if options.ckpt is not None:
        if b is not None:
            raise FalError(f"`fal evaluate {metric} --ckpt CKPT REFERENCE` takes one reference (a folder of images "
                           f"or .npz statistics), not two")
        a, b = resolve_checkpoint(options.ckpt), a
    if a is None or b is None:
        raise FalError(f"`fal evaluate {metric}` needs two inputs: A B (folders of images, .npz statistics or a "
                       f".pt checkpoint), or --ckpt CKPT REFERENCE")
    notes: list[str] = []
    ckpt = next((p for p in (a, b) if p.suffix == ".pt"), None)
    info, run_dir = None, None
    if ckpt is not None:  # the steps and the JSON's place need the recipe before the engine runs
        payload = checkpoint.load(ckpt)
        recipe = resolve.recipe_from_dict(payload["recipe"], source=str(ckpt))
        steps = checkpoint_steps(options.steps, recipe.feedback, notes)
        info = {"path": str(ckpt), "task": recipe.task, "iteration": payload["iteration"],
                "generator": resolve.generator_name(payload), "steps": steps,
                "trained_steps": recipe.feedback.steps,
                "num_samples": options.num_samples or recipe.evaluate.num_samples}
        run_dir = None if options.save_stats else run_dir_of(ckpt)
    description = f"{metric} {a.name} vs {b.name}"
    result = fid_command(a, b, dims=options.dims, weights=options.weights,
                         allow_unofficial=options.allow_unofficial_weights, kid=options.kid or metric == "kid",
                         save_stats=options.save_stats, device=options.device, batch_size=options.batch_size,
                         workers=options.workers, steps=options.steps, num_samples=options.num_samples,
                         feature_space=options.feature_space, fid=metric == "fid",
                         kid_subset_size=options.kid_subset_size,
                         started=lambda: progress(description, 0, 1))  # the bar only once the inputs are accepted
    progress(description, 1, 1)
    return Evaluation(metric, result["rows"], {"a": str(a), "b": str(b)}, result["protocol"], notes, info,
                      result["saved"], run_dir)


# --- metrics of translation, voxel and toy checkpoints (their files: falcli/commands/evaluate/files.py) ---

def _translation_metric(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
    """A translation checkpoint scored per step by the task's evaluation, keeping `metric`'s keys. Judges and
    weights are opened first, so a missing one fails at once instead of after the evaluation."""
    notes: list[str] = []
    ck = restore(metric, options, False, notes)
    pairing = TASKS[ck.recipe.task].pairing(ck.recipe)
    direction = ck.recipe.data.direction or pairing.meta.get("default_direction")
    reasons: list[str] = []
    if metric == "lpips" and translation_eval._open_lpips(options.weights, ck.device, ck.recipe.data.image_size,
                                                          reasons.append, options.allow_unofficial_weights) is None:
        raise FalError(reasons[-1])
    seg_weights = options.seg_weights
    if metric == "fcn":
        if not (pairing.makes_photos or pairing.makes_labels):
            raise FalError(f"{ck.path}: direction {direction!r} makes no photos from label maps and no label maps; "
                           f"the FCN-score needs one of those")
        seg_weights = judges_for(ck, EvaluatePaths(seg_weights=seg_weights), ("seg_weights",)).seg_weights
        if pairing.makes_photos and translation_eval._open_segmenter(seg_weights, pairing, ck.device,
                                                                     reasons.append) is None:
            raise FalError(reasons[-1])
    if metric == "depth" and not pairing.target_is_depth:
        raise FalError(f"{ck.path}: direction {direction!r} makes no depth maps; depth scores photo → depth "
                       f"checkpoints (or two folders of depth maps)")
    if metric == "depth" and "depth" not in TASKS[ck.recipe.task].make_dataset(ck.recipe, "val").arrays:
        raise FalError(f"{ck.recipe.data.root}: stores no depth in metres (meta.json eval_fields.depth); prepare "
                       f"the dataset again with this version of fal")
    with _busy(progress, f"{metric} {ck.path.name}, {ck.steps} steps"):
        rows = translation_eval.evaluate_translation(ck.G, ck.D, ck.recipe, ck.device, ck.steps, ck.num_samples,
                                                     lpips_weights=options.weights,
                                                     seg_weights=seg_weights, note=reasons.append,
                                                     allow_unofficial_weights=options.allow_unofficial_weights,
                                                     class_means=options.class_means)
    rows = _selected(rows, SELECT[metric])
    if not any(rows):  # the evaluation said why in a note
        raise FalError(reasons[-1] if reasons else f"{ck.path}: the evaluation produced no {metric} values")
    protocol = {"split": "val", "images": "[-1, 1], data_range 2"}
    if metric.startswith("ssim"):

        protocol = {"split": "val", "images": "outputs rounded to uint8 values [0, 255], as their PNG files",
                    "data_range": 255.0, "ssim": SSIM_PROTOCOLS[metric.replace("-", "_")]}
    return ck.evaluation(metric, rows, notes, protocol)


def _voxel_metric(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
    """evaluate_voxel per step, keeping the classifier's accuracy (the paper's ShapeNet metric)."""
    if options.class_name is not None:
        raise FalError("--class: a checkpoint is scored on the classes it was trained on (data.classes); "
                       "drop --class")
    notes: list[str] = []
    ck = restore(metric, options, False, notes)
    judge = judges_for(ck, EvaluatePaths(judge=options.judge), ("judge",)).judge
    with _busy(progress, f"{metric} {ck.path.name}, {ck.steps} steps"):
        rows = evaluate_voxel(ck.G, ck.D, ck.recipe, ck.device, ck.steps, ck.num_samples, judge_path=judge)
    return ck.evaluation(metric, _selected(rows, SELECT[metric]), notes, {"judge": str(judge)})


def _toy_metric(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
    """The toy task's metrics per step: modes covered, high-quality share, sliced Wasserstein distances (to a
    reference draw and to the mixture), D's score."""
    notes: list[str] = []
    ck = restore(metric, options, False, notes)
    with _busy(progress, f"{metric} {ck.path.name}, {ck.steps} steps"):
        rows = TASKS[ck.recipe.task].evaluate(ck.G, ck.D, ck.recipe, ck.device, ck.steps, ck.num_samples)
    return ck.evaluation(metric, rows, notes, {"mixture": ck.recipe.data.mixture})


def _checkpoint_or_files(on_checkpoint: MetricFn, on_files: FilesFn) -> MetricFn:
    """A metric that scores --ckpt per feedback step, or else the files A (and B) once."""
    def evaluate(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
        if options.ckpt is not None:
            return on_checkpoint(metric, options, progress)
        rows, protocol, notes = on_files(metric, options, progress)
        inputs = {name: str(path) for name, path in (("a", options.a), ("b", options.b)) if path is not None}
        return Evaluation(metric, rows, inputs, protocol, notes)
    return evaluate


# --- all: the task's default metrics ---

def _all(metric: str, options: EvaluateOptions, progress: ProgressFn) -> Evaluation:
    """task.evaluate of the checkpoint's task, given --weights, --seg-weights and --judge (EvaluatePaths); a
    recipe's evaluate.metrics keeps only those metrics' keys."""
    if options.ckpt is None:
        raise FalError("`fal evaluate all` needs --ckpt CKPT (a checkpoint or its run folder)")
    notes: list[str] = []
    ck = restore(metric, options, True, notes)
    paths = judges_for(ck, EvaluatePaths(weights=options.weights, seg_weights=options.seg_weights,
                                         judge=options.judge, allow_unofficial_weights=options.allow_unofficial_weights,
                                         note=notes.append, class_means=options.class_means))
    with _busy(progress, f"all {ck.path.name}, {ck.steps} steps"):
        rows = TASKS[ck.recipe.task].evaluate(ck.G, ck.D, ck.recipe, ck.device, ck.steps, ck.num_samples, paths)
    wanted = ck.recipe.evaluate.metrics
    if wanted:
        rows = _selected(rows, tuple(n for name in wanted for n in SELECT.get(name, (name,))))
        if not any(rows):
            raise FalError(f"evaluate.metrics {list(wanted)}: none is among the {ck.recipe.task} task's metrics; "
                           f"fix the recipe's evaluate.metrics (empty = all of them)")
    return ck.evaluation(metric, rows, notes)


METRICS: dict[str, MetricFn] = {
    "fid": _fid,                        # the FID engine reads folders, .npz and checkpoints itself
    "kid": _fid,
    "l1": _checkpoint_or_files(_translation_metric, files.image_pairs),
    "psnr": _checkpoint_or_files(_translation_metric, files.image_pairs),
    "ssim": _checkpoint_or_files(_translation_metric, files.image_pairs),
    "ssim-gaussian": _checkpoint_or_files(_translation_metric, files.image_pairs),
    "lpips": _checkpoint_or_files(_translation_metric, files.image_pairs),
    "fcn": _checkpoint_or_files(_translation_metric, files.fcn),
    "depth": _checkpoint_or_files(_translation_metric, files.depth),
    "voxel-accuracy": _checkpoint_or_files(_voxel_metric, files.voxel_accuracy),
    "toy": _checkpoint_or_files(_toy_metric, files.toy_points),
    "all": _all,                        # checkpoints only
}
