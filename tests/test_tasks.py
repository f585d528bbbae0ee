"""One contract over every entry of TASKS: build, one training step through the loop, sample, write/read the
samples, refine one step, evaluate. A new task is checked by adding it to TASKS and its tiny settings to TINY."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from falcli import resolve
from falcli.commands import train
from falcli.commands.evaluate.checkpoints import METRICS
from falcli.commands.refine import RefineOptions, refine
from falcli.commands.sample import SampleOptions, sample
from falcli.resolve import load_recipe
from falcli.core import checkpoint
from falcli.core.files import MANIFEST, list_files, read_points
from falcli.judges import provision
from falcli.tasks import TASKS
from falcli.tasks.base import Batch, EvaluatePaths

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
ONE_STEP = ["train.iterations=1", "train.log_every=1", "train.checkpoint_every=1", "train.sample_every=0",
            "train.batch_size=2", "feedback.steps=2", "feedback.encoder_channels=2", "feedback.hidden_channels=2"]
# task → (shipped recipe, overrides that make one iteration take well under a second)
TINY = {
    "toy": ("toy.yaml", ["model.hidden=8", "model.latent_dim=4", "model.depth=1", "data.points=64",
                         "evaluate.num_samples=64"]),
    "translation": ("streets.yaml", ["data.image_size=32", "data.load_size=36", "data.train_count=4",
                                     "data.val_count=4", "model.generator_channels=2", "model.depth=3",
                                     "model.discriminator_channels=2", "model.discriminator_layers=2",
                                     "train.lr_decay_start=null", "evaluate.num_samples=4"]),
    "voxel": ("primitives.yaml", ["data.resolution=16", "data.primitives_train=4", "data.primitives_val=12",
                                  "model.latent_dim=4", "model.base_channels=2", "evaluate.num_samples=8"]),
    "image": ("shapes.yaml", ["data.image_size=32", "data.shapes_train=8", "data.shapes_val=8", "model.latent_dim=4",
                              "model.g_channels=2", "model.d_channels=2", "evaluate.num_samples=8"]),
}
PROTOCOL = ("name", "DataConfig", "ModelConfig", "dims", "conditional", "supports_methods", "checkpoint_metrics",
            "samples_caption", "array_export", "validate", "make_dataset", "make_networks", "make_batch",
            "fixed_batch", "discriminator_input", "extra_generator_losses", "save_samples", "evaluate",
            "evaluation_pool", "sample_files", "condition_files", "judge_needs", "memory_probe")


def tiny_recipe(name: str):
    if name not in TINY:
        pytest.fail(f"task {name!r} has no tiny settings: add them to TINY in tests/test_tasks.py")
    shipped, overrides = TINY[name]
    recipe = load_recipe(ROOT / "recipes" / shipped, ONE_STEP + overrides)
    assert recipe.task == name
    return recipe


@pytest.fixture
def evaluate_paths(tmp_path, monkeypatch):
    """The judge paths `fal evaluate` would give: each of the task's judge_needs provided (tiny judges trained
    into the test's own cache, tests/conftest.py). Missing LPIPS/Inception weights become notes."""
    monkeypatch.chdir(tmp_path)

    def make(name: str, recipe, notes: list[str]) -> EvaluatePaths:
        return provision.fill(EvaluatePaths(note=notes.append), TASKS[name].judge_needs(recipe), CPU)
    return make


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_fulfils_the_protocol(name):
    task = TASKS[name]
    missing = [attribute for attribute in PROTOCOL if not hasattr(task, attribute)]
    assert not missing, f"task {name!r} lacks {missing} (falcli/tasks/base.py)"
    assert task.name == name
    assert isinstance(task.conditional, bool) and isinstance(task.supports_methods, frozenset)
    assert set(task.checkpoint_metrics) <= set(METRICS) - {"fid", "kid", "all"}
    assert task.samples_caption.strip()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_memory_probe_builds_what_make_networks_builds_and_g_reads_its_input_shape(name):
    """falcli/nn/budget.py estimates a recipe from memory_probe: it must be the networks that will be trained."""
    task, recipe = TASKS[name], tiny_recipe(name)
    G, D, shape = task.memory_probe(recipe)
    built = task.make_networks(recipe)
    for probed, real in zip((G, D), built):
        assert [p.shape for p in probed.parameters()] == [p.shape for p in real.parameters()]
    with torch.no_grad():
        assert G.eval()(torch.zeros(2, *shape), None).shape[0] == 2


