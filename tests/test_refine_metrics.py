"""refine.json carries the task's own metrics of every refined step (quality and coverage, as `fal evaluate`
gives them) on every task, says in one line when a judge they need is missing, and the grid is labelled."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from falcli.commands.refine import RefineOptions, refine
from falcli.commands.refine.metrics import Replay, task_metrics
from falcli.commands.sample import open_checkpoint
from falcli.resolve import load_recipe, recipe_from_dict
from falcli.judges import provision
from falcli.tasks import TASKS
from falcli.tasks.base import EvaluatePaths

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY = {
    "toy": ("toy", ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
                    "train.batch_size=64", "train.iterations=12", "evaluate.num_samples=64"]),
    "image": ("shapes", ["data.image_size=32", "data.shapes_train=16", "data.shapes_val=12", "model.latent_dim=8",
                         "model.g_channels=4", "model.d_channels=4", "feedback.encoder_channels=4",
                         "feedback.hidden_channels=4", "train.batch_size=2", "train.iterations=2",
                         "evaluate.num_samples=10"]),
    "voxel": ("primitives", ["data.resolution=16", "data.primitives_train=8", "data.primitives_val=8",
                             "model.latent_dim=8", "model.base_channels=2", "feedback.encoder_channels=2",
                             "feedback.hidden_channels=2", "train.batch_size=2", "train.iterations=2",
                             "evaluate.num_samples=8"]),
    "translation": ("streets", ["data.image_size=32", "data.load_size=36", "data.train_count=8",
                                "data.val_count=4", "model.generator_channels=4", "model.depth=3",
                                "model.discriminator_channels=4", "model.discriminator_layers=2",
                                "feedback.encoder_channels=4", "feedback.hidden_channels=4",
                                "train.batch_size=2", "train.iterations=2", "train.lr_decay_start=null"]),
}
@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_runs, tiny_judge_recipes):
    """A judge cache holding tiny judges (shapes at 32², primitives at 16³, trained through provision as `fal
    evaluate` would), and tiny checkpoints of every task."""
    cache = tmp_path_factory.mktemp("refine-metrics-cache")
    checkpoints = {task: sorted((tiny_runs(task, *TINY[task]) / "checkpoints").glob("iter-*.pt"))[-1]
                   for task in TINY}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAL_CACHE", str(cache))
        patch.setattr(provision, "RECIPES", tiny_judge_recipes)
        for task in ("image", "voxel"):
            recipe = open_checkpoint(checkpoints[task], CPU)[0]
            provision.fill(EvaluatePaths(), TASKS[task].judge_needs(recipe), CPU)
    return cache, checkpoints


def refined(workdir, monkeypatch, tmp_path, task, **options):
    cache, checkpoints = workdir
    monkeypatch.setenv("FAL_CACHE", str(cache))  # the judges trained above
    notes = []
    result = refine(RefineOptions(checkpoints[task], out=tmp_path / "r", **options), warn=lambda m: None,
                    say=notes.append)
    assert json.loads((tmp_path / "r" / "refine.json").read_text()) == result
    return result, notes


@pytest.mark.parametrize("task, method, keys", [
    ("image", "fal", {"fid_judge", "precision_judge", "recall_judge", "density_judge", "coverage_judge"}),
    ("image", "gradient", {"fid_judge", "recall_judge", "coverage_judge"}),
    ("voxel", "fal", {"accuracy", "coverage", "mmd_iou", "precision_judge", "recall_judge", "coverage_judge"}),
    ("translation", "fal", {"l1", "psnr", "ssim"}),
    ("translation", "dot-sample", {"l1", "psnr", "ssim"}),
    ("toy", "dot-latent", {"modes_covered", "high_quality", "sliced_wasserstein", "precision", "recall",
                           "density", "coverage"}),
])
def test_refine_json_has_the_tasks_metrics_at_every_step(workdir, monkeypatch, tmp_path, task, method, keys):
    steps = 3 if method == "fal" else 2
    result, notes = refined(workdir, monkeypatch, tmp_path, task, steps=steps, method=method)
    assert result["task_metrics"] and len(result["metrics"]) == steps
    for row in result["metrics"]:
        assert keys <= set(row), (keys - set(row), notes)
        assert all(np.isfinite(row[k]) for k in keys)
        assert 0 < row["d_real_probability"] < 1
    first, last = result["metrics"][0], result["metrics"][-1]
    assert any(first[k] != last[k] for k in keys)  # each step is scored on its own samples


def test_task_metrics_are_the_evaluation_of_the_checkpoint_for_its_own_samples(workdir, monkeypatch, tmp_path):
    """Replaying the loop's own samples through Task.evaluate gives what evaluating the checkpoint gives."""
    cache, checkpoints = workdir
    monkeypatch.setenv("FAL_CACHE", str(cache))
    recipe, G, D, _ = open_checkpoint(checkpoints["toy"], CPU)
    task = TASKS["toy"]
    direct = task.evaluate(G, D, recipe, CPU, 3, 64)
    from falcli.core.feedback import unroll

    batch = task.fixed_batch(recipe, CPU, 64)
    with torch.no_grad():
        samples = unroll(G, D, batch.gen_input, None, 3, recipe.feedback, lambda x: x).samples
    replayed = task_metrics(task, recipe, D, samples, None, CPU, note=pytest.fail)
    for a, b in zip(direct, replayed):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_a_missing_judge_is_one_line_and_nothing_is_trained(workdir, monkeypatch, tmp_path):
    cache, checkpoints = workdir  # not used: this test keeps conftest's empty cache
    notes = []
    result = refine(RefineOptions(checkpoints["voxel"], out=tmp_path / "r", steps=2), warn=lambda m: None,
                    say=notes.append)
    assert not result["task_metrics"] and set(result["metrics"][0]) == {"d_real_probability", "d_logit"}
    skipped = [line for line in notes if line.startswith("task metrics skipped")]
    missing = [line for line in notes if line.startswith("judge missing")]
    assert len(missing) == 1 and "voxel-classifier judge" in missing[0] and "fal evaluate all" in missing[0]
    assert len(skipped) == 1 and "voxel classifier" in skipped[0] and result["notes"] == missing + skipped
    assert not (provision.cache_root() / "judges").exists()  # no judge was trained silently


def test_outputs_of_other_inputs_are_not_scored_against_the_evaluations_targets():
    replay = Replay([torch.zeros(2, 3, 4, 4)], conditions=torch.ones(2, 3, 4, 4))
    with pytest.raises(Exception, match="not the validation inputs"):
        replay(torch.zeros(2, 3, 4, 4))


def test_the_grid_is_labelled_with_steps_method_and_ds_colour_key(workdir, monkeypatch, tmp_path):
    result, _ = refined(workdir, monkeypatch, tmp_path, "image", steps=3)
    grid = np.asarray(Image.open(tmp_path / "r" / "grid.png").convert("RGB"))
    from falcli.commands.refine.writing import TITLE_HEIGHT

    title, labels, key = grid[:TITLE_HEIGHT], grid[TITLE_HEIGHT:TITLE_HEIGHT + 14], grid[-26:]
    assert (title < 128).any() and (labels < 128).any()  # text in the title and label bands
    reds = (key[..., 0] > 150) & (key[..., 2] < 100)
    blues = (key[..., 2] > 150) & (key[..., 0] < 100)
    assert reds.any() and blues.any()  # the colour scale from fake (red) to real (blue)
    assert result["figure"] == "grid.png"
