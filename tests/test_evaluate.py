"""`fal evaluate METRIC`: files and checkpoints, values equal to a direct computation, one row per step, JSON
next to the run (never replacing a file), and one-line errors for bad input."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.cli import app
from falcli.resolve import load_recipe, recipe_from_dict
from falcli.errors import FalError
from falcli.commands.evaluate.checkpoints import EvaluateOptions, metric_table, run
from falcli.commands.evaluate.fid import fid_command
from falcli.formats.binvox import write_binvox, z_up_to_y_up
from falcli.judges import JUDGES
from falcli.judges import provision
from falcli.judges.base import fit, load, predict
from falcli.judges.run import run_judge
from falcli.judges.voxel_classifier import to_judge_resolution
from falcli.metrics import image as image_metrics
from falcli.metrics import lpips as lpips_metric
from falcli.metrics.depth import DEPTH_KEYS, depth_errors
from falcli.metrics.segmentation import CITYSCAPES_COLORS, confusion, segmentation_scores
from falcli.metrics.toy import toy_metrics
from falcli.tasks import TASKS
from falcli.tasks.toy import DataConfig as ToyData, mixture_centers, sample_mixture
from falcli.tasks.translation import evaluate as translation_eval
from falcli.tasks.voxel import evaluate_voxel

from conftest import TINY_TOY

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY_TRANSLATION = [
    "data.image_size=32", "data.load_size=36", "data.train_count=8", "data.val_count=4",
    "model.generator_channels=4", "model.depth=3", "model.discriminator_channels=4",
    "model.discriminator_layers=2", "feedback.encoder_channels=4", "feedback.hidden_channels=4",
    "train.batch_size=2", "train.iterations=2", "train.log_every=2", "train.checkpoint_every=2",
    "train.sample_every=0", "train.lr_decay_start=null", "evaluate.num_samples=4",
]
TINY_VOXEL = [
    "data.resolution=16", "data.primitives_train=8", "data.primitives_val=4", "model.latent_dim=8",
    "model.base_channels=2", "feedback.encoder_channels=2", "feedback.hidden_channels=2", "train.batch_size=2",
    "train.iterations=2", "train.log_every=1", "train.sample_every=0", "train.checkpoint_every=2",
    "evaluate.num_samples=6",
]
TINY_IMAGE = [
    "data.image_size=32", "data.shapes_train=8", "data.shapes_val=8", "model.latent_dim=8", "model.g_channels=4",
    "model.d_channels=4", "feedback.encoder_channels=4", "feedback.hidden_channels=4", "train.batch_size=2",
    "train.iterations=2", "train.log_every=1", "train.checkpoint_every=2", "train.sample_every=0",
]
runner = CliRunner()


def _train(root: Path, name: str, recipe_file: str, overrides: list[str]) -> Path:
    recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides)
    return train.run(recipe, train.RunOptions(out=root / name, device="cpu"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny runs of every task and tiny judges, trained once for the module."""
    root = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    runs = {
        "toy": _train(root, "toy", "toy.yaml", TINY_TOY),
        "photo": _train(root, "photo", "streets.yaml", TINY_TRANSLATION),
        "depth": _train(root, "depth", "streets.yaml", TINY_TRANSLATION + ["data.direction=photo_to_depth"]),
        "voxel": _train(root, "voxel", "primitives.yaml", TINY_VOXEL),
        "image": _train(root, "image", "shapes.yaml", TINY_IMAGE),
    }
    segmenter = fit(JUDGES["segmenter"], load_recipe(ROOT / "recipes" / "streets_segmenter.yaml", [
        "data.image_size=32", "data.train_count=8", "data.val_count=4", "model.channels=4", "model.depth=2",
        "train.iterations=2", "train.batch_size=4", "train.log_every=1"]), root / "segmenter", CPU)
    voxel_judge = fit(JUDGES["voxel-classifier"], recipe_from_dict({
        "task": "voxel-classifier", "name": "judge", "data": {"resolution": 16, "primitives_train": 8,
                                                             "primitives_val": 4},
        "model": {"channels": 2, "depth": 2, "features": 4}, "train": {"iterations": 2, "batch_size": 4,
                                                                        "log_every": 1}}), root / "vjudge", CPU)
    shapes_judge = run_judge(load_recipe(ROOT / "recipes" / "shapes_classifier.yaml", [
        "data.shapes_train=32", "data.shapes_val=8", "model.channels=4", "model.depth=1", "model.features=4",
        "train.iterations=3", "train.batch_size=4", "train.log_every=1"]), root / "sjudge", "cpu")
    return {"root": root, "runs": runs, "segmenter": segmenter, "voxel_judge": voxel_judge,
            "shapes_judge": shapes_judge}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # JSON files land here; default judges come from the per-test cache (conftest)


