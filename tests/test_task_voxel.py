"""The voxel task (3D-GAN + FAL), its classifier judge, evaluation per step, export, and user errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.resolve import load_recipe, recipe_from_dict
from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.formats.binvox import read_binvox, y_up_to_z_up
from falcli.formats.store import write_dataset
from falcli.judges import JUDGES
from falcli.judges import voxel_classifier
from falcli.judges.base import fit
from falcli.nn.spatial_transform import AdaptiveSpatialTransform
from falcli.tasks import TASKS
from falcli.tasks.voxel import evaluate_voxel, export_samples

ROOT = Path(__file__).resolve().parents[1]
TASK = TASKS["voxel"]
TINY = [
    "data.resolution=16", "data.primitives_train=8", "data.primitives_val=4", "model.latent_dim=8",
    "model.base_channels=2", "feedback.encoder_channels=2", "feedback.hidden_channels=2", "train.batch_size=2",
    "train.iterations=2", "train.log_every=1", "train.sample_every=0", "train.checkpoint_every=2",
]
TINY_JUDGE = {"task": "voxel-classifier", "name": "judge",
              "data": {"resolution": 16, "primitives_train": 8, "primitives_val": 4},
              "model": {"channels": 2, "depth": 2, "features": 4},
              "train": {"iterations": 2, "batch_size": 4, "log_every": 1}}


def recipe(*overrides: str):
    return load_recipe(ROOT / "recipes" / "primitives.yaml", TINY + list(overrides))


def prepared(tmp_path: Path, val_classes=(0, 1)) -> Path:
    """A prepared voxel dataset at 32³ with classes airplane (0) and car (1); val holds `val_classes`."""
    def split(labels):
        voxels = np.zeros((len(labels), 32, 32, 32), np.uint8)
        voxels[:, :2, :2, :2] = 1  # one filled 2³ corner block: a single voxel once max-pooled to 16³
        return {"voxels": voxels, "labels": np.array(labels, np.int64)}
    return write_dataset(tmp_path / "sn", "voxels", "shapenet",
                         {"train": split([0, 1, 0, 1]), "val": split(list(val_classes))},
                         {"size": 32, "classes": ["airplane", "car"]})


# --- networks ---

def test_samples_and_d_maps_per_step_have_voxel_shapes():
    r = recipe()
    G, D = TASK.make_networks(r)
    with torch.no_grad():
        out = unroll(G, D, torch.randn(2, 8), None, 3, r.feedback, lambda x: x)
    assert [tuple(x.shape) for x in out.samples] == [(2, 1, 16, 16, 16)] * 3
    assert [tuple(m.shape) for m in out.logits] == [(2, 1, 4, 4, 4)] * 3
    assert all(0 <= float(x.min()) and float(x.max()) <= 1 for x in out.samples)  # occupancy probabilities


@pytest.mark.parametrize("resolution, stages", [(16, {"0", "1"}), (32, {"1", "2"}), (64, {"2", "3"})])
def test_ast_is_the_shared_layer_in_3d_at_quarter_and_half_resolution(resolution, stages):
    G, _ = TASK.make_networks(recipe(f"data.resolution={resolution}"))
    assert set(G.feedback.transforms) == stages
    for ast in G.feedback.transforms.values():
        assert isinstance(ast, AdaptiveSpatialTransform)
        assert isinstance(ast.gamma, torch.nn.Conv3d)


def test_steps_one_is_the_plain_3d_gan_with_the_same_weights():
    G1, D1 = TASK.make_networks(recipe("feedback.steps=1"))
    G3, D3 = TASK.make_networks(recipe("feedback.steps=3"))
    assert G1.feedback is None and not any(k.startswith("feedback") for k in G1.state_dict())
    backbone = {k: v for k, v in G3.state_dict().items() if not k.startswith("feedback.")}
    assert backbone.keys() == G1.state_dict().keys()
    assert all(torch.equal(v, backbone[k]) for k, v in G1.state_dict().items())
    assert all(torch.equal(v, D3.state_dict()[k]) for k, v in D1.state_dict().items())


def test_generator_normalises_each_pass_by_its_own_batch_in_train_and_eval_mode():
    """No running averages: they would mix the feedback steps' statistics (docs/voxel.md)."""
    G, _ = TASK.make_networks(recipe())
    z = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(G.train()(z), G.eval()(z))


