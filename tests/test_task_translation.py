"""Translation (pix2pix + FAL): reference shapes and sizes, feedback wiring, paired jitter, the loop, metrics."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.resolve import load_recipe
from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.formats.store import write_dataset
from falcli.metrics.lpips import load_lpips
from falcli.tasks import TASKS
from falcli.tasks.translation import data as paired
from falcli.tasks.translation import evaluate as translation_eval
from falcli.tasks.translation import evaluate_translation

ROOT = Path(__file__).resolve().parents[1]
TASK = TASKS["translation"]
TINY = [
    "data.image_size=32", "data.load_size=36", "data.train_count=8", "data.val_count=4",
    "model.generator_channels=4", "model.depth=3", "model.discriminator_channels=4",
    "model.discriminator_layers=2", "feedback.encoder_channels=4", "feedback.hidden_channels=4",
    "train.batch_size=2", "train.iterations=4", "train.log_every=2", "train.checkpoint_every=2",
    "train.sample_every=0", "train.lr_decay_start=null", "evaluate.num_samples=4",
]


def tiny(*overrides: str):
    return load_recipe(ROOT / "recipes" / "streets.yaml", TINY + list(overrides))


def run_unrolled(recipe, G, D, training=False):
    raw = TASK.make_dataset(recipe, "val").__getitems__([0, 1])
    batch = TASK.make_batch(raw, recipe, training=training)
    out = unroll(G, D, batch.gen_input, batch.condition, recipe.feedback.steps, recipe.feedback,
                 functools.partial(TASK.discriminator_input, batch=batch))
    return batch, out


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh working folder per test


# --- the reference networks ---

def test_unet_256_has_the_reference_parameter_count_and_a_30x30_patch_map():
    recipe = load_recipe(ROOT / "recipes" / "streets.yaml", [
        "data.image_size=256", "data.load_size=286", "model.generator_channels=64", "model.depth=8",
        "model.discriminator_channels=64", "feedback.steps=1"])
    G, D = TASK.make_networks(recipe)
    assert sum(p.numel() for p in G.parameters()) == 54_413_955  # pix2pix unet_256, batch norm, dropout
    assert round(sum(p.numel() for p in D.parameters()) / 1e3) == 2769  # pix2pix basic D on 6 channels
    with torch.no_grad():
        assert D.eval()(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_samples_and_d_maps_have_one_shape_per_step():
    recipe = tiny()
    G, D = TASK.make_networks(recipe)
    batch, out = run_unrolled(recipe, G, D, training=True)
    assert batch.real.shape == batch.gen_input.shape == (2, 3, 32, 32)
    assert len(out.samples) == len(out.logits) == 3
    assert all(x.shape == (2, 3, 32, 32) for x in out.samples)
    assert all(m.shape == (2, 1, 6, 6) for m in out.logits)  # 32 → 16 → 8 → 7 → 6


def test_steps_one_builds_no_feedback_and_the_same_backbone_and_d():
    G1, D1 = TASK.make_networks(tiny("feedback.steps=1"))
    G3, D3 = TASK.make_networks(tiny())
    assert G1.feedback is None and G3.feedback is not None
    plain = G1.state_dict()
    backbone = {k: v for k, v in G3.state_dict().items() if not k.startswith("feedback.")}
    assert plain.keys() == backbone.keys()
    assert all(torch.equal(plain[k], backbone[k]) for k in plain)
    assert all(torch.equal(a, b) for a, b in zip(D1.state_dict().values(), D3.state_dict().values()))


def test_default_placement_is_the_quarter_and_half_size_decoder_stages():
    G, _ = TASK.make_networks(tiny("model.depth=4"))
    assert set(G.feedback.transforms) == {"1", "2"}
    assert G.feedback.transforms["1"].gamma.out_channels == 4   # stage 1 (½ size) = encoder level 0 width
    assert G.feedback.transforms["2"].gamma.out_channels == 8


def test_feedback_reaches_the_ast_and_changes_later_steps():
    recipe = tiny()
    G, D = TASK.make_networks(recipe)
    G.eval()  # no dropout, so the steps differ only through feedback
    _, same = run_unrolled(recipe, G, D)
    assert torch.equal(same.samples[0], same.samples[2])  # zero-initialised heads: identity at start
    same.samples[-1].sum().backward()
    assert sum(ast.gamma.weight.grad.abs().sum() for ast in G.feedback.transforms.values()) > 0
    for ast in G.feedback.transforms.values():
        torch.nn.init.normal_(ast.gamma.weight, std=0.5)
    _, moved = run_unrolled(recipe, G, D)
    assert torch.equal(moved.samples[0], same.samples[0])
    assert not torch.allclose(moved.samples[1], moved.samples[0])


def test_l1_term_is_weighted_per_step():
    recipe = tiny("feedback.step_weights=[1.0, 0.0, 2.0]")
    G, D = TASK.make_networks(recipe)
    batch, out = run_unrolled(recipe, G, D)
    terms = TASK.extra_generator_losses(out, batch, recipe)
    l1 = [(batch.real - x).abs().mean() for x in out.samples]
    assert torch.allclose(terms["l1/step1"], 100 * l1[0]) and terms["l1/step2"] == 0
    assert torch.allclose(terms["l1/step3"], 200 * l1[2])
    assert TASK.extra_generator_losses(out, batch, tiny("loss.l1_weight=0")) == {}


# --- data ---

def test_jitter_crops_and_flips_both_images_of_a_pair_alike():
    torch.manual_seed(3)
    x = torch.arange(4 * 10 * 10, dtype=torch.float32).reshape(4, 1, 10, 10)
    a, b = paired.jitter([x, x.clone()], ["nearest", "nearest"], image_size=8, load_size=None, flip=True)
    assert torch.equal(a, b) and a.shape == (4, 1, 8, 8)
    found_flip = False
    for i in range(4):
        crops = {(y, c, f): (x[i, :, y:y + 8, c:c + 8].flip(-1) if f else x[i, :, y:y + 8, c:c + 8])
                 for y in range(3) for c in range(3) for f in (False, True)}
        match = [key for key, crop in crops.items() if torch.equal(crop, a[i])]
        assert len(match) == 1, "each output is exactly one crop of its input, maybe mirrored"
        found_flip |= match[0][2]
    assert found_flip


def test_training_batches_are_jittered_and_evaluation_batches_are_not():
    recipe = tiny()
    raw = TASK.make_dataset(recipe, "val").__getitems__([0, 1])
    plain = TASK.make_batch(raw, recipe, training=False)
    assert torch.equal(plain.real, TASK.make_batch(raw, recipe, training=False).real)
    assert plain.extras["labels"].shape == (2, 32, 32) and plain.extras["depth"].shape == (2, 32, 32)
    assert plain.real.min() >= -1 and plain.real.max() <= 1
    jittered = TASK.make_batch(raw, recipe, training=True)
    assert jittered.real.shape == plain.real.shape and not torch.equal(jittered.real, plain.real)


def test_depth_targets_map_metres_to_one_channel_and_back():
    recipe = tiny("data.direction=photo_to_depth")
    raw = TASK.make_dataset(recipe, "val").__getitems__([0, 1])
    batch = TASK.make_batch(raw, recipe, training=False)
    assert batch.real.shape == (2, 1, 32, 32) and batch.gen_input.shape == (2, 3, 32, 32)
    metres = paired.depth_from_network(batch.real, (0.0, 10.0))[:, 0]
    assert torch.allclose(metres, batch.extras["depth"], atol=1e-5)
    G, D = TASK.make_networks(recipe)
    assert G(batch.gen_input).shape == (2, 1, 32, 32)


def make_prepared(root: Path, kind: str = "paired") -> Path:
    rng = np.random.default_rng(0)
    split = {"photo": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
             "label_color": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
             "label_trainid": rng.integers(0, 19, (3, 32, 32), dtype=np.uint8)}
    meta = {"directions": {"labels_to_photo": ["label_color", "photo"]}, "default_direction": "labels_to_photo",
            "eval_fields": {"segmentation": "label_trainid"}}
    return write_dataset(root, kind, "cityscapes", {"train": split, "val": split}, meta)


def test_prepared_pairs_are_read_through_the_store(tmp_path):
    root = make_prepared(tmp_path / "city")
    recipe = tiny("data.dataset=prepared", f"data.root={root}", "data.direction=null")
    raw = TASK.make_dataset(recipe, "train").__getitems__([2, 0])
    batch = TASK.make_batch(raw, recipe, training=False)
    expected = torch.from_numpy(np.load(root / "train" / "photo.npy")[2]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(batch.real[0], expected)
    assert TASK.pairing(recipe).name == "cityscapes"


@pytest.mark.parametrize("overrides, message", [
    (["data.direction=sideways"], "labels_to_photo, photo_to_labels, photo_to_depth"),
    (["data.image_size=44", "data.load_size=null"], r"multiple of 2\^model.depth = 8"),
    (["feedback.placement=[3]"], "translation stages are 1..2"),
    (["data.load_size=16"], "data.load_size"),
    (["data.dataset=prepared"], "data.root"),
    (["model.discriminator_layers=4"], "no patch map"),
])
def test_bad_recipes_raise_a_fal_error_naming_the_key(overrides, message):
    with pytest.raises(FalError, match=message):
        tiny(*overrides)  # at load time: `fal train --dry-run` catches them


def test_missing_or_wrong_prepared_data_points_to_fal_prepare(tmp_path):
    with pytest.raises(FalError, match="fal prepare cityscapes --raw PATH --out"):
        TASK.make_dataset(tiny("data.dataset=prepared", f"data.root={tmp_path / 'cityscapes'}"), "train")
    images = make_prepared(tmp_path / "images", kind="images")
    with pytest.raises(FalError, match="translation needs paired data"):
        TASK.make_dataset(tiny("data.dataset=prepared", f"data.root={images}"), "train")


# --- the loop, checkpoints and metrics ---

def test_train_run_writes_samples_and_checkpoints_that_restore(tmp_path):
    run_dir = train.run(tiny(), train.RunOptions(out=tmp_path / "run", device="cpu"))
    assert (run_dir / "samples" / "iter-0000004.png").is_file()
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    recipe, G, D, _, payload = resolve.restore(path, torch.device("cpu"))
    assert payload["iteration"] == 4
    assert all(torch.equal(v, payload["G"][k]) for k, v in G.state_dict().items())
    _, out = run_unrolled(recipe, G, D)
    assert all(torch.isfinite(x).all() for x in out.samples)


def test_evaluate_reports_every_step_and_notes_missing_judges(monkeypatch):
    recipe = tiny()
    G, D = TASK.make_networks(recipe)
    notes = []
    monkeypatch.setattr(translation_eval, "load_lpips", functools.partial(load_lpips, random_trunk=True))
    results = evaluate_translation(G, D, recipe, torch.device("cpu"), 3, 4, note=notes.append)
    assert len(results) == 3
    assert all({"l1", "psnr", "ssim", "lpips", "d_real_probability"} <= set(r) for r in results)
    assert all(isinstance(v, float) for r in results for v in r.values())
    assert any("FCN-score unavailable" in n and "streets_segmenter.yaml" in n for n in notes)


def test_lpips_without_a_trunk_is_skipped_loudly(monkeypatch):
    def missing(**_):
        raise FalError("weights alexnet-owt-7be5be79.pth not found")
    monkeypatch.setattr(translation_eval, "load_lpips", missing)
    recipe = tiny()
    notes = []
    results = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 1, 2,
                                   note=notes.append)
    assert "lpips" not in results[0] and "l1" in results[0]
    assert any(n.startswith("LPIPS unavailable: weights alexnet") for n in notes)


def test_fcn_score_uses_the_segmenter_judge_and_scores_real_photos_too(tmp_path):
    from falcli.judges import JUDGES
    from falcli.judges.base import fit

    judge_recipe = load_recipe(ROOT / "recipes" / "streets_segmenter.yaml", [
        "data.image_size=32", "data.train_count=8", "data.val_count=4", "model.channels=4", "model.depth=2",
        "train.iterations=2", "train.batch_size=4", "train.log_every=1"])
    weights = fit(JUDGES["segmenter"], judge_recipe, tmp_path / "judge", torch.device("cpu"))
    recipe = tiny()
    results = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 2, 4,
                                   seg_weights=weights, note=lambda _: None)
    for r in results:
        assert 0 <= r["fcn/pixel_accuracy"] <= 1 and 0 <= r["fcn/class_iou"] <= 1
    assert results[0]["fcn_real/pixel_accuracy"] == results[1]["fcn_real/pixel_accuracy"]
    with pytest.raises(FalError, match="no such judge file"):
        evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 1, 2,
                             seg_weights=tmp_path / "absent.pt", note=lambda _: None)


@pytest.mark.parametrize("direction, key", [("photo_to_depth", "depth/abs_rel"),
                                            ("photo_to_labels", "labels/pixel_accuracy")])
def test_evaluate_scores_depth_and_label_outputs(direction, key):
    recipe = tiny(f"data.direction={direction}")
    results = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 2, 4,
                                   note=lambda _: None)
    assert all(np.isfinite(r[key]) for r in results)


def test_lpips_from_unofficial_weights_is_scored_when_allowed_and_labelled(tmp_path):
    import torchvision

    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path / "alexnet-other.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    recipe = tiny()
    refused, allowed = [], []
    rows = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 1, 2,
                                lpips_weights=path, note=refused.append)
    assert "lpips" not in rows[0] and any("--allow-unofficial-weights" in n for n in refused)
    rows = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 1, 2,
                                lpips_weights=path, note=allowed.append, allow_unofficial_weights=True)
    assert np.isfinite(rows[0]["lpips"]) and any("not comparable" in n for n in allowed)


def test_prepared_nyu_is_scored_in_metres(tmp_path):
    from falcli.formats.nyu import prepare_nyu
    from tests.test_formats_paired import _nyu

    root = prepare_nyu(_nyu(tmp_path / "raw"), tmp_path / "nyu", size=32)
    recipe = load_recipe(ROOT / "recipes" / "nyu_depth.yaml", TINY + [f"data.root={root}", "data.load_size=null"])
    notes = []
    results = evaluate_translation(*TASK.make_networks(recipe), recipe, torch.device("cpu"), 2, 2, note=notes.append)
    assert all(np.isfinite(r["depth/abs_rel"]) and np.isfinite(r["depth/delta1"]) for r in results), notes


def test_eigen_crop_maps_into_the_prepared_nyu_frame():
    mask = translation_eval.nyu_eigen_mask(467, 625)  # the border box at its own size: a plain shift
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (38, 464, 34, 594)


def test_sampling_normalises_with_the_batch_statistics_as_in_training():
    # G and D both feed the loop at sampling time; running averages would mix the feedback steps' statistics.
    recipe = tiny("model.dropout=false")
    G, D = TASKS["translation"].make_networks(recipe)
    x = torch.rand(4, G.down[0][0].in_channels, 32, 32) * 2 - 1
    pair = torch.rand(4, D.net[0].in_channels, 32, 32) * 2 - 1
    for net, inputs in ((G, x), (D, pair)):
        net.train()
        for _ in range(3):
            net(torch.randn_like(inputs))
        in_training = net(inputs)
        net.eval()
        assert torch.equal(net(inputs), in_training)
