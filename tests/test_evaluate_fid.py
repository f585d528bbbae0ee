"""`fal evaluate fid A B`: folders, .npz and checkpoints, equal to pytorch-fid, labelled, with one-line errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfi

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.resolve import load_recipe
from falcli.data.shapes import make_shapes
from falcli.errors import FalError
from falcli.commands.evaluate.fid import fid_command, generate_steps, protocol_lines
from falcli.judges.run import run_judge
from falcli.metrics import fid
from falcli.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
TINY_IMAGE = [
    "data.image_size=32", "data.shapes_train=8", "data.shapes_val=8", "model.latent_dim=8", "model.g_channels=4",
    "model.d_channels=4", "feedback.encoder_channels=4", "feedback.hidden_channels=4", "train.batch_size=2",
    "train.iterations=2", "train.log_every=1", "train.checkpoint_every=2", "train.sample_every=0",
]
TINY_JUDGE = ["data.shapes_train=32", "data.shapes_val=8", "model.channels=4", "model.depth=1",
              "model.features=4", "train.iterations=3", "train.batch_size=4", "train.log_every=1"]
_SCIPY = tuple(int(part) for part in scipy.__version__.split(".")[:2])


def _pngs(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny judge (4-dim features), a 3-step checkpoint, and folders of shapes PNGs (32²)."""
    root = tmp_path_factory.mktemp("fid")
    torch.manual_seed(0)
    judge = run_judge(load_recipe(ROOT / "recipes" / "shapes_classifier.yaml", TINY_JUDGE), root / "judge", "cpu")
    run_dir = train.run(load_recipe(ROOT / "recipes" / "shapes.yaml", TINY_IMAGE),
                        train.RunOptions(out=root / "run", device="cpu"))
    ckpt = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    real = _pngs(root / "real", make_shapes(12, 32, seed=1)["images"])
    other = _pngs(root / "other", make_shapes(10, 32, seed=5)["images"])
    return {"root": root, "judge": f"judge:{judge}", "ckpt": ckpt, "real": real, "other": other}


def _judge(world, a, b, **kwargs):
    return fid_command(a, b, feature_space=world["judge"], device="cpu", workers=0, **kwargs)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A random FID-Inception state dict on disk: the same network for us and for pytorch-fid, no download."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(fid._fid_inception_v3(None).state_dict(), path)
    return path


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
@pytest.mark.skipif(_SCIPY >= (1, 18), reason="pytorch-fid 0.3.0 fails on SciPy >= 1.18")
def test_folders_give_pytorch_fids_own_value_and_are_labelled_not_comparable(tmp_path, random_weights,
                                                                              monkeypatch):
    rng = np.random.default_rng(0)
    a = _pngs(tmp_path / "a", rng.integers(0, 256, (65, 8, 8, 3), dtype=np.uint8))
    b = _pngs(tmp_path / "b", rng.integers(0, 120, (65, 8, 8, 3), dtype=np.uint8))
    ours = fid_command(a, b, dims=64, weights=random_weights, allow_unofficial=True, kid=True, device="cpu",
                       workers=0, batch_size=20, kid_subset_size=50)
    state = torch.load(random_weights, weights_only=True)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state)
    theirs = fid_score.calculate_fid_given_paths([str(a), str(b)], 50, "cpu", 64, num_workers=0)
    (row,) = ours["rows"]
    assert row["fid"] == pytest.approx(theirs, rel=1e-6) and row["step"] is None
    assert row["kid"] > 0 and row["kid_std"] >= 0
    protocol = ours["protocol"]
    assert protocol["official"] is False and protocol["label"].startswith("NOT COMPARABLE")
    assert protocol["n_a"] == protocol["n_b"] == 65 and protocol["dims"] == 64 and "299" in protocol["resize"]


