"""The user's path: recipes found by name from any folder (and inside a real non-editable install), repeated
`fal toy` experiments in numbered folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from falcli import config, resolve
from falcli.cli import _free_folder, app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_bare_recipe_name_finds_the_shipped_recipe_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.find_recipe("toy") == config.SHIPPED_RECIPES / "toy.yaml"
    assert config.find_recipe("streets.yaml") == config.SHIPPED_RECIPES / "streets.yaml"
    assert config.find_recipe("recipes/shapes.yaml") == config.SHIPPED_RECIPES / "shapes.yaml"
    (tmp_path / "toy").write_text("task: toy\n")  # a file the user names wins over the shipped recipe
    assert config.find_recipe("toy") == Path("toy")
    with pytest.raises(config.FalError, match=r"nothing: no such recipe file; the shipped ones are .*toy.*fal recipes"):
        config.find_recipe("nothing")
    result = invoke("train", "streets", "--dry-run")
    assert result.exit_code == 0, result.output
    listed = invoke("recipes")
    assert listed.exit_code == 0 and all(p.stem in listed.output for p in config.shipped_recipes())
    assert len(config.shipped_recipes()) == len(list((ROOT / "recipes").glob("*.yaml")))


def test_the_recipe_list_says_a_whole_sentence_for_each():
    """A description that runs over comment lines is joined, and cut at its first full stop, not at "et al."."""
    from falcli.cli import _first_sentence

    text = ("# recipes/x.yaml — a U-Net trained on the\n# real photos (Isola et al. 2017, Fig. 1). More detail.\n"
            "task: toy\n# not the description\n")
    assert _first_sentence(text) == "a U-Net trained on the real photos (Isola et al. 2017, Fig. 1)."
    assert _first_sentence("task: toy\n") == ""


def test_repeated_experiments_get_numbered_folders(tmp_path):
    first = tmp_path / "toy-experiment"
    assert _free_folder(first) == first
    first.mkdir()
    assert _free_folder(first) == first  # empty: still free
    (first / "toy_table.json").write_text("{}")
    assert _free_folder(first) == tmp_path / "toy-experiment-2"
    (tmp_path / "toy-experiment-2").mkdir()
    (tmp_path / "toy-experiment-2" / "x").write_text("")
    assert _free_folder(first) == tmp_path / "toy-experiment-3"


@pytest.mark.slow
def test_a_non_editable_install_ships_the_recipes(tmp_path):
    """pip install . (not -e) into a fresh venv that reuses the installed torch; run from another folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)]
    subprocess.run(pip, check=True, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy, not this checkout
    fal = str(venv / "bin" / "fal")
    for args in (["toy", "--help"], ["train", "toy", "--dry-run"], ["train", "recipes/streets.yaml", "--dry-run"],
                 ["recipes"]):
        done = subprocess.run([fal, *args], cwd=elsewhere, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    listed = subprocess.run([fal, "recipes"], cwd=elsewhere, env=env, capture_output=True, text=True).stdout
    assert "site-packages" in listed and "falcli" in listed and "toy" in listed


@pytest.mark.parametrize("name", ["streets", "cityscapes", "nyu_depth"])
def test_a_shortened_run_keeps_the_translation_recipes_valid(name):
    # README's own example: --set train.iterations=N; the decay starts halfway through whatever N is.
    recipe = resolve.load_recipe(ROOT / "recipes" / f"{name}.yaml", ["train.iterations=100"])
    from falcli.commands import train

    assert recipe.train.decay_start == 50
    assert train.learning_rate_factor(recipe.train, 49) == 1.0
    assert train.learning_rate_factor(recipe.train, 75) == pytest.approx(0.5)
    full = resolve.load_recipe(ROOT / "recipes" / f"{name}.yaml").train
    assert full.decay_start == full.iterations // 2  # the same schedule as the absolute start it replaced


def test_an_absolute_decay_start_keeps_working_and_says_how_to_shorten(toy_recipe):
    cfg = toy_recipe("train.iterations=10", "train.lr_decay_start=5").train
    assert cfg.decay_start == 5
    with pytest.raises(config.FalError, match=r"lr_decay_start must be in \[0, train.iterations = 10\) \(got "
                                              r"750\); .* train.lr_decay_start=null train.lr_decay_start_fraction=0.5"):
        toy_recipe("train.iterations=10", "train.lr_decay_start=750")
    with pytest.raises(config.FalError, match="both set"):
        toy_recipe("train.lr_decay_start=5", "train.lr_decay_start_fraction=0.5")


def test_dry_run_imports_no_lpips_torchvision_scikit_image_or_matplotlib(tmp_path):
    # Measured with /usr/bin/time -v (docs in the report): these four made `--dry-run` 870 MB; torch stays.
    code = ("import sys; from typer.testing import CliRunner; from falcli.cli import app; "
            "r = CliRunner().invoke(app, ['train', 'streets', '--dry-run']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('lpips', 'torchvision', 'skimage', 'matplotlib') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_progress_bar_is_drawn_before_a_refusal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cityscapes here
    result = invoke("train", "cityscapes", "--out", tmp_path / "run", "--device", "cpu")
    assert result.exit_code != 0 and "fal prepare cityscapes" in " ".join(result.output.split())
    assert "0/595000" not in result.output and "train cityscapes" not in result.output, result.output


def test_counts_read_as_english():
    from falcli.cli import _count

    assert (_count(1, "step"), _count(3, "step"), _count(1, "image sample")) == ("1 step", "3 steps", "1 image sample")


def test_a_one_point_loss_chart_draws_its_point():
    import io

    import numpy as np
    from PIL import Image

    from falcli.commands.report import loss_curves_png

    def blue(records):
        image = np.asarray(Image.open(io.BytesIO(loss_curves_png(records))).convert("RGB")).astype(int)
        return int((np.abs(image - [31, 119, 180]).sum(-1) < 40).sum())  # matplotlib's first colour

    one = blue([{"iteration": 5, "loss/G": 1.0}])
    legend_only = blue([{"iteration": 5, "loss/G": 1.0}, {"iteration": 6, "loss/G": float("nan")}])
    assert one > legend_only + 20  # a marker, not only the legend's line


def test_sample_grids_carry_step_labels_and_d_colour_scale(tmp_path):
    from functools import partial

    import numpy as np
    import torch
    from PIL import Image

    from falcli.core.feedback import unroll
    from falcli.core.pictures import tile
    from falcli.tasks import TASKS

    recipe = resolve.load_recipe(ROOT / "recipes" / "shapes.yaml")
    task = TASKS["image"]
    G, D = task.make_networks(recipe)
    batch = task.fixed_batch(recipe, torch.device("cpu"), 4)
    with torch.no_grad():
        out = unroll(G, D, batch.gen_input, batch.condition, 2, recipe.feedback,
                     partial(task.discriminator_input, batch=batch))
    task.save_samples(out, batch, tmp_path / "grid.png")
    picture = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    bare = tile([[np.zeros((32, 32, 3), np.uint8)] * 4] * 5)  # real, then step and D rows for 2 steps
    assert picture.shape[0] > bare.shape[0] and picture.shape[1] > bare.shape[1]  # labels left, scale below
    assert (picture[:, :20].sum(-1) < 200).any()  # dark text in the label strip
