"""The image task: DCGAN G with ASTs, patch D, data sources, T=1 = plain GAN, training, pictures, evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.resolve import load_recipe
from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.formats.store import write_dataset
from falcli.judges import provision
from falcli.tasks.base import EvaluatePaths
from falcli.tasks import TASKS
from falcli.tasks.image import default_placement

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TASK = TASKS["image"]
TINY = [
    "data.image_size=32", "data.shapes_train=16", "data.shapes_val=12", "model.latent_dim=8",
    "model.g_channels=4", "model.d_channels=4", "feedback.encoder_channels=4", "feedback.hidden_channels=4",
    "train.batch_size=2", "train.iterations=4", "train.log_every=2", "train.checkpoint_every=2",
    "train.sample_every=0", "evaluate.num_samples=12",
]


def recipe(*overrides: str):
    return load_recipe(ROOT / "recipes" / "shapes.yaml", TINY + list(overrides))


def unrolled(r, batch: int = 2):
    G, D = TASK.make_networks(r)
    z = torch.randn(batch, r.model.latent_dim)
    return G, D, unroll(G, D, z, None, r.feedback.steps, r.feedback, lambda x: x)


@pytest.fixture
def tiny_judge(tmp_path, monkeypatch):
    """A fresh working folder; the default shapes judge is trained tiny into the test's own cache (conftest)."""
    monkeypatch.chdir(tmp_path)


def test_samples_and_d_maps_have_the_right_shape_at_every_step():
    G, D, out = unrolled(recipe())
    assert len(out.samples) == len(out.logits) == 3
    for x, logits in zip(out.samples, out.logits):
        assert x.shape == (2, 3, 32, 32) and x.abs().max() <= 1
        assert logits.shape == (2, 1, 4, 4)  # 32² / 8: a spatial verdict, no global pooling
    _, _, out = unrolled(recipe("data.image_size=64", "model.d_map_size=8", "model.latent_dim=4"))
    assert out.samples[0].shape == (2, 3, 64, 64) and out.logits[0].shape == (2, 1, 8, 8)


def test_default_placement_is_quarter_and_half_resolution():
    for size in (32, 64, 128):
        G, _ = TASK.make_networks(recipe(f"data.image_size={size}", "model.d_map_size=4"))
        h, sizes = torch.randn(1, 8)[:, :, None, None], []
        for block in G.stages:
            h = torch.relu(block(h))
            sizes.append(h.shape[-1])
        assert [sizes[s] for s in default_placement(size)] == [size // 4, size // 2]
        assert sorted(int(k) for k in G.feedback.transforms) == list(default_placement(size))


def test_steps_one_builds_no_feedback_and_the_same_backbone_and_discriminator():
    G1, D1 = TASK.make_networks(recipe("feedback.steps=1"))
    G3, D3 = TASK.make_networks(recipe("feedback.steps=3"))
    assert G1.feedback is None and not any(k.startswith("feedback.") for k in G1.state_dict())
    assert any(k.startswith("feedback.") for k in G3.state_dict())
    for k, v in G1.state_dict().items():
        assert torch.equal(v, G3.state_dict()[k]), k
    for k, v in D1.state_dict().items():
        assert torch.equal(v, D3.state_dict()[k]), k


def test_feedback_is_the_identity_at_initialisation():
    G, D = TASK.make_networks(recipe())
    G.eval(), D.eval()
    z = torch.randn(3, 8)
    with torch.no_grad():
        first = G(z)
        feedback = torch.cat([torch.randn(3, 1, 32, 32), first], 1)
        assert torch.allclose(G(z, feedback), first, atol=1e-6)


def test_gradients_reach_the_ast_and_then_the_encoder():
    r = recipe("feedback.steps=2", "feedback.encoder_channels=8", "feedback.hidden_channels=16")
    G, D = TASK.make_networks(r)
    optimizer = torch.optim.SGD(G.feedback.parameters(), lr=0.1)
    for _ in range(2):  # γ, β start at zero: the first step moves them, the second reaches the encoder too
        optimizer.zero_grad()
        out = unroll(G, D, torch.randn(2, 8), None, 2, r.feedback, lambda x: x)
        out.logits[1].mean().backward()
        optimizer.step()
    for name, p in G.feedback.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_make_batch_scales_flips_and_draws_latents():
    r = recipe()
    images = torch.zeros(8, 32, 32, 3, dtype=torch.uint8)
    images[:, :, :16] = 255  # left half white
    batch = TASK.make_batch({"images": images}, r, training=False)
    assert batch.real.shape == (8, 3, 32, 32) and batch.gen_input.shape == (8, 8)
    assert (batch.real[:, :, :, :16] == 1).all() and (batch.real[:, :, :, 16:] == -1).all()
    torch.manual_seed(3)
    flipped = TASK.make_batch({"images": images}, r, training=True).real
    left_white = (flipped[:, 0, 0, 0] == 1)
    assert 0 < left_white.sum() < 8  # some flipped, some not
    torch.manual_seed(3)
    assert torch.equal(TASK.make_batch({"images": images}, r, training=True).real, flipped)
    assert (TASK.make_batch({"images": images}, recipe("data.flip=false"), training=True).real[:, :, :, 0] == 1).all()


def test_bad_recipes_name_the_key():
    cases = {
        "data.image_size=48": "data.image_size must be 32, 64 or 128",
        "model.d_map_size=3": "model.d_map_size must be a power of two",
        "model.d_map_size=32": "model.d_map_size must be between 2 and 16",
        "feedback.placement=[5]": r"feedback.placement: 32² generators have stages 0..2",
        "loss.l1_weight=100": "loss.l1_weight",
        "data.source=celeb": "data.source",
    }
    for override, message in cases.items():
        with pytest.raises(FalError, match=message):
            recipe(override)


def _prepared(root: Path, size: int, kind: str = "images") -> Path:
    rng = np.random.default_rng(0)
    splits = {s: {"images": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)}
              for s, n in (("train", 6), ("val", 3))}
    return write_dataset(root, kind, "test", splits, {"size": size})


