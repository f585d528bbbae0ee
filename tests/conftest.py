"""Shared fixtures: seeded torch, tiny recipes, and a working directory in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from falcli.commands import train
from falcli.resolve import load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
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