def test_gradients_reach_the_ast_from_later_steps():
    r = recipe()
    G, D = TASK.make_networks(r)
    out = unroll(G, D, torch.randn(2, 8), None, 3, r.feedback, lambda x: x)
    out.logits[-1].sum().backward()
    for ast in G.feedback.transforms.values():
        for head in (ast.gamma, ast.beta):
            assert sum(p.grad.abs().sum() for p in head.parameters()) > 0


# --- data ---

def test_batch_is_real_occupancy_and_a_latent():
    r = recipe()
    dataset = TASK.make_dataset(r, "train")
    raw = dataset.__getitems__([0, 1])
    batch = TASK.make_batch(raw, r, training=True)
    assert batch.real.shape == (2, 1, 16, 16, 16) and set(batch.real.unique().tolist()) <= {0.0, 1.0}
    assert batch.real.sum() > 0
    assert batch.gen_input.shape == (2, 8)
    assert (raw["labels"] == 0).all()  # airplane only, as the recipe selects


def test_prepared_data_select_the_class_and_max_pool_to_the_resolution(tmp_path):
    root = prepared(tmp_path)
    r = recipe("data.source=prepared", f"data.root={root}", "data.classes=[car]")
    raw = TASK.make_dataset(r, "train").__getitems__([0, 1])
    assert raw["voxels"].shape == (2, 16, 16, 16)
    assert (raw["labels"] == 1).all()
    assert raw["voxels"][:, 0, 0, 0].tolist() == [1, 1] and int(raw["voxels"].sum()) == 2


@pytest.mark.parametrize("overrides, message", [
    (["data.classes=[vessel]"], "'vessel' is not in"),
    (["data.resolution=64"], "prepare it with `fal prepare shapenet --size 64`"),
])
def test_prepared_data_errors_say_what_to_do(tmp_path, overrides, message):
    r = recipe("data.source=prepared", f"data.root={prepared(tmp_path)}", *overrides)
    with pytest.raises(FalError, match=message):
        TASK.make_dataset(r, "train")


def test_an_empty_class_is_an_error_naming_the_split(tmp_path):
    r = recipe("data.source=prepared", f"data.root={prepared(tmp_path, val_classes=(0,))}", "data.classes=[car]")
    TASK.make_dataset(r, "train")
    with pytest.raises(FalError, match="no 'car' voxels in its val split"):
        TASK.make_dataset(r, "val")


def test_missing_prepared_data_points_to_fal_prepare(tmp_path):
    r = recipe("data.source=prepared", f"data.root={tmp_path / 'nothing'}")
    with pytest.raises(FalError, match="fal prepare shapenet"):
        TASK.make_dataset(r, "train")


@pytest.mark.parametrize("overrides, message", [
    (["data.classes=[teapot]"], "not a built-in primitives class"),
    (["data.classes=[]"], "data.classes is empty"),
    (["data.resolution=48"], "data.resolution must be 16, 32 or 64"),
    (["feedback.placement=[2]"], "voxel stages at 16³ are 0..1"),
    (["loss.l1_weight=1"], "no targets"),
])
def test_bad_recipes_are_one_line_errors(overrides, message):
    with pytest.raises(FalError, match=message):
        recipe(*overrides)


# --- training, checkpoints, pictures, export ---

def test_train_writes_checkpoints_and_samples_that_restore(tmp_path):
    r = recipe("train.sample_every=2")
    run_dir = train.run(r, train.RunOptions(out=tmp_path / "run", device="cpu"))
    assert (run_dir / "samples" / "iter-0000002.png").stat().st_size > 0
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    restored, G, D, _, payload = resolve.restore(path, torch.device("cpu"))
    assert restored.task == "voxel" and payload["iteration"] == 2
    G2, _ = TASK.make_networks(restored)
    G2.load_state_dict(payload["G"])
    z = torch.randn(2, 8)
    assert torch.equal(G(z), G2.eval()(z))


