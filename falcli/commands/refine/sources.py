"""What `fal refine` refines: a `fal sample` folder, translation outputs with their inputs, plain sample files,
or fresh draws from the checkpoint; and the inversion that finds latents for samples without them."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from falcli.commands.refine.common import BATCH_SIZE, INVERT_LR, INVERT_STREAM, RefineOptions, Source
from falcli.commands.sample import ProgressFn, WarnFn, latent_width, latents_for
from falcli.core import checkpoint
from falcli.core.files import INPUTS, LATENTS, MANIFEST, POINTS, Files, PointFiles, item_names, list_files, \
    match_names, read_latents, read_manifest, read_points
from falcli.errors import FalError
from falcli.methods import refinement
from falcli.tasks import TASKS
from falcli.tasks.base import Batch

def run_folder(ckpt: Path) -> Path:
    """The run a checkpoint belongs to: the folder given, or RUN for RUN/checkpoints/iter-*.pt."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        return ckpt
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def plan(options: RefineOptions, recipe, warn: WarnFn, chosen: refinement.Method | None = None,
         say: WarnFn | None = None, G: nn.Module | None = None, device: torch.device | None = None) -> Source:
    """Read --input (and --inputs): a `fal sample` folder, translation outputs + inputs, or plain samples.
    Without --input: the run's own `fal sample` folder of this checkpoint, else fresh draws from G."""
    chosen = chosen or refinement.METHODS["fal"]
    files = TASKS[recipe.task].sample_files(recipe)
    conditional = TASKS[recipe.task].conditional
    if options.inputs is not None and not conditional:
        raise FalError(f"--inputs is for translation checkpoints; {options.checkpoint} is of task {recipe.task!r}")
    if options.invert_iterations is not None and conditional:
        hint = "drop it" if options.inputs is not None else "pass --inputs DIR for outputs of another model"
        raise FalError(f"--invert-iterations: translation outputs are refined from their inputs; there is no "
                       f"latent to invert ({hint})")
    if options.input is None:
        if options.inputs is not None:
            raise FalError("--inputs pairs with --input (the outputs they belong to); pass both")
        found = run_samples(run_folder(options.checkpoint), checkpoint.resolve(options.checkpoint), recipe.task)
        if found is not None:
            (say or warn)(f"refining the samples this checkpoint wrote to {found} (fal-samples.json)")
            options = replace(options, input=found)
        else:
            source = fresh_source(options, recipe, files, G, device)
            (say or warn)(f"no `fal sample` folder of this checkpoint in {run_folder(options.checkpoint)}; "
                          f"refining {len(source.names)} fresh samples drawn from it (--seed {options.seed})")
            if options.batch_size is not None:
                source.batch_size = options.batch_size
            return source
    path = Path(options.input)
    if not path.exists():
        raise FalError(f"--input {path}: no such file or folder")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None:
        source = _from_manifest(path, manifest, options, recipe, files, warn)
    elif conditional:
        source = _from_translation_files(path, options, recipe, files)
    else:
        source = _from_plain_samples(path, options, recipe, files, needs_latent=chosen.space in ("loop", "latent"))
    source.path = path
    if manifest is not None:
        source.looped_steps = manifest.get("steps")
        source.latents_step = manifest.get("latents_step") or 1  # folders from before the key: step 1's
    if options.batch_size is not None:
        source.batch_size = options.batch_size
    return source


def run_samples(run: Path, ckpt_file: Path, task: str) -> Path | None:
    """The newest folder directly inside the run that `fal sample` wrote from this very checkpoint."""
    if not run.is_dir():
        return None
    found = []
    for folder in run.iterdir():
        manifest_path = folder / MANIFEST
        if not folder.is_dir() or not manifest_path.is_file():
            continue
        try:
            manifest = read_manifest(folder)
        except FalError:
            continue  # not ours to judge here: --input names it if the user wants it
        made_by = manifest.get("checkpoint")
        if manifest.get("task") == task and made_by and Path(made_by).resolve() == ckpt_file.resolve():
            found.append((manifest_path.stat().st_mtime, folder))
    return max(found)[1] if found else None


