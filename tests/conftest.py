"""Shared fixtures: seeded torch, tiny recipes, tiny judges in a per-test cache, a working directory in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from falcli.commands import train
from falcli.judges import provision
from falcli.resolve import apply_overrides, load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


# The judges `fal evaluate` trains on first use, shrunk to a second on a CPU (the shipped recipe, these keys set).
TINY_JUDGES = {
    "shapes_classifier.yaml": ["data.shapes_train=32", "data.shapes_val=8", "model.channels=4", "model.depth=1",
                               "model.features=4", "train.iterations=3", "train.batch_size=4", "train.log_every=1"],
    "voxel_classifier.yaml": ["data.primitives_train=8", "data.primitives_val=4", "model.channels=2",
                              "model.depth=2", "model.features=4", "train.iterations=2", "train.batch_size=4",
                              "train.log_every=1"],
    "streets_segmenter.yaml": ["data.image_size=32", "data.train_count=8", "data.val_count=4", "model.channels=4",
                               "model.depth=2", "train.iterations=2", "train.batch_size=4", "train.log_every=1"],
    "cityscapes_segmenter.yaml": ["model.channels=4", "model.depth=2", "train.iterations=2", "train.batch_size=2",
                                  "train.log_every=1"],
}


@pytest.fixture(scope="session")
def tiny_judge_recipes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("judge-recipes")
    for name, overrides in TINY_JUDGES.items():
        raw = apply_overrides(yaml.safe_load((ROOT / "recipes" / name).read_text()), overrides)
        (folder / name).write_text(yaml.safe_dump({"name": Path(name).stem, **raw}))
    return folder


@pytest.fixture(autouse=True)
def _judge_cache(tmp_path_factory, tiny_judge_recipes, monkeypatch):
    """Every test gets its own empty judge cache ($FAL_CACHE), never the user's, and tiny judge recipes."""
    monkeypatch.setenv("FAL_CACHE", str(tmp_path_factory.mktemp("fal-cache")))
    monkeypatch.setattr(provision, "RECIPES", tiny_judge_recipes)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        # The marker itself, not `"gpu" in item.keywords`: keywords hold every parent node's name too, so a
        # checkout in a folder named gpu would skip the whole suite.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


TINY_TOY = [
    "model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
    "train.batch_size=64", "train.iterations=12", "train.log_every=3", "train.sample_every=0",
    "train.checkpoint_every=6", "evaluate.num_samples=256", "train.lr_decay_start_fraction=null",
]


@pytest.fixture
def toy_recipe():
    """The shipped toy recipe shrunk to a few milliseconds per iteration."""
    def make(*overrides: str):
        return load_recipe(ROOT / "recipes" / "toy.yaml", TINY_TOY + list(overrides))
    return make


QUIET_RUN = ["train.log_every=1", "train.sample_every=0", "train.checkpoint_every=100"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The module's tiny trained runs: `get(name, recipe, overrides)` → the run folder of recipes/<recipe>.yaml
    with `overrides` (and logging every iteration, no pictures, one checkpoint), trained on first use for each
    name — once per test module, so that what one module writes into a run never reaches another's."""
    made: dict[str, Path] = {}

    def get(name: str, recipe: str, overrides: list[str]) -> Path:
        if name not in made:
            loaded = load_recipe(ROOT / "recipes" / f"{recipe}.yaml", list(overrides) + QUIET_RUN)
            made[name] = train.run(loaded, train.RunOptions(out=tmp_path_factory.mktemp(name) / "run", device="cpu"))
        return made[name]
    return get