@pytest.fixture
def fresh(world, tmp_path):
    """A copy of one of the world's runs, so JSON files written by a test stay its own."""
    def copy(name: str) -> Path:
        return Path(shutil.copytree(world["runs"][name], tmp_path / f"copy-{name}"))
    return copy


def _newest(run_dir: Path) -> Path:
    return checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]


def _restored(run_dir: Path):
    recipe, G, D, G_ema, _ = resolve.restore(_newest(run_dir), CPU)
    return recipe, (G_ema if G_ema is not None else G), D


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _pngs(folder: Path, images, names, suffix=".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names):
        Image.fromarray(image).save(folder / f"{name}{suffix}")
    return folder


def _rng_images(seed: int, n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --- checkpoints: one row per step, JSON next to the run ---

def test_toy_checkpoint_gives_the_tasks_rows_per_step_and_json_in_the_run_folder(fresh):
    run_dir = fresh("toy")
    evaluation = run("toy", EvaluateOptions(ckpt=run_dir, device="cpu"))
    recipe, G, D = _restored(run_dir)
    direct = TASKS["toy"].evaluate(G, D, recipe, CPU, 3, recipe.evaluate.num_samples)
    assert evaluation.rows == [{"step": t, **row} for t, row in enumerate(direct, start=1)]
    assert evaluation.written == run_dir / "evaluate-toy.json"
    stored = json.loads(evaluation.written.read_text())
    assert stored["rows"] == evaluation.rows and stored["checkpoint"]["iteration"] == 12
    assert stored["checkpoint"]["steps"] == stored["checkpoint"]["trained_steps"] == 3
    before = evaluation.written.read_bytes()
    again = run("toy", EvaluateOptions(ckpt=_newest(run_dir), device="cpu"))
    assert again.written == run_dir / "evaluate-toy-2.json"  # a new name, the first file untouched
    assert (run_dir / "evaluate-toy.json").read_bytes() == before


def test_steps_beyond_training_warn_and_steps_zero_is_refused_before_anything_is_written(fresh):
    run_dir = fresh("toy")
    evaluation = run("all", EvaluateOptions(ckpt=run_dir, device="cpu", steps=5, num_samples=64))
    assert [row["step"] for row in evaluation.rows] == [1, 2, 3, 4, 5]
    assert any("trained with 3 feedback step(s); steps 4..5" in note for note in evaluation.notes)
    assert json.loads(evaluation.written.read_text())["checkpoint"]["num_samples"] == 64
    evaluation.written.unlink()
    with pytest.raises(FalError, match="--steps must be >= 1"):
        run("toy", EvaluateOptions(ckpt=run_dir, device="cpu", steps=0))
    with pytest.raises(FalError, match="--steps and --num-samples apply to a checkpoint"):
        run("ssim", EvaluateOptions(a=run_dir, b=run_dir, steps=2))
    assert not list(run_dir.glob("evaluate-*.json"))


def test_all_keeps_only_the_recipes_evaluate_metrics(tmp_path):
    run_dir = _train(tmp_path, "picky", "toy.yaml", TINY_TOY + ["evaluate.metrics=[high_quality, d_logit]"])
    evaluation = run("all", EvaluateOptions(ckpt=run_dir, device="cpu"))
    assert [set(row) for row in evaluation.rows] == [{"step", "high_quality", "d_logit"}] * 3


@pytest.mark.parametrize("metric, name", [("ssim", "toy"), ("voxel-accuracy", "toy"), ("toy", "photo"),
                                          ("depth", "voxel")])
def test_a_checkpoint_of_another_task_is_refused_naming_its_task(world, metric, name):
    task = {"toy": "toy", "photo": "translation", "voxel": "voxel"}[name]
    with pytest.raises(FalError, match=f"a checkpoint of task '{task}', but `fal evaluate {metric}` scores"):
        run(metric, EvaluateOptions(ckpt=world["runs"][name], device="cpu"))


def test_translation_checkpoint_metrics_equal_the_tasks_evaluation(world, monkeypatch):
    run_dir = world["runs"]["photo"]
    recipe, G, D = _restored(run_dir)
    steps = recipe.feedback.sampling_steps  # what `fal evaluate` runs by default
    direct = translation_eval.evaluate_translation(G, D, recipe, CPU, steps, 4, seg_weights=world["segmenter"],
                                                   note=lambda _: None)
    for metric in ("l1", "psnr", "ssim"):
        evaluation = run(metric, EvaluateOptions(ckpt=run_dir, device="cpu", json_path=Path(f"{metric}.json")))
        assert evaluation.rows == [{"step": t, metric: row[metric]} for t, row in enumerate(direct, start=1)]
    fcn = run("fcn", EvaluateOptions(ckpt=run_dir, device="cpu", seg_weights=world["segmenter"],
                                     json_path=Path("fcn.json")))
    keys = {k for k in direct[0] if k.startswith(("fcn/", "fcn_real/"))}
    assert len(keys) == 6 and fcn.rows == [{"step": t, **{k: row[k] for k in keys}}
                                           for t, row in enumerate(direct, start=1)]
    monkeypatch.setattr(translation_eval, "load_lpips", functools.partial(lpips_metric.load_lpips, random_trunk=True))
    lpips = run("lpips", EvaluateOptions(ckpt=run_dir, device="cpu", steps=2, json_path=Path("lpips.json")))
    assert [set(row) for row in lpips.rows] == [{"step", "lpips"}] * 2


def test_translation_checkpoint_errors_say_what_is_missing(world, monkeypatch, tmp_path):
    photo, depth = world["runs"]["photo"], world["runs"]["depth"]
    monkeypatch.setattr(provision, "RECIPES", tmp_path)  # an install without the judge recipes
    with pytest.raises(FalError, match="no judge recipe .*streets_segmenter.yaml .*--seg-weights"):
        run("fcn", EvaluateOptions(ckpt=photo, device="cpu"))
    with pytest.raises(FalError, match="direction 'labels_to_photo' makes no depth maps"):
        run("depth", EvaluateOptions(ckpt=photo, device="cpu"))
    with pytest.raises(FalError, match="direction 'photo_to_depth' makes no photos from label maps"):
        run("fcn", EvaluateOptions(ckpt=depth, device="cpu"))

    def missing(**_):
        raise FalError("weights alexnet-owt-7be5be79.pth not found and fal never downloads")
    monkeypatch.setattr(translation_eval, "load_lpips", missing)
    with pytest.raises(FalError, match="LPIPS unavailable: weights alexnet-owt"):
        run("lpips", EvaluateOptions(ckpt=photo, device="cpu"))
    assert not list(photo.glob("evaluate-*.json"))


def test_depth_checkpoint_equals_the_tasks_depth_errors(world):
    run_dir = world["runs"]["depth"]
    recipe, G, D = _restored(run_dir)
    direct = translation_eval.evaluate_translation(G, D, recipe, CPU, 2, 4, note=lambda _: None)
    evaluation = run("depth", EvaluateOptions(ckpt=run_dir, device="cpu", steps=2, json_path=Path("d.json")))
    assert evaluation.rows == [{"step": t, **{f"depth/{k}": row[f"depth/{k}"] for k in DEPTH_KEYS}}
                               for t, row in enumerate(direct, start=1)]


def test_voxel_checkpoint_accuracy_equals_evaluate_voxel(world):
    run_dir = world["runs"]["voxel"]
    recipe, G, D = _restored(run_dir)
    direct = evaluate_voxel(G, D, recipe, CPU, 3, 6, judge_path=world["voxel_judge"])
    evaluation = run("voxel-accuracy", EvaluateOptions(ckpt=run_dir, device="cpu", judge=world["voxel_judge"],
                                                       json_path=Path("v.json")))
    assert [row["step"] for row in evaluation.rows] == [1, 2, 3]
    for ours, theirs in zip(evaluation.rows, direct):
        assert ours["accuracy"] == theirs["accuracy"] and ours["real_accuracy"] == theirs["real_accuracy"]
        assert {k for k in ours if k.startswith("predicted/")} == {k for k in theirs if k.startswith("predicted/")}
        assert "coverage" not in ours
    with pytest.raises(FalError, match="--class: a checkpoint is scored on the classes it was trained on"):
        run("voxel-accuracy", EvaluateOptions(ckpt=run_dir, device="cpu", class_name="car"))


# --- folders of images ---

@pytest.fixture
def image_pairs(tmp_path):
    names = ["b", "a", "c"]
    outputs = _pngs(tmp_path / "outputs", _rng_images(0, 3), names)
    targets = _pngs(tmp_path / "targets", _rng_images(1, 3), names, suffix=".bmp")  # matched by name, not suffix
    return outputs, targets


def _network(folder: Path, suffix: str) -> torch.Tensor:
    images = [np.asarray(Image.open(folder / f"{n}{suffix}").convert("RGB")) for n in ("a", "b", "c")]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def test_image_folders_are_matched_by_name_and_equal_the_metric_functions(image_pairs, monkeypatch, tmp_path):
    outputs, targets = image_pairs
    x, y = _network(outputs, ".png"), _network(targets, ".bmp")
    expected = {"l1": image_metrics.l1(x, y), "psnr": image_metrics.psnr(x, y, data_range=2.0),
                "ssim": image_metrics.ssim(image_metrics.to_pixels(x), image_metrics.to_pixels(y))}
    for metric, value in expected.items():
        evaluation = run(metric, EvaluateOptions(a=outputs, b=targets, device="cpu"))
        assert evaluation.rows == [{"step": None, metric: pytest.approx(value, rel=1e-12)}]
        assert evaluation.written is None  # files alone are printed, not written, unless --json
    monkeypatch.setattr(lpips_metric, "load_lpips", functools.partial(lpips_metric.load_lpips, random_trunk=True))
    torch.manual_seed(3)
    evaluation = run("lpips", EvaluateOptions(a=outputs, b=targets, device="cpu"))
    torch.manual_seed(3)
    distance, _ = lpips_metric.load_lpips(random_trunk=True)
    assert evaluation.rows[0]["lpips"] == pytest.approx(float(distance(x, y).mean()), rel=1e-5)
    assert evaluation.protocol["lpips"]["official"] is False
    small = [_pngs(tmp_path / f"small{i}", _rng_images(i, 1, size=16), ["a"]) for i in (0, 1)]
    with pytest.raises(FalError, match="LPIPS needs images of at least 32×32 pixels, got 16×16"):
        run("lpips", EvaluateOptions(a=small[0], b=small[1], device="cpu"))


def test_image_folder_errors_are_one_line(image_pairs, tmp_path):
    outputs, targets = image_pairs
    (tmp_path / "empty").mkdir()
    other = _pngs(tmp_path / "other", _rng_images(2, 3), ["a", "b", "d"])
    small = _pngs(tmp_path / "small", _rng_images(2, 3, size=16), ["a", "b", "c"])
    cases = [
        (outputs, other, r"do not match by file name: 1 only in .*outputs \(e\.g\. c\.png\), 1 only in .*other "
                         r"\(e\.g\. d\.png\)"),
        (tmp_path / "empty", targets, "empty: no images in this folder"),
        (outputs, tmp_path / "missing", "missing: no such folder"),
        (outputs, small, r"a\.png is 32×32 but .*small/a\.png is 16×16"),
        (outputs, None, "needs two folders, outputs and targets"),
    ]
    for a, b, message in cases:
        with pytest.raises(FalError, match=message):
            run("ssim", EvaluateOptions(a=a, b=b, device="cpu"))


def test_an_existing_json_is_never_overwritten(image_pairs, tmp_path):
    outputs, targets = image_pairs
    existing = tmp_path / "result.json"
    existing.write_text("keep me")
    result = _cli("evaluate", "l1", outputs, targets, "--json", existing)
    assert result.exit_code == 2 and "already exists" in result.output
    assert existing.read_text() == "keep me"
    result = _cli("evaluate", "l1", outputs, targets, "--json", tmp_path / "new.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "new.json").read_text())["rows"][0]["l1"] > 0


# --- fcn, depth, voxel-accuracy and toy on files ---

def test_fcn_on_folders_equals_the_segmenter_confusion(world, tmp_path):
    rng = np.random.default_rng(4)
    photos = _pngs(tmp_path / "photos", _rng_images(5, 3), ["p0", "p1", "p2"])
    ids = rng.integers(0, 19, (3, 32, 32)).astype(np.uint8)
    ids[0, :4] = 255
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(ids[0]).save(labels / "p0.png")
    Image.fromarray(ids[1]).save(labels / "p1.png")
    Image.fromarray(CITYSCAPES_COLORS[ids[2]]).save(labels / "p2.png")  # a colour map is decoded to its ids
    evaluation = run("fcn", EvaluateOptions(a=photos, b=labels, device="cpu", seg_weights=world["segmenter"]))
    segmenter = translation_eval._open_segmenter(world["segmenter"], None, CPU, None)
    hist = np.zeros((19, 19), np.int64)
    for i in range(3):
        x = torch.from_numpy(_rng_images(5, 3)[i]).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        with torch.no_grad():
            hist += confusion(translation_eval._segment(segmenter, x), torch.from_numpy(ids[i])[None])
    scores = segmentation_scores(hist)
    assert evaluation.rows == [{"step": None, **{f"fcn/{k}": scores[k] for k in translation_eval.SCORE_KEYS}}]
    Image.fromarray(np.full((32, 32), 26, np.uint8)).save(labels / "p1.png")
    with pytest.raises(FalError, match="p1.png: value 26 is not a train id"):
        run("fcn", EvaluateOptions(a=photos, b=labels, device="cpu", seg_weights=world["segmenter"]))
    with pytest.raises(FalError, match="needs --seg-weights"):
        run("fcn", EvaluateOptions(a=photos, b=labels, device="cpu"))


def test_depth_folders_read_metres_and_millimetres_and_equal_depth_errors(tmp_path):
    rng = np.random.default_rng(6)
    truth = rng.uniform(0.5, 9.0, (3, 12, 16))
    predicted = truth * rng.uniform(0.8, 1.2, truth.shape)
    (tmp_path / "pred").mkdir(), (tmp_path / "true").mkdir()
    for i in range(3):
        np.save(tmp_path / "pred" / f"m{i}.npy", predicted[i].astype(np.float32))
    truth_mm = np.round(truth * 1000).astype(np.uint16)
    Image.fromarray(truth_mm[0]).save(tmp_path / "true" / "m0.png")  # 16-bit PNG in millimetres
    Image.fromarray(truth_mm[1]).save(tmp_path / "true" / "m1.png")
    np.save(tmp_path / "true" / "m2.npy", truth[2])                   # metres
    np.save(tmp_path / "pred" / "m3.npy", predicted[0].astype(np.float32))
    np.save(tmp_path / "true" / "m3.npy", np.zeros((12, 16)))         # no valid pixel: skipped, with a note
    evaluation = run("depth", EvaluateOptions(a=tmp_path / "pred", b=tmp_path / "true", device="cpu"))
    gt = np.stack([truth_mm[0] / 1000.0, truth_mm[1] / 1000.0, truth[2]])
    direct = depth_errors(predicted.astype(np.float32), gt)  # per image, then the mean over images
    assert evaluation.rows[0] == {"step": None, **{f"depth/{k}": pytest.approx(direct[k], rel=1e-9)
                                                   for k in DEPTH_KEYS}}
    assert evaluation.notes == ["1 of 4 maps have no valid true depth and were skipped"]
    Image.fromarray(np.full((12, 16), 3, np.uint8)).save(tmp_path / "true" / "m1.png")
    with pytest.raises(FalError, match="m1.png: a L PNG; depth PNGs must be 16-bit in millimetres"):
        run("depth", EvaluateOptions(a=tmp_path / "pred", b=tmp_path / "true", device="cpu"))


def test_voxel_accuracy_on_binvox_and_npy_equals_the_judges_predictions(world, tmp_path):
    from falcli.data.primitives import make_primitives

    shapes = make_primitives(5, 32, 3)["voxels"].astype(np.uint8)  # 32³: max-pooled to the judge's 16³
    folder = tmp_path / "shapes"
    folder.mkdir()
    for i in range(3):
        write_binvox(folder / f"s{i}.binvox", z_up_to_y_up(shapes[i]))  # as `fal sample` writes them
    np.save(folder / "rest.npy", shapes[3:].astype(np.float32) * 0.9)  # probabilities, thresholded at 0.5
    np.save(folder / "latents.npy", np.zeros((5, 8), np.float32))  # `fal sample` bookkeeping: not a sample
    evaluation = run("voxel-accuracy", EvaluateOptions(a=folder, device="cpu", judge=world["voxel_judge"],
                                                       class_name="car"))
    net, judge_recipe, _ = load(world["voxel_judge"], CPU, JUDGES["voxel-classifier"])
    names = JUDGES["voxel-classifier"].class_names(judge_recipe)
    order = np.concatenate([shapes[3:], shapes[:3]])  # rest.npy sorts before s0.binvox
    predicted = predict(net, to_judge_resolution(torch.from_numpy(order), judge_recipe), CPU)
    row = evaluation.rows[0]
    assert row["accuracy"] == float((predicted == names.index("car")).float().mean())
    assert sum(row[f"predicted/{n}"] for n in names) == pytest.approx(1.0)
    with pytest.raises(FalError, match="--class: missing; name the class the shapes should be: airplane, car"):
        run("voxel-accuracy", EvaluateOptions(a=folder, device="cpu", judge=world["voxel_judge"]))
    np.save(folder / "odd.npy", np.zeros((16, 16, 16), np.uint8))
    with pytest.raises(FalError, match="grids of several sizes"):
        run("voxel-accuracy", EvaluateOptions(a=folder, device="cpu", judge=world["voxel_judge"], class_name="car"))


def test_toy_points_equal_toy_metrics_against_the_mixture(tmp_path):
    data = ToyData(mixture="grid")
    points = sample_mixture(data, 300, torch.Generator().manual_seed(9)).numpy()
    np.save(tmp_path / "points.npy", points)
    evaluation = run("toy", EvaluateOptions(a=tmp_path / "points.npy", dataset="grid"))
    reference = sample_mixture(data, 300, torch.Generator().manual_seed(0))
    direct = toy_metrics(torch.from_numpy(points), mixture_centers(data), data.sigma, reference)
    assert evaluation.rows == [{"step": None, **direct}] and direct["modes_covered"] == 25
    with pytest.raises(FalError, match="needs --dataset ring or grid"):
        run("toy", EvaluateOptions(a=tmp_path / "points.npy"))
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    with pytest.raises(FalError, match=r"shape \(4, 3\); toy samples are \(N, 2\) numbers"):
        run("toy", EvaluateOptions(a=tmp_path / "bad.npy", dataset="ring"))
    points[3] = np.nan
    np.save(tmp_path / "diverged.npy", points)
    with pytest.raises(FalError, match="1 point\\(s\\) are NaN or infinite"):
        run("toy", EvaluateOptions(a=tmp_path / "diverged.npy", dataset="grid"))


# --- fid and kid through the existing engine ---

def test_fid_and_kid_are_the_engines_values_with_one_row_per_step_for_a_checkpoint(world, tmp_path):
    from falcli.data.shapes import make_shapes

    real = _pngs(tmp_path / "real", make_shapes(12, 32, seed=1)["images"], [f"{i:02d}" for i in range(12)])
    other = _pngs(tmp_path / "other", make_shapes(10, 32, seed=5)["images"], [f"{i:02d}" for i in range(10)])
    space = f"judge:{world['shapes_judge']}"
    kid = run("kid", EvaluateOptions(a=other, b=real, device="cpu", feature_space=space, workers=0,
                                     kid_subset_size=10))
    engine = fid_command(other, real, kid=True, device="cpu", feature_space=space, workers=0, kid_subset_size=10)
    assert [{k: v for k, v in row.items() if k != "fid"} for row in engine["rows"]] == kid.rows
    assert "kid" in kid.rows[0] and "fid" not in kid.rows[0] and kid.rows[0]["step"] is None
    few = _pngs(tmp_path / "few", make_shapes(4, 32, seed=7)["images"], range(4))  # 4 images, 4-dim features
    assert np.isfinite(run("kid", EvaluateOptions(a=few, b=real, device="cpu", feature_space=space, workers=0,
                                                  kid_subset_size=4)).rows[0]["kid"])  # no covariance needed
    with pytest.raises(FalError, match="KID subset size 1000 is larger than the samples"):
        run("kid", EvaluateOptions(a=few, b=real, device="cpu", feature_space=space, workers=0))
    run_dir = Path(shutil.copytree(world["runs"]["image"], tmp_path / "image"))
    fid = run("fid", EvaluateOptions(ckpt=run_dir, a=real, device="cpu", feature_space=space, workers=0,
                                     num_samples=12, steps=2))
    engine = fid_command(_newest(run_dir), real, device="cpu", feature_space=space, workers=0, num_samples=12,
                         steps=2)
    assert fid.rows == engine["rows"] and [row["step"] for row in fid.rows] == [1, 2]
    assert fid.written == run_dir / "evaluate-fid.json"
    assert fid.protocol["label"].startswith("judge feature space")
    with pytest.raises(FalError, match="FID scores images; task 'voxel'"):
        run("fid", EvaluateOptions(ckpt=world["runs"]["voxel"], a=real, device="cpu", feature_space=space))
    with pytest.raises(FalError, match="needs two inputs"):
        run("fid", EvaluateOptions(a=real, device="cpu"))


# --- the command line ---

def test_cli_prints_a_table_per_step_and_writes_json(fresh):
    run_dir = fresh("toy")
    result = _cli("evaluate", "all", "--ckpt", run_dir, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "t=1" in result.output and "t=3" in result.output and "sliced_wasserstein" in result.output
    assert f"done → {run_dir / 'evaluate-all.json'}" in result.output
    header, lines = metric_table(json.loads((run_dir / "evaluate-all.json").read_text())["rows"])
    assert header == ["metric", "t=1", "t=2", "t=3"] and lines[0][0] == "modes_covered"


@pytest.mark.parametrize("args, message", [
    (["evaluate", "ssim", "--ckpt", "{toy}"], "a checkpoint of task 'toy', but `fal evaluate ssim` scores"),
    (["evaluate", "toy", "--ckpt", "{toy}", "--steps", "0"], "--steps must be >= 1"),
    (["evaluate", "nonsense"], "unknown metric 'nonsense'"),
    (["evaluate", "all"], "needs --ckpt CKPT"),
    (["evaluate", "toy", "--ckpt", "no/such.pt"], "no/such.pt: no such checkpoint file"),
    (["evaluate", "all", "--ckpt", "{empty}"], "no checkpoint in"),
])
def test_cli_errors_are_one_line_with_exit_code_2(world, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"toy": world["runs"]["toy"], "empty": tmp_path / "empty"}
    result = _cli(*[a.format(**paths) for a in args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ") and "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1


def test_fid_on_the_command_line_prints_its_protocol_before_the_table(world, tmp_path):
    a = _pngs(tmp_path / "a", _rng_images(0, 12), range(12))
    b = _pngs(tmp_path / "b", _rng_images(1, 12), range(12))
    result = _cli("evaluate", "fid", a, b, "--feature-space", f"judge:{world['shapes_judge']}", "--device", "cpu",
                  "--dims", "4", "--json", tmp_path / "fid.json")
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "━" not in line]  # without the progress bar
    assert said[0].startswith("judge feature space")
    assert any(line.startswith("network:") for line in said) and any(line.startswith("n_a: 12") for line in said)
    assert said.index(next(line for line in said if line.startswith("n_b:"))) < \
        said.index(next(line for line in said if line.startswith("fid:")))


def test_all_on_an_image_checkpoint_says_how_to_get_inception_weights_and_refuses_fid_only_flags(world,
                                                                                                 monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(Path.cwd() / "no-hub"))  # no Inception weights anywhere
    monkeypatch.delenv("FAL_WEIGHTS_DIR", raising=False)
    evaluation = run("all", EvaluateOptions(ckpt=world["runs"]["image"], device="cpu"))
    said = " ".join(evaluation.notes)
    assert "no Inception FID" in said and "pass --weights PATH" in said and "pt_inception-2015-12-05" in said
    with pytest.raises(FalError, match="--kid applies to `fal evaluate fid`"):
        run("all", EvaluateOptions(ckpt=world["runs"]["image"], device="cpu", kid=True))
    with pytest.raises(FalError, match="no such"):
        run("all", EvaluateOptions(ckpt=world["runs"]["image"], device="cpu", weights=Path("absent.pth")))


def test_translation_scores_say_how_many_pairs_they_really_used(world):
    evaluation = run("ssim", EvaluateOptions(ckpt=world["runs"]["photo"], device="cpu", num_samples=100,
                                             json_path=Path("ssim.json")))
    pairs = evaluation.checkpoint["num_samples"]
    assert pairs < 100 and any(f"the val split has {pairs} pairs" in note for note in evaluation.notes)
    assert json.loads(Path("ssim.json").read_text())["checkpoint"]["num_samples"] == pairs


def test_lpips_on_files_with_unofficial_weights_is_labelled_not_comparable(tmp_path):
    import torchvision

    weights = tmp_path / "alexnet-other.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()},
               weights)
    a = _pngs(tmp_path / "a", _rng_images(0, 2), range(2))
    b = _pngs(tmp_path / "b", _rng_images(1, 2), range(2))
    evaluation = run("lpips", EvaluateOptions(a=a, b=b, device="cpu", weights=weights,
                                              allow_unofficial_weights=True))
    assert evaluation.protocol["label"].startswith("NOT COMPARABLE")
    assert evaluation.protocol["lpips"]["sha256_prefix"] != "7be5be79"


def test_a_plain_gan_checkpoint_has_no_feedback_steps_to_score(tmp_path):
    run_dir = _train(tmp_path, "plain", "toy.yaml", TINY_TOY + ["feedback.steps=1"])
    with pytest.raises(FalError, match="trained without feedback .* use --steps 1"):
        run("toy", EvaluateOptions(ckpt=run_dir, device="cpu", steps=3))
    assert [row["step"] for row in run("toy", EvaluateOptions(ckpt=run_dir, device="cpu")).rows] == [1]


def test_a_judge_given_as_a_checkpoint_is_named_as_a_judge(world):
    with pytest.raises(FalError, match="a judge .* not a GAN checkpoint; pass it as the metric's judge"):
        run("all", EvaluateOptions(ckpt=world["voxel_judge"], device="cpu"))


def test_voxel_grids_of_a_size_that_is_no_power_of_two_are_refused(world, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    np.save(folder / "grids.npy", np.zeros((2, 40, 40, 40), np.uint8))
    with pytest.raises(FalError, match="40³ grids; voxel grids are scored at a power of two"):
        run("voxel-accuracy", EvaluateOptions(a=folder, device="cpu", judge=world["voxel_judge"], class_name="car"))