def fresh_source(options: RefineOptions, recipe, files: Files, G: nn.Module, device: torch.device) -> Source:
    """Samples drawn from the checkpoint now: G's first pass from latents of --seed (as `fal sample --steps 1`),
    or for translation G's output for the first --count validation inputs."""
    count = options.count if options.count is not None else recipe.evaluate.num_samples
    if not TASKS[recipe.task].conditional:
        latents = latents_for(recipe, count, options.seed)

        @torch.no_grad()
        def load(rows: list[int]) -> torch.Tensor:
            return G(latents[rows].to(device), None).cpu()

        return Source(item_names(count), files, load, latents=latents, kind="fresh draws")
    task = TASKS[recipe.task]
    dataset = task.make_dataset(recipe, "val")
    if count > len(dataset):
        count = len(dataset)  # the whole split: said in the line that names the source
    cache: dict[tuple[int, ...], Batch] = {}

    def batch_of(rows: list[int]) -> Batch:
        key = tuple(rows)
        if key not in cache:
            cache.clear()
            raw = {k: v.to(device) for k, v in dataset.__getitems__(rows).items()}
            cache[key] = task.make_batch(raw, recipe, training=False)
        return cache[key]

    @torch.no_grad()
    def load(rows: list[int]) -> torch.Tensor:
        return G(batch_of(rows).gen_input, None).cpu()

    return Source(item_names(count), files, load, lambda rows: batch_of(rows).condition.cpu(),
                  kind="fresh draws")


def _from_manifest(path: Path, manifest: dict, options: RefineOptions, recipe, files: Files,
                   warn: WarnFn) -> Source:
    task, names = manifest.get("task"), list(manifest.get("items") or [])
    if task != recipe.task:
        raise FalError(f"--input {path}: samples of task {task!r}, but --ckpt {options.checkpoint} is a "
                       f"checkpoint of task {recipe.task!r}; use the checkpoint that made them "
                       f"({manifest.get('checkpoint')})")
    if not names:
        raise FalError(f"--input {path}: its fal-samples.json lists no samples")
    made_by = manifest.get("checkpoint")
    if made_by and Path(made_by).resolve() != checkpoint.resolve(options.checkpoint).resolve():
        warn(f"these samples were made by {made_by}; continuing them with {options.checkpoint}")
    if options.inputs is not None:
        raise FalError(f"--inputs: {path} was written by `fal sample` and carries its inputs in {INPUTS}/; "
                       f"drop --inputs")
    if options.invert_iterations is not None:
        warn(f"--invert-iterations ignored: {path} carries the samples' latents ({LATENTS})")
    batch_size = int(manifest.get("batch_size") or BATCH_SIZE)
    if isinstance(files, PointFiles):
        points = torch.from_numpy(read_points(path / POINTS))
        if len(points) != len(names):
            raise FalError(f"{path / POINTS}: {len(points)} points, but fal-samples.json lists {len(names)}")
        return Source(names, files, lambda rows: points[rows], latents=read_latents(path, len(names),
                      latent_width(recipe)), batch_size=batch_size, kind="fal samples")
    if manifest.get("voxels"):  # `fal sample --voxels npy`: every grid in one array
        grids = torch.from_numpy(np.load(path / manifest["voxels"], allow_pickle=False).astype(np.float32))
        if grids.shape[0] != len(names):
            raise FalError(f"{path / manifest['voxels']}: {grids.shape[0]} grids, but fal-samples.json lists "
                           f"{len(names)}")
        return Source(names, files, lambda rows: grids[rows][:, None], latents=read_latents(
            path, len(names), latent_width(recipe)), batch_size=batch_size, kind="fal samples")
    found = list_files(path, files)
    missing = [n for n in names if n not in found]
    if missing:
        raise FalError(f"--input {path}: {len(missing)} samples listed in fal-samples.json are missing "
                       f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); write them again with "
                       f"`fal sample`")
    load = _loader(files, [found[n] for n in names])
    conditions = _condition_files(recipe)
    if conditions is not None:
        inputs = list_files(path / INPUTS, conditions, "inputs of")
        match_names({n: found[n] for n in names}, inputs, path, path / INPUTS)
        return Source(names, files, load, _loader(conditions, [inputs[n] for n in names]),
                      batch_size=batch_size, kind="fal samples")
    return Source(names, files, load, latents=read_latents(path, len(names), latent_width(recipe)),
                  batch_size=batch_size, kind="fal samples")