def test_export_writes_binvox_and_npy_that_read_back(tmp_path):
    samples = torch.rand(3, 1, 16, 16, 16)
    shapes = (samples[:, 0] > 0.5).numpy()
    written = export_samples(samples, tmp_path / "bv", "binvox")
    assert [p.name for p in written] == [f"sample-{i:06d}.binvox" for i in range(3)]
    assert np.array_equal(y_up_to_z_up(read_binvox(written[1])[0]), shapes[1])  # files stand on y, as binvox's
    written = export_samples(samples, tmp_path / "np", "npy", latents=torch.randn(3, 8))
    assert np.array_equal(np.load(written[0]), shapes.astype(np.uint8))
    assert np.load(written[1]).shape == (3, 8)
    with pytest.raises(FalError, match="choose binvox or npy"):
        export_samples(samples, tmp_path / "x", "obj")
    with pytest.raises(FalError, match="not empty"):
        export_samples(samples, tmp_path / "np", "npy")


# --- the classifier judge and evaluation ---

@pytest.fixture
def judge_path(tmp_path):
    return fit(JUDGES["voxel-classifier"], recipe_from_dict(TINY_JUDGE), tmp_path / "judge", torch.device("cpu"))


def test_judge_data_are_every_class_with_their_labels():
    judge = JUDGES["voxel-classifier"]
    r = recipe_from_dict(TINY_JUDGE)
    inputs, targets = judge.load_data(r, "train")
    assert inputs.shape == (8, 1, 16, 16, 16) and inputs.dtype == torch.uint8
    assert targets.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert judge.make_net(r)(inputs[:2]).shape == (2, 5)  # the four classes and reject


def test_evaluate_gives_classifier_accuracy_per_step(judge_path):
    r = recipe()
    G, D = TASK.make_networks(r)
    rows = evaluate_voxel(G.eval(), D.eval(), r, torch.device("cpu"), 3, 5, judge_path=judge_path)
    assert len(rows) == 3
    for row in rows:
        assert all(isinstance(v, float) for v in row.values())
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["coverage"] <= 1 and 0 <= row["mmd_iou"] <= 1
        assert row["accuracy"] == row["predicted/airplane"]  # one trained class: the paper's metric
        assert sum(row[f"predicted/{c}"] for c in ("airplane", "car", "vessel", "chair", "reject")) == pytest.approx(1)
        assert {"real_accuracy", "real_accuracy/airplane", "occupancy", "d_real_probability"} <= row.keys()


def test_judge_must_know_the_gans_class(tmp_path):
    raw = {**TINY_JUDGE, "data": {**TINY_JUDGE["data"], "classes": ["airplane", "car"]}}
    path = fit(JUDGES["voxel-classifier"], recipe_from_dict(raw), tmp_path / "j", torch.device("cpu"))
    r = recipe("data.classes=[chair]")
    G, D = TASK.make_networks(r)
    with pytest.raises(FalError, match="knows airplane, car but not 'chair'"):
        evaluate_voxel(G, D, r, torch.device("cpu"), 1, 2, judge_path=path)


def test_samples_are_pooled_to_a_coarser_judge_and_refused_by_a_finer_one():
    coarse = recipe_from_dict(TINY_JUDGE)
    grids = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)
    grids[0, 31, 0, 0] = 1
    pooled = voxel_classifier.to_judge_resolution(grids, coarse)
    assert pooled.shape == (1, 1, 16, 16, 16) and pooled[0, 0, 15, 0, 0] == 1 and pooled.sum() == 1
    with pytest.raises(FalError, match="pass a judge trained with data.resolution=8"):
        voxel_classifier.to_judge_resolution(torch.zeros(1, 8, 8, 8), coarse)


def test_the_steps_picture_names_its_rows_and_carries_ds_colour_scale():
    from falcli.core.feedback import Unrolled
    from falcli.core.pictures import tile
    from falcli.tasks.voxel.task import steps_picture

    real = torch.zeros(2, 1, 8, 8, 8)
    unrolled = Unrolled(samples=[torch.zeros(2, 1, 8, 8, 8)] * 2, logits=[torch.zeros(2, 1, 4, 4, 4)] * 2)
    picture = steps_picture(real, unrolled, columns=2, size=32)
    bare = tile([[np.zeros((32, 32, 3), np.uint8)] * 2] * 5)  # real, then a sample row and a D row per step
    assert picture.shape[1] > bare.shape[1] and picture.shape[0] > bare.shape[0]  # a label column, a scale below
    margin = picture[:, : picture.shape[1] - bare.shape[1]]
    assert (margin < 100).all(axis=-1).any()  # dark label text left of the rows