def test_prepared_folder_is_read_and_bad_folders_point_to_fal_prepare(tmp_path):
    root = _prepared(tmp_path / "faces", 32)
    r = recipe("data.source=prepared", f"data.root={root}")
    dataset = TASK.make_dataset(r, "train")
    assert len(dataset) == 6 and dataset.__getitems__([4, 1])["images"].shape == (2, 32, 32, 3)
    assert TASK.fixed_batch(r, torch.device("cpu"), 5).real.shape == (5, 3, 32, 32)
    celeba = load_recipe(ROOT / "recipes" / "celeba.yaml", [f"data.root={tmp_path / 'nothing'}"])
    with pytest.raises(FalError, match="fal prepare celeba"):
        TASK.make_dataset(celeba, "train")
    with pytest.raises(FalError, match="holds 32×32 images; set data.image_size: 32"):
        TASK.make_dataset(recipe("data.source=prepared", f"data.root={root}", "data.image_size=64",
                                 "model.d_map_size=4"), "train")
    odd = _prepared(tmp_path / "odd", 33)
    with pytest.raises(FalError, match=r"holds 33×33 images; prepare again with --size 32 \(the image task"):
        TASK.make_dataset(recipe("data.source=prepared", f"data.root={odd}"), "train")
    voxels = write_dataset(tmp_path / "vox", "voxels", "test", {"train": {"voxels": np.zeros((2, 4, 4, 4), np.uint8)}},
                           {})
    with pytest.raises(FalError, match="needs an images dataset"):
        TASK.make_dataset(recipe("data.source=prepared", f"data.root={voxels}"), "train")


def test_sample_picture_shows_reals_then_samples_and_heatmaps_per_step(tmp_path):
    r = recipe()
    G, D = TASK.make_networks(r)
    batch = TASK.fixed_batch(r, torch.device("cpu"), 20)
    with torch.no_grad():
        out = unroll(G.eval(), D.eval(), batch.gen_input, None, 3, r.feedback, lambda x: x)
    TASK.save_samples(out, batch, tmp_path / "grid.png")
    picture = np.asarray(Image.open(tmp_path / "grid.png"))
    # 1 real row + 3 × (samples, D's map); 16 columns; row labels ("step 3": 8 + 6·6 px) left, D's scale below
    assert picture.shape == (7 * 34 - 2 + 26, 16 * 34 - 2 + 44, 3)


def test_training_writes_checkpoints_that_restore_and_evaluate_per_step(tmp_path, tiny_judge):
    r = recipe("train.ema_decay=0.9")
    run_dir = train.run(r, train.RunOptions(out=tmp_path / "run", device="cpu"))
    assert (run_dir / "samples" / "iter-0000004.png").is_file()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/G/step1", "loss/G/step3", "loss/D/fake"} <= set(lines[-1])
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    restored, G, D, G_ema, payload = resolve.restore(path, torch.device("cpu"))
    assert payload["iteration"] == 4 and G_ema is not None
    said = []
    paths = provision.fill(EvaluatePaths(), TASK.judge_needs(restored), torch.device("cpu"))
    assert paths.judge.parent.parent == provision.cache_root() / "judges"
    rows = TASK.evaluate(G_ema, D, restored, torch.device("cpu"), 3, 12, paths)
    assert len(rows) == 3
    for row in rows:
        assert {"d_logit", "fid_judge"} <= set(row) and all(np.isfinite(v) for v in row.values())
    # the judge was trained once, on first use; a second evaluation reuses it
    stamp = paths.judge.stat().st_mtime_ns
    from falcli.commands.evaluate.fid import evaluate_image_steps
    again = evaluate_image_steps(TASK, G_ema, D, restored, torch.device("cpu"), 2, 12, say=said.append,
                                 judge=provision.fill(EvaluatePaths(), TASK.judge_needs(restored), CPU).judge)
    assert paths.judge.stat().st_mtime_ns == stamp and len(again) == 2
    assert again[0]["fid_judge"] == pytest.approx(rows[0]["fid_judge"])
    assert any("no Inception FID" in line and "--weights PATH" in line for line in said)
    # without a judge the task skips fid_judge and says why (it never trains one itself)
    notes = []
    plain = TASK.evaluate(G_ema, D, restored, CPU, 1, 12, EvaluatePaths(note=notes.append))
    assert "fid_judge" not in plain[0] and any("no fid_judge" in n for n in notes)


def test_sampling_normalises_with_the_batch_statistics_as_in_training():
    # Running averages would mix the statistics of all feedback steps and fit none of them at sampling.
    r = recipe()
    G, D = TASK.make_networks(r)
    z = torch.randn(6, r.model.latent_dim)
    G.train()
    for _ in range(3):  # training passes that would move running averages, if G kept any
        G(torch.randn(6, r.model.latent_dim))
    in_training = G(z)
    G.eval()
    assert torch.equal(G(z), in_training)