@pytest.mark.parametrize("name", sorted(TASKS))
def test_build_train_sample_refine_evaluate(name, tmp_path, evaluate_paths):
    task, recipe = TASKS[name], tiny_recipe(name)

    # build: one training step through the one loop, a checkpoint that restores through the task
    task.validate(recipe)
    run_dir = train.run(recipe, train.RunOptions(out=tmp_path / "run", device="cpu"))
    restored, G, D, G_ema, payload = resolve.restore(run_dir, CPU)
    assert payload["iteration"] == 1 and restored == recipe
    G = G_ema if G_ema is not None else G

    # sample: files of the task's format, with what continues them
    manifest = sample(SampleOptions(checkpoint=run_dir, out=tmp_path / "samples", count=3, device="cpu",
                                    batch_size=2))
    assert (tmp_path / "samples" / MANIFEST).is_file() and len(manifest["items"]) == 3
    assert (manifest["inputs"] is not None) == task.conditional == (task.condition_files(recipe) is not None)

    # write/read: what is read back is written again unchanged (the format's rounding happens once)
    files = task.sample_files(recipe)
    if hasattr(files, "read"):
        found = list_files(tmp_path / "samples", files)
        first = files.read([found[n] for n in manifest["items"]])
        files.write(first, manifest["items"], tmp_path / "again")
        again = files.read([p for _, p in sorted(list_files(tmp_path / "again", files).items())])
        assert first.shape[0] == 3 and torch.equal(first, again)
    else:
        points = read_points(tmp_path / "samples" / "points.npy")
        assert points.shape == (3, 2) and np.isfinite(points).all()

    # refine one step: the sample is step 1, one pass of G reading D's map follows
    result = refine(RefineOptions(checkpoint=run_dir, input=tmp_path / "samples", out=tmp_path / "refined",
                                  steps=2, device="cpu"))
    assert (tmp_path / "refined" / "step-2").is_dir() and (tmp_path / "refined" / "refine.json").is_file()
    assert result["count"] == 3 and len(result["d_real_probability"]) == 2 and all(0 <= s <= 1 for s in result["d_real_probability"])

    # evaluate: one row of finite numbers per feedback step, given the judge/weights paths
    notes: list[str] = []
    rows = task.evaluate(G.eval(), D.eval(), recipe, CPU, 2, recipe.evaluate.num_samples, evaluate_paths(name, recipe, notes))
    assert len(rows) == 2 and all(rows), notes
    for row in rows:
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in row.values()), row
    # coverage next to quality, per step: in point space (toy) or the judge's feature space (image, voxel)
    suffix = {"toy": "", "image": "_judge", "voxel": "_judge"}.get(name)
    if suffix is not None:
        for row in rows:
            for key in ("precision", "recall", "density", "coverage"):
                assert key + suffix in row and row[key + suffix] >= 0, (key + suffix, notes)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_generator_inputs_are_drawn_as_the_task_says(name):
    """Unconditional tasks feed G a latent; conditional ones a condition that D also sees."""
    task, recipe = TASKS[name], tiny_recipe(name)
    batch = task.fixed_batch(recipe, CPU, 2)
    assert isinstance(batch, Batch) and len(batch.gen_input) == 2
    assert (batch.condition is not None) == task.conditional
    if not task.conditional:
        assert batch.gen_input.dim() == 2
