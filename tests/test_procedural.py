"""Tests for the built-in procedural datasets (streets, shapes, primitives) and the voxel renderer."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falcli.data import primitives, shapes, streets
from falcli.data.primitives import PRIMITIVE_CLASSES, make_primitives
from falcli.data.shapes import SHAPE_CLASSES, make_shapes
from falcli.data.streets import STREETS_CLASSES, make_streets
from falcli.errors import FalError
from falcli.core.render import render_voxels, save_png, voxel_grid_image

# Written out independently of the module so a typo in its table is caught.
CITYSCAPES = {
    0: (128, 64, 128), 1: (244, 35, 232), 2: (70, 70, 70), 3: (102, 102, 156), 4: (190, 153, 153),
    5: (153, 153, 153), 6: (250, 170, 30), 7: (220, 220, 0), 8: (107, 142, 35), 9: (152, 251, 152),
    10: (70, 130, 180), 11: (220, 20, 60), 12: (255, 0, 0), 13: (0, 0, 142), 14: (0, 0, 70),
    15: (0, 60, 100), 16: (0, 80, 100), 17: (0, 0, 230), 18: (119, 11, 32),
}


@pytest.fixture(scope="module")
def street64() -> dict[str, np.ndarray]:
    return make_streets(48, 64, seed=3)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------- streets


def test_streets_fields(street64):
    d = street64
    assert d["label_trainid"].shape == (48, 64, 64) and d["label_trainid"].dtype == np.uint8
    assert d["label_color"].shape == (48, 64, 64, 3) and d["label_color"].dtype == np.uint8
    assert d["photo"].shape == (48, 64, 64, 3) and d["photo"].dtype == np.uint8
    assert d["depth"].shape == (48, 64, 64) and d["depth"].dtype == np.float32
    assert d["depth"].min() > 0.5 and d["depth"].max() <= 10.0
    assert set(np.unique(d["label_trainid"])) <= set(STREETS_CLASSES)
    present = set(np.unique(d["label_trainid"]).tolist())
    assert {0, 1, 2, 5, 8, 10, 13} <= present, present  # the core classes show up in any modest batch


def test_streets_label_colors_match_cityscapes(street64):
    ids, col = street64["label_trainid"], street64["label_color"]
    table = np.zeros((256, 3), np.uint8)
    for k, c in CITYSCAPES.items():
        table[k] = c
    np.testing.assert_array_equal(col, table[ids])
    np.testing.assert_array_equal(streets.color_to_trainid(col), ids)


def test_streets_depth_geometry(street64):
    ids, depth = street64["label_trainid"], street64["depth"]
    assert np.all(depth[ids == 10] == 10.0)  # sky is at the far limit
    # perspective ground plane: going down a column of road, depth never increases, and it spans a real range
    both = (ids[:, 1:] == 0) & (ids[:, :-1] == 0)
    assert np.all(depth[:, 1:][both] <= depth[:, :-1][both] + 1e-5)
    road = depth[ids == 0]
    assert road.min() < 1.5 and road.max() == 10.0
    # a car stands on the road: its depth is one value, that of its ground contact, nearer than the road behind it
    car_depths = [np.unique(depth[i][ids[i] == 13]) for i in range(len(ids)) if (ids[i] == 13).any()]
    assert car_depths and all(len(c) <= 4 for c in car_depths)


def test_streets_photo_follows_layout(street64):
    ids, photo = street64["label_trainid"], street64["photo"].astype(np.float32)
    sky, road = photo[ids == 10], photo[ids == 0]
    assert sky[:, 2].mean() > road[:, 2].mean() + 20  # blue-ish bright sky over grey asphalt
    veg = photo[ids == 8]
    assert (veg[:, 1] > veg[:, 2]).mean() > 0.8  # vegetation is green
    per_item = photo.reshape(len(photo), -1).mean(1)
    assert per_item.std() > 3  # appearance varies from item to item
    assert photo.std(axis=(1, 2)).min() > 10  # and no photo is flat


def test_streets_determinism_and_prefix(monkeypatch):
    a = make_streets(5, 32, seed=7)
    _assert_same(a, make_streets(5, 32, seed=7))
    assert not np.array_equal(a["photo"], make_streets(5, 32, seed=8)["photo"])
    # a larger n (rendered in small chunks) extends a smaller one item for item
    monkeypatch.setattr(streets, "CHUNK_PIXELS", 3 * 32 * 32)
    b = make_streets(8, 32, seed=7)
    _assert_same(a, {k: v[:5] for k, v in b.items()})


def test_streets_sizes_share_layout():
    small, big = make_streets(2, 32, seed=1), make_streets(2, 128, seed=1)
    down = big["label_trainid"][:, 2::4, 2::4]
    assert (down == small["label_trainid"]).mean() > 0.85  # same scene, only the resolution differs


def test_streets_meta_and_errors():
    m = streets.meta()
    assert m["kind"] == "paired" and m["default_direction"] == "labels_to_photo"
    assert m["directions"]["photo_to_depth"] == ["photo", "depth"]
    assert m["eval_fields"] == {"segmentation": "label_trainid", "depth": "depth"}
    assert m["depth_range"] == [0.0, 10.0]
    with pytest.raises(FalError, match="32, 64, 128, 256"):
        make_streets(2, 48)
    assert make_streets(0, 32)["photo"].shape == (0, 32, 32, 3)


# ---------------------------------------------------------------- shapes


def test_shapes_fields_and_labels():
    d = make_shapes(200, 32, seed=0)
    assert d["images"].shape == (200, 32, 32, 3) and d["images"].dtype == np.uint8
    assert d["labels"].shape == (200,) and d["labels"].dtype == np.int64
    counts = np.bincount(d["labels"], minlength=len(SHAPE_CLASSES))
    assert len(counts) == len(SHAPE_CLASSES) and counts.min() > 20  # every class, roughly balanced
    assert d["images"].std(axis=(1, 2, 3)).min() > 5
    # anti-aliased edges: many pixels sit strictly between two flat colours, not just a handful of exact ones
    assert len(np.unique(d["images"][0].reshape(-1, 3), axis=0)) > 100
    assert shapes.meta() == {"kind": "images", "classes": SHAPE_CLASSES}


def test_shapes_determinism_prefix_errors(monkeypatch):
    a = make_shapes(6, 64, seed=2)
    _assert_same(a, make_shapes(6, 64, seed=2))
    assert not np.array_equal(a["images"], make_shapes(6, 64, seed=3)["images"])
    monkeypatch.setattr(shapes, "CHUNK_PIXELS", 4 * 64 * 64)
    b = make_shapes(10, 64, seed=2)
    _assert_same(a, {k: v[:6] for k, v in b.items()})
    with pytest.raises(FalError, match="32, 64, 128"):
        make_shapes(4, 256)


# ---------------------------------------------------------------- primitives


@pytest.fixture(scope="module")
def prims32() -> dict[str, np.ndarray]:
    return make_primitives(240, 32, seed=0)


def test_primitives_fields(prims32):
    v, y = prims32["voxels"], prims32["labels"]
    assert v.shape == (240, 32, 32, 32) and v.dtype == np.uint8
    assert set(np.unique(v)) == {0, 1}
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(240) % len(PRIMITIVE_CLASSES))
    filled = v.reshape(len(v), -1).sum(1)
    assert filled.min() > 100  # every object is substantial...
    assert filled.max() < 0.25 * 32**3  # ...and none is a solid block
    assert primitives.meta() == {"kind": "voxels", "classes": PRIMITIVE_CLASSES}


def test_primitives_class_shapes(prims32):
    v, y = prims32["voxels"].astype(np.float32), prims32["labels"]
    ext = []
    for c in range(len(PRIMITIVE_CLASSES)):
        occ = v[y == c].mean(0)
        nz = [np.nonzero(occ.sum(axis=tuple(j for j in range(3) if j != k)))[0] for k in range(3)]
        ext.append([a[-1] - a[0] + 1 for a in nz])
    ext = np.array(ext, np.float32)
    air, car, ves, chair = (PRIMITIVE_CLASSES.index(k) for k in ("airplane", "car", "vessel", "chair"))
    assert ext[air, 1] > 0.7 * 32  # wings span y
    assert ext[car, 0] > ext[car, 1] * 1.5  # cars are longer than wide
    assert ext[chair, 2] > 0.6 * 32  # chairs are tall
    # z is up: a chair's seat level is fuller than its leg level, and legs touch the floor below it
    chair_occ = v[y == chair].mean(0).sum((0, 1))
    zs = np.nonzero(chair_occ)[0]
    assert chair_occ[zs[0] : zs[0] + 3].sum() < chair_occ.max()
    assert ext[ves, 0] > ext[ves, 1] * 2  # hulls are long and narrow


def test_primitives_classes_distinguishable(prims32):
    def feats(v: np.ndarray) -> np.ndarray:
        return v.reshape(len(v), 8, 4, 8, 4, 8, 4).mean((2, 4, 6)).reshape(len(v), -1)

    tr = feats(prims32["voxels"].astype(np.float32))
    te_d = make_primitives(80, 32, seed=1)
    te = feats(te_d["voxels"].astype(np.float32))
    cent = np.stack([tr[prims32["labels"] == c].mean(0) for c in range(len(PRIMITIVE_CLASSES))])
    pred = ((te[:, None] - cent[None]) ** 2).sum(-1).argmin(1)
    assert (pred == te_d["labels"]).mean() > 0.9


def test_primitives_determinism_prefix_subsets(monkeypatch):
    a = make_primitives(6, 32, seed=4)
    _assert_same(a, make_primitives(6, 32, seed=4))
    assert not np.array_equal(a["voxels"], make_primitives(6, 32, seed=5)["voxels"])
    monkeypatch.setattr(primitives, "CHUNK_VOXELS", 4 * 32**3)
    b = make_primitives(9, 32, seed=4)
    _assert_same(a, {k: v[:6] for k, v in b.items()})
    sub = make_primitives(4, 32, seed=0, classes=["chair", "car"])
    np.testing.assert_array_equal(sub["labels"], [3, 1, 3, 1])
    assert make_primitives(2, 64)["voxels"].shape == (2, 64, 64, 64)


def test_primitives_errors():
    with pytest.raises(FalError, match="resolution must be 32 or 64"):
        make_primitives(2, 48)
    with pytest.raises(FalError, match="airplane, car, vessel, chair"):
        make_primitives(2, 32, classes=["sofa"])
    with pytest.raises(FalError, match="valid"):
        primitives.meta(["lamp"])


# ---------------------------------------------------------------- render


def test_render_voxels_basic(prims32):
    img = render_voxels(prims32["voxels"][0], size=96)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8
    white = (img == 255).all(-1)
    assert 0.05 < (~white).mean() < 0.95  # an object on a white background
    assert white[0].all() and white[:, 0].all()
    assert (render_voxels(np.zeros((8, 8, 8), np.uint8), 32) == 255).all()
    occ = prims32["voxels"][1].astype(np.float32) * 0.9
    np.testing.assert_array_equal(render_voxels(occ, 64), render_voxels(prims32["voxels"][1], 64))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 4  # faces shaded differently


def test_render_z_is_up():
    pillar = np.zeros((16, 16, 16), np.uint8)
    pillar[7:9, 7:9, :] = 1
    slab = np.zeros((16, 16, 16), np.uint8)
    slab[:, :, 7:9] = 1
    for grid, tall in ((pillar, True), (slab, False)):
        ink = ~(render_voxels(grid, 64, azimuth=30, elevation=20) == 255).all(-1)
        rows, cols = np.nonzero(ink)
        h, w = np.ptp(rows), np.ptp(cols)
        assert (h > w) == tall


def test_voxel_grid_image_and_save_png(prims32, tmp_path):
    grids = [prims32["voxels"][i] for i in range(5)]
    tiled = voxel_grid_image(grids, ncols=3, size=40)
    assert tiled.shape == (2 * 40 + 2, 3 * 40 + 4, 3) and tiled.dtype == np.uint8
    assert (tiled[:, 40:42] == 255).all()  # gutter
    path = save_png(tiled, tmp_path / "sub" / "grid.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), tiled)
    with pytest.raises(FalError):
        save_png(tiled.astype(np.float32), tmp_path / "x.png")