def _from_translation_files(path: Path, options: RefineOptions, recipe, files: Files) -> Source:
    if options.inputs is None:
        raise FalError(f"--input {path}: translation outputs without their inputs; pass --inputs DIR with the "
                       f"input images, matched to the outputs by file name")
    outputs = list_files(path, files, task=recipe.task)
    conditions = _condition_files(recipe)
    inputs = list_files(options.inputs, conditions, "--inputs")
    match_names(outputs, inputs, path, Path(options.inputs))
    names = sorted(outputs)
    return Source(names, files, _loader(files, [outputs[n] for n in names]),
                  _loader(conditions, [inputs[n] for n in names]), kind="translation outputs")


def _from_plain_samples(path: Path, options: RefineOptions, recipe, files: Files,
                        needs_latent: bool = True) -> Source:
    if isinstance(files, PointFiles):
        points = torch.from_numpy(read_points(path))
        source = Source(item_names(len(points)), files, lambda rows: points[rows], kind="points")
    else:
        if not path.is_dir():
            raise FalError(f"--input {path}: expected a folder of {files.what} ({', '.join(files.suffixes)})")
        found = list_files(path, files, task=recipe.task)
        names = sorted(found)
        source = Source(names, files, _loader(files, [found[n] for n in names]), kind="files")
    if not needs_latent:  # sample-space methods move the samples themselves
        return source
    if options.invert_iterations is None:
        raise FalError(f"--input {path}: samples without latent codes (no fal-samples.json); pass "
                       f"--invert-iterations K (e.g. 300) to find them by inversion first")
    source.invert = True
    return source


def _condition_files(recipe) -> Files | None:
    return TASKS[recipe.task].condition_files(recipe)


def _loader(files: Files, paths: list[Path]) -> Callable[[list[int]], torch.Tensor]:
    return lambda rows: files.read([paths[i] for i in rows])


# --- inversion ---

def invert(G: nn.Module, x: torch.Tensor, start: torch.Tensor, iterations: int, free: int | None = None,
           step: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """G's inputs whose first pass reproduces x: Adam on z minimising mean (G(z) − x)² (G's weights untouched).

    Only the first `free` numbers of each input are optimised (None = all); the rest (EqGAN-SA's heatmap code,
    whose values have a valid range) stay as drawn. Returns (inputs, error before, error after), the errors per
    sample: mean squared error over pixels / voxels / coordinates.
    """
    free = start.shape[1] if free is None else free
    z, fixed = start[:, :free].detach().clone().requires_grad_(True), start[:, free:].detach()
    optimizer = torch.optim.Adam([z], lr=INVERT_LR)
    before = _errors(G, torch.cat([z, fixed], dim=1), x)
    for _ in range(iterations):
        with torch.enable_grad():
            loss = (G(torch.cat([z, fixed], dim=1), None) - x).square().mean()
            grad, = torch.autograd.grad(loss, [z])  # only z's gradient: G's parameters keep no .grad
        z.grad = grad
        optimizer.step()
        if step:
            step()
    found = torch.cat([z.detach(), fixed], dim=1)
    return found, before, _errors(G, found, x)


@torch.no_grad()
def _errors(G: nn.Module, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (G(z, None) - x).square().flatten(1).mean(1)


def invert_all(G: nn.Module, source: Source, batches: list[list[int]], recipe, options: RefineOptions,
               device: torch.device, on_progress: ProgressFn | None) -> tuple[torch.Tensor, dict]:
    """Invert every batch, starting from random latents (--seed). Returns the latents (N, Z) and a summary."""
    iterations = options.invert_iterations
    start = latents_for(recipe, len(source.names), options.seed + INVERT_STREAM)
    found, before, after = torch.empty_like(start), [], []
    total, done = len(batches) * iterations, 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress("invert", done, total)

    for rows in batches:
        z, error_before, error_after = invert(G, source.load(rows).to(device), start[rows].to(device),
                                              iterations, recipe.model.latent_dim, step)
        found[rows] = z.cpu()
        before.append(error_before.cpu()), after.append(error_after.cpu())
    before, after = torch.cat(before), torch.cat(after)
    return found, {"iterations": iterations, "lr": INVERT_LR, "seed": options.seed, "metric": "mse",
                   "error_start": float(before.mean()), "error": float(after.mean()),
                   "error_max": float(after.max())}