def test_weights_are_checked_and_never_downloaded(tmp_path, random_weights, monkeypatch):
    _pngs(tmp_path / "a", np.zeros((65, 8, 8, 3), np.uint8))
    with pytest.raises(FalError, match="not the official .* --allow-unofficial-weights"):
        fid_command(tmp_path / "a", tmp_path / "a", dims=64, weights=random_weights, device="cpu", workers=0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("FAL_WEIGHTS_DIR", raising=False)
    with pytest.raises(FalError, match="not found and fal never downloads.*--weights PATH"):
        fid_command(tmp_path / "a", tmp_path / "a", dims=64, device="cpu", workers=0)


def test_too_few_images_and_a_missing_npz_are_refused_before_weights_or_features(tmp_path, monkeypatch):
    # No weights anywhere: a refusal that comes first cannot have looked for them, let alone extracted features.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("FAL_WEIGHTS_DIR", raising=False)
    few, many = _pngs(tmp_path / "few", np.zeros((3, 8, 8, 3), np.uint8)), tmp_path / "many"
    _pngs(many, np.zeros((70, 8, 8, 3), np.uint8))
    with pytest.raises(FalError, match=r"few: 3 samples for 64-dim features .* smaller --dims .*--feature-space judge \(128-d\) "
                                          r"needs no download"):
        fid_command(many, few, dims=64, device="cpu", workers=0)
    with pytest.raises(FalError, match=r"ref.npz: no such statistics file"):
        fid_command(many, tmp_path / "ref.npz", dims=64, device="cpu", workers=0)
    with pytest.raises(FalError, match="KID subset size 1000 is larger than the samples"):
        fid_command(many, many, dims=64, device="cpu", workers=0, kid=True, fid=False)


def test_checkpoint_gives_one_row_per_step_equal_to_its_exported_pngs(world, tmp_path):
    result = _judge(world, world["ckpt"], world["real"], num_samples=12, kid=True, kid_subset_size=12)
    assert [row["step"] for row in result["rows"]] == [1, 2, 3]
    assert all(np.isfinite(row["fid"]) and "kid" in row for row in result["rows"])
    assert "G_ema, 12 samples per step" in result["protocol"]["a"]  # the recipe keeps an EMA of G
    assert result["protocol"]["label"].startswith("judge feature space")
    lines = protocol_lines(result["protocol"])
    assert lines[0] == result["protocol"]["label"] and any(line.startswith("n_a: 12") for line in lines)
    # the same samples saved as PNGs (what a user would export) give the same FID
    recipe, _, D, G_ema, _ = resolve.restore(world["ckpt"], torch.device("cpu"))
    images, _ = generate_steps(TASKS["image"], G_ema, D, recipe, torch.device("cpu"), 3, 12)
    exported = _pngs(tmp_path / "step2", images[1].permute(0, 2, 3, 1).numpy())
    (row,) = _judge(world, exported, world["real"])["rows"]
    assert row["fid"] == pytest.approx(result["rows"][1]["fid"], rel=1e-9)
    swapped = _judge(world, world["real"], world["ckpt"], num_samples=12, steps=2)
    assert [r["step"] for r in swapped["rows"]] == [1, 2]
    assert swapped["rows"][1]["fid"] == pytest.approx(row["fid"], rel=1e-9)


def test_save_stats_writes_pytorch_fid_npz_and_refuses_to_overwrite(world, tmp_path):
    out = tmp_path / "real.npz"
    saved = _judge(world, world["real"], out, save_stats=True)
    assert saved["saved"] == [str(out)] and saved["rows"] == []
    mu, sigma = fid_score.compute_statistics_of_path(str(out), None, 50, 4, "cpu")  # pytorch-fid reads it
    assert mu.shape == (4,) and sigma.shape == (4, 4)
    with pytest.raises(FalError, match="already exists"):
        _judge(world, world["real"], out, save_stats=True)
    from_folders = _judge(world, world["other"], world["real"])["rows"][0]["fid"]
    assert _judge(world, world["other"], out)["rows"][0]["fid"] == pytest.approx(from_folders, rel=1e-12)
    per_step = _judge(world, world["ckpt"], tmp_path / "fake.npz", save_stats=True, num_samples=12)
    assert [Path(p).name for p in per_step["saved"]] == ["fake-step1.npz", "fake-step2.npz", "fake-step3.npz"]
    with pytest.raises(FalError, match="--kid needs images on both sides.*real.npz"):
        _judge(world, world["other"], out, kid=True)


def test_a_checkpoint_is_scored_without_its_training_data(world, tmp_path):
    from falcli.formats.store import write_dataset

    data = write_dataset(tmp_path / "faces", "images", "test",
                         {split: {"images": make_shapes(4, 32, seed=2)["images"]} for split in ("train", "val")}, {})
    run_dir = train.run(load_recipe(ROOT / "recipes" / "shapes.yaml", TINY_IMAGE + [
        "data.source=prepared", f"data.root={data}"]), train.RunOptions(out=tmp_path / "run", device="cpu"))
    shutil.rmtree(data)  # evaluated elsewhere, against reference statistics
    _judge(world, world["real"], tmp_path / "real.npz", save_stats=True)
    result = _judge(world, run_dir, tmp_path / "real.npz", num_samples=12)
    assert [row["step"] for row in result["rows"]] == [1, 2, 3] and all(np.isfinite(r["fid"]) for r in result["rows"])


def test_statistics_keep_the_label_of_the_weights_that_made_them(world, tmp_path):
    saved = _judge(world, world["real"], tmp_path / "real.npz", save_stats=True)
    assert fid.stats_label(tmp_path / "real.npz") == saved["protocol"]["label"]
    mu, sigma = fid.load_stats(tmp_path / "real.npz")
    fid.save_stats(tmp_path / "odd.npz", mu, sigma, label="NOT COMPARABLE: unofficial Inception weights")
    result = fid_command(tmp_path / "real.npz", tmp_path / "odd.npz", device="cpu")
    assert result["protocol"]["label"].startswith("NOT COMPARABLE: unofficial Inception weights (statistics")
    assert result["rows"][0]["fid"] == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_are_one_line_errors(world, tmp_path):
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "bare.npz", mean=np.zeros(4))
    np.savez(tmp_path / "nan.npz", mu=np.full(4, np.nan), sigma=np.eye(4))
    _pngs(tmp_path / "mixed", np.zeros((2, 32, 32, 3), np.uint8))
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "mixed" / "wide.png")
    _pngs(tmp_path / "junk", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "junk" / "notes.png").write_text("not an image")
    _pngs(tmp_path / "small", np.zeros((5, 16, 16, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    cases = [
        ((tmp_path / "empty", world["real"]), {}, "no images"),
        ((tmp_path / "mixed", world["real"]), {}, "mixed: mixed image sizes: 0000.png is 32x32 but wide.png is 32x16"),
        ((tmp_path / "nan.npz", world["real"]), {}, r"nan.npz: the statistics contain NaN or inf"),
        ((tmp_path / "junk", world["real"]), {}, r"notes\.png: unreadable or corrupt image"),
        ((tmp_path / "bare.npz", world["real"]), {}, r"npz lacks \['mu', 'sigma'\]"),
        ((tmp_path / "missing", world["real"]), {}, "no such folder or file"),
        ((tmp_path / "notes.txt", world["real"]), {}, "not a folder of images, a .npz"),
        ((tmp_path / "small", world["real"]), {}, "16×16 images, but the judge scores 32² images only"),
        ((world["ckpt"], world["ckpt"]), {}, "compare one checkpoint at a time"),
        ((world["real"], tmp_path / "out.txt"), {"save_stats": True}, "must end in .npz"),
        ((world["real"], world["real"]), {"batch_size": 0}, "--batch-size must be >= 1"),
        # a judge's space has no --dims to shrink: only more samples are advice
        ((world["ckpt"], world["real"]), {"num_samples": 3}, r"3 samples for 4-dim features gives a singular "
                                                             r"covariance; pass --num-samples 5 or more$"),
    ]
    for (a, b), options, message in cases:
        with pytest.raises(FalError, match=message) as error:
            _judge(world, a, b, **options)
        assert "\n" not in str(error.value)
    with pytest.raises(FalError, match="expected inception, judge or judge:PATH"):
        fid_command(world["real"], world["real"], feature_space="clip", device="cpu")
    with pytest.raises(FalError, match="3 images for the judge's 4-dim features .* use at least 5 images"):
        _judge(world, _pngs(tmp_path / "three", np.zeros((3, 32, 32, 3), np.uint8)), world["real"])
