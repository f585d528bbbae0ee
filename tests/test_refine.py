"""`fal sample` and `fal refine`: continuing fal's own samples reproduces the unrolled loop, every step and heat
map is written, translation outputs are matched to inputs by name, inversion finds latents, bad input is one line.

Tiny checkpoints of every task are trained once per module (a second or so each).
"""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from falcli.cli import app
from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.formats.binvox import read_binvox, write_binvox, y_up_to_z_up
from falcli.methods.eqgan_sa import CODE_SIZE
from falcli.commands.refine import INVERT_STREAM, RefineOptions, refine
from falcli.commands.refine.writing import TITLE_HEIGHT
from falcli.commands.sample import SampleOptions, latents_for, open_checkpoint, sample
from falcli.core.files import ImageFiles
from falcli.tasks import TASKS
from falcli.tasks.base import Batch

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY = {
    "toy": ("toy", ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
                    "train.batch_size=64", "train.iterations=12", "train.ema_decay=0.9"]),
    "toy_residual": ("toy", ["model.hidden=32", "model.latent_dim=4", "model.depth=2", "data.points=512",
                             "train.batch_size=64", "train.iterations=12", "train.ema_decay=0.9",
                             "feedback.output=residual"]),
    "eqgan_sa": ("shapes", ["method.eqgan_sa=true", "data.image_size=32", "data.shapes_train=16",
                            "data.shapes_val=12", "model.latent_dim=8", "model.g_channels=4", "model.d_channels=4",
                            "feedback.encoder_channels=4", "feedback.hidden_channels=4", "train.batch_size=2",
                            "train.iterations=2"]),
    "image": ("shapes", ["data.image_size=32", "data.shapes_train=16", "data.shapes_val=12", "model.latent_dim=8",
                         "model.g_channels=4", "model.d_channels=4", "feedback.encoder_channels=4",
                         "feedback.hidden_channels=4", "train.batch_size=2", "train.iterations=4"]),
    "voxel": ("primitives", ["data.resolution=16", "data.primitives_train=8", "data.primitives_val=4",
                             "model.latent_dim=8", "model.base_channels=2", "feedback.encoder_channels=2",
                             "feedback.hidden_channels=2", "train.batch_size=2", "train.iterations=2"]),
    "translation": ("streets", ["data.image_size=32", "data.load_size=36", "data.train_count=8",
                                "data.val_count=4", "model.generator_channels=4", "model.depth=3",
                                "model.discriminator_channels=4", "model.discriminator_layers=2",
                                "feedback.encoder_channels=4", "feedback.hidden_channels=4",
                                "train.batch_size=2", "train.iterations=4", "train.lr_decay_start=null"]),
}
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tiny_runs):
    """task → path of a tiny trained checkpoint (trained on first use)."""
    def get(task: str) -> Path:
        run_dir = tiny_runs(task, *TINY[task])
        return sorted((run_dir / "checkpoints").glob("iter-*.pt"))[-1]
    return get


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def tiles_width(grid: np.ndarray) -> int:
    """Width of the tiles of a refine grid, below its title and column labels and above D's colour key."""
    band = grid[TITLE_HEIGHT + 14:-26]
    return int(np.nonzero((band != 255).any(axis=(0, 2)))[0].max()) + 1


def unroll_in_batches(task: str, path: Path, z_or_inputs: torch.Tensor, steps: int, batch_size: int,
                      initial: torch.Tensor | None = None, with_latents: bool = False):
    """The reference: the checkpoint's loop from latents (or translation inputs), batch by batch as fal does;
    with_latents: also each step's latent (output latent), as (samples, latents)."""
    recipe, G, D, _ = open_checkpoint(path, CPU)
    t = TASKS[task]
    outs = []
    with torch.no_grad():
        for s in range(0, len(z_or_inputs), batch_size):
            gen_input = z_or_inputs[s:s + batch_size]
            condition = gen_input if task == "translation" else None
            batch = Batch(real=gen_input, gen_input=gen_input, condition=condition)
            first = initial[s:s + batch_size] if initial is not None else None
            outs.append(unroll(G, D, gen_input, condition, steps, recipe.feedback,
                               partial(t.discriminator_input, batch=batch), initial=first))
    samples = [torch.cat([o.samples[k] for o in outs]) for k in range(steps)]
    if not with_latents:
        return samples
    if outs[0].latents is None:  # every step reads the input latent
        return samples, [z_or_inputs] * steps
    return samples, [torch.cat([o.latents[k] for o in outs]) for k in range(steps)]


# --- continuing fal's own samples ---

@pytest.mark.parametrize("output", ["residual", "latent"])
def test_toy_refine_continues_the_unrolled_loop_bit_exactly(ckpt, tmp_path, output):
    """With output latent every step moves the latent: fal sample keeps the written step's, and refine continues
    from it (and writes the latents it moved to); otherwise every step reads G's input latent."""
    path = ckpt("toy") if output == "latent" else ckpt("toy_residual")
    sample(SampleOptions(path, tmp_path / "s", count=40, steps=2, seed=3))
    result = refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=3), warn=lambda m: None)
    recipe = open_checkpoint(path, CPU)[0]
    assert recipe.feedback.output == output
    z = latents_for(recipe, 40, 3)
    reference, latents = unroll_in_batches("toy", path, z, 4, batch_size=16, with_latents=True)  # x_1 … x_4
    written = np.load(tmp_path / "s" / "points.npy")
    assert np.array_equal(written, reference[1].numpy())        # fal sample wrote x_2
    kept = latents[1] if output == "latent" else z              # … and the latent its next pass reads
    assert np.array_equal(np.load(tmp_path / "s" / "latents.npy"), kept.numpy())
    for t in (1, 2, 3):                                           # refine step t = x_{t+1}
        assert np.array_equal(np.load(tmp_path / "r" / f"step-{t}" / "points.npy"), reference[t].numpy())
    assert (tmp_path / "r" / "scatter.png").is_file()
    assert result["source"] == "fal samples" and result["inversion"] is None
    assert np.array_equal(np.load(tmp_path / "r" / "latents.npy"), kept.numpy())
    if output == "latent":
        assert np.array_equal(np.load(tmp_path / "r" / "latents-final.npy"), latents[3].numpy())


def test_image_refine_writes_every_step_heatmaps_grid_and_finite_scores(ckpt, tmp_path):
    path = ckpt("image")
    manifest = sample(SampleOptions(path, tmp_path / "s", count=5, steps=1, batch_size=4))
    assert manifest["items"] == [f"{i:06d}" for i in range(5)] and manifest["latents"] == "latents.npy"
    result = refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=3), warn=lambda m: None)
    out = tmp_path / "r"
    for t in (1, 2, 3):
        assert sorted(p.name for p in (out / f"step-{t}").iterdir()) == [f"{i:06d}.png" for i in range(5)]
        heat = sorted((out / "heatmaps" / f"step-{t}").iterdir())
        assert len(heat) == 5 and png(heat[0]).shape == (32, 32, 3)
    for i in range(5):  # step 1 is the input sample itself, pixel for pixel
        assert np.array_equal(png(out / "step-1" / f"{i:06d}.png"), png(tmp_path / "s" / f"{i:06d}.png"))
    # Step 2 is G's pass from the same latents and feedback on the written sample: the loop from z, up to
    # the 8-bit rounding of the sample it starts from.
    z = torch.from_numpy(np.load(tmp_path / "s" / "latents.npy"))
    x1 = ImageFiles(32, 3).read([tmp_path / "s" / f"{i:06d}.png" for i in range(5)])
    exact = unroll_in_batches("image", path, z, 2, batch_size=4, initial=x1)[1]
    loop = unroll_in_batches("image", path, z, 2, batch_size=4)[1]
    step2 = ImageFiles(32, 3).read(sorted((out / "step-2").iterdir()))
    assert (step2 - exact).abs().max() <= 1.01 / 127.5            # PNG rounding only
    assert (step2 - loop).abs().mean() < 0.02
    grid = png(out / "grid.png")  # 5 rows: t=1..3 and 3 heat maps, under a title and column labels, over D's key
    assert grid.shape[0] == TITLE_HEIGHT + 14 + 5 * 32 + 4 * 2 + 26 and grid.shape[1] >= 6 * 32 + 5 * 2
    tiles = grid[TITLE_HEIGHT + 14:TITLE_HEIGHT + 14 + 32, :6 * 32 + 5 * 2]
    assert np.array_equal(tiles[:, :32], png(out / "step-1" / "000000.png"))
    saved = json.loads((out / "refine.json").read_text())
    assert saved == result and len(saved["d_real_probability"]) == 3
    assert all(0 < s < 1 for s in saved["d_real_probability"])


def test_voxel_refine_starts_from_the_binvox_and_uses_the_latents(ckpt, tmp_path):
    path = ckpt("voxel")
    sample(SampleOptions(path, tmp_path / "s", count=3, steps=1))
    refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=2), warn=lambda m: None)
    read = lambda p: y_up_to_z_up(read_binvox(p)[0])  # noqa: E731  (files stand on y; fal's grids on z)
    given = torch.stack([torch.from_numpy(read(tmp_path / "s" / f"{i:06d}.binvox").astype(np.float32))
                         for i in range(3)])[:, None]
    z = torch.from_numpy(np.load(tmp_path / "s" / "latents.npy"))
    step2 = unroll_in_batches("voxel", path, z, 2, batch_size=16, initial=given)[1]
    for i in range(3):
        assert np.array_equal(read(tmp_path / "r" / "step-1" / f"{i:06d}.binvox"), given[i, 0].numpy() > 0)
        assert np.array_equal(read(tmp_path / "r" / "step-2" / f"{i:06d}.binvox"), step2[i, 0].numpy() > 0.5)
        assert png(tmp_path / "r" / "heatmaps" / "step-2" / f"{i:06d}.png").shape == (16, 16, 3)


def test_translation_samples_carry_their_inputs_and_refine_from_them(ckpt, tmp_path):
    path = ckpt("translation")
    sample(SampleOptions(path, tmp_path / "s", count=3, steps=1))
    assert sorted(p.name for p in (tmp_path / "s" / "inputs").iterdir()) == [f"{i:06d}.png" for i in range(3)]
    result = refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=2), warn=lambda m: None)
    files = ImageFiles(32, 3)
    inputs = files.read([tmp_path / "s" / "inputs" / f"{i:06d}.png" for i in range(3)])
    x1 = files.read([tmp_path / "s" / f"{i:06d}.png" for i in range(3)])
    step2 = unroll_in_batches("translation", path, inputs, 2, batch_size=16, initial=x1)[1]
    assert torch.allclose(files.read(sorted((tmp_path / "r" / "step-2").iterdir())), step2, atol=1.01 / 127.5)
    assert not (tmp_path / "r" / "latents.npy").exists() and result["count"] == 3
    assert tiles_width(png(tmp_path / "r" / "grid.png")) == 5 * 32 + 4 * 2  # input | t=1, 2 | 2 heat maps


def test_translation_outputs_of_another_model_are_matched_to_inputs_by_name(ckpt, tmp_path):
    path = ckpt("translation")
    sample(SampleOptions(path, tmp_path / "s", count=3, steps=1))
    refine(RefineOptions(path, tmp_path / "s", tmp_path / "ours", steps=2), warn=lambda m: None)
    outputs, inputs = tmp_path / "theirs" / "fake", tmp_path / "theirs" / "real"
    outputs.mkdir(parents=True), inputs.mkdir()
    for i, name in enumerate(["c", "a", "b"]):  # other names, other order; inputs as JPEG-free .png, outputs .png
        shutil.copy(tmp_path / "s" / f"{i:06d}.png", outputs / f"{name}.png")
        shutil.copy(tmp_path / "s" / "inputs" / f"{i:06d}.png", inputs / f"{name}.png")
    result = refine(RefineOptions(path, outputs, tmp_path / "r", steps=2, inputs=inputs), warn=lambda m: None)
    assert result["source"] == "translation outputs"
    for i, name in enumerate(["c", "a", "b"]):
        assert np.array_equal(png(tmp_path / "r" / "step-2" / f"{name}.png"),
                              png(tmp_path / "ours" / "step-2" / f"{i:06d}.png"))

    (inputs / "a.png").rename(inputs / "zzz.png")
    with pytest.raises(FalError, match=r"1 in .*fake have no input \(a\) and 1 in .*real have no output \(zzz\)"):
        refine(RefineOptions(path, outputs, tmp_path / "r2", steps=2, inputs=inputs), warn=lambda m: None)
    assert not (tmp_path / "r2").exists()


def test_more_steps_than_trained_is_allowed_with_a_warning(ckpt, tmp_path):
    path = ckpt("toy")
    sample(SampleOptions(path, tmp_path / "s", count=8))
    warnings: list[str] = []
    result = refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=5), warn=warnings.append)
    assert len(result["d_real_probability"]) == 5 and (tmp_path / "r" / "step-5" / "points.npy").is_file()
    assert any("more than the 3 steps the model was trained with" in w for w in warnings)


# --- inversion ---

@pytest.mark.parametrize("task", ["toy", "image", "voxel"])
def test_inversion_reduces_the_reconstruction_error_and_keeps_the_input_as_step_one(ckpt, tmp_path, task):
    path = ckpt(task)
    recipe, G, D, _ = open_checkpoint(path, CPU)
    real = TASKS[task].fixed_batch(recipe, CPU, 4).real       # real data: not something G made
    folder = tmp_path / "plain"
    folder.mkdir()
    if task == "toy":
        np.save(folder / "mine.npy", real.numpy())
        given = folder / "mine.npy"
    elif task == "image":
        ImageFiles(32, 3).write(real, ["w", "x", "y", "z"], folder)
        given = folder
    else:
        for name, grid in zip("wxyz", real[:, 0].numpy()):
            write_binvox(folder / f"{name}.binvox", grid)
        given = folder
    result = refine(RefineOptions(path, given, tmp_path / "r", steps=2, invert_iterations=25),
                    warn=lambda m: None)
    inversion = result["inversion"]
    assert inversion["iterations"] == 25 and inversion["error"] < inversion["error_start"]
    assert np.load(tmp_path / "r" / "latents.npy").shape == (4, recipe.model.latent_dim)
    if task == "image":
        assert np.array_equal(png(tmp_path / "r" / "step-1" / "x.png"), png(folder / "x.png"))
        grid = png(tmp_path / "r" / "grid.png")
        assert tiles_width(grid) == 5 * 32 + 4 * 2  # G(z*) | t=1, 2 | 2 heat maps


def test_eqgan_sa_inputs_carry_their_heatmap_code_and_inversion_keeps_it(ckpt, tmp_path):
    path = ckpt("eqgan_sa")
    sample(SampleOptions(path, tmp_path / "s", count=3, steps=1))
    kept = np.load(tmp_path / "s" / "latents.npy")
    assert kept.shape == (3, 8 + CODE_SIZE)
    refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=2), warn=lambda m: None)
    z = torch.from_numpy(kept)
    step2 = unroll_in_batches("image", path, z, 2, batch_size=16,
                              initial=ImageFiles(32, 3).read(sorted((tmp_path / "s").glob("*.png"))))[1]
    assert torch.allclose(ImageFiles(32, 3).read(sorted((tmp_path / "r" / "step-2").iterdir())), step2,
                          atol=1.01 / 127.5)
    (tmp_path / "s" / "fal-samples.json").unlink()
    result = refine(RefineOptions(path, tmp_path / "s", tmp_path / "i", steps=2, invert_iterations=5),
                    warn=lambda m: None)
    found = np.load(tmp_path / "i" / "latents.npy")
    assert found.shape == (3, 8 + CODE_SIZE) and result["inversion"]["error"] < result["inversion"]["error_start"]
    # Adam moves z only: the codes are the valid ones drawn for the start, not the samples' own.
    start = latents_for(open_checkpoint(path, CPU)[0], 3, INVERT_STREAM)
    assert np.array_equal(found[:, 8:], start[:, 8:].numpy()) and not np.array_equal(found[:, :8], start[:, :8])


def test_samples_without_latents_ask_for_inversion(ckpt, tmp_path):
    path = ckpt("image")
    sample(SampleOptions(path, tmp_path / "s", count=2, steps=1))
    (tmp_path / "s" / "fal-samples.json").unlink()
    with pytest.raises(FalError, match="without latent codes.*--invert-iterations"):
        refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=2), warn=lambda m: None)


# --- bad input: one line, exit code 2, nothing written or overwritten ---

def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1


def test_steps_zero_is_an_error_before_anything_is_read(tmp_path):
    result = cli("refine", "--ckpt", tmp_path / "none.pt", "--steps", 0, "--input", tmp_path, "--out",
                 tmp_path / "r")
    one_line_error(result, "--steps must be >= 1")
    one_line_error(cli("sample", "--ckpt", tmp_path / "none.pt", "--count", 2, "--steps", 0, "--out",
                       tmp_path / "s"), "--steps must be >= 1")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_a_checkpoint_of_another_task_is_named(ckpt, tmp_path):
    sample(SampleOptions(ckpt("voxel"), tmp_path / "vox", count=2, steps=1))
    one_line_error(cli("refine", "--ckpt", ckpt("image"), "--steps", 2, "--input", tmp_path / "vox", "--out",
                       tmp_path / "r"), "samples of task 'voxel', but --ckpt")
    (tmp_path / "vox" / "fal-samples.json").unlink()
    one_line_error(cli("refine", "--ckpt", ckpt("image"), "--steps", 2, "--input", tmp_path / "vox",
                       "--invert-iterations", 2, "--out", tmp_path / "r"),
                   "it holds voxel grids (.binvox); --ckpt is a checkpoint of task 'image'")
    assert not (tmp_path / "r").exists()


def test_an_empty_folder_is_an_error(ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(cli("refine", "--ckpt", ckpt("image"), "--steps", 2, "--input", tmp_path / "empty",
                       "--invert-iterations", 2, "--out", tmp_path / "r"), "empty: no images")
    assert not (tmp_path / "r").exists()


def test_mismatched_names_and_missing_inputs_are_errors(ckpt, tmp_path):
    path = ckpt("translation")
    sample(SampleOptions(path, tmp_path / "s", count=2, steps=1))
    (tmp_path / "out").mkdir()
    shutil.copy(tmp_path / "s" / "000000.png", tmp_path / "out" / "street.png")
    one_line_error(cli("refine", "--ckpt", path, "--steps", 2, "--input", tmp_path / "out", "--out",
                       tmp_path / "r"), "pass --inputs DIR")
    one_line_error(cli("refine", "--ckpt", path, "--steps", 2, "--input", tmp_path / "out", "--inputs",
                       tmp_path / "s" / "inputs", "--out", tmp_path / "r"), "matched by file name")
    assert not (tmp_path / "r").exists()


def test_a_non_empty_out_is_refused_and_left_alone(ckpt, tmp_path):
    path = ckpt("toy")
    sample(SampleOptions(path, tmp_path / "s", count=4))
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line_error(cli("refine", "--ckpt", path, "--steps", 2, "--input", tmp_path / "s", "--out", out),
                   "already exists and is not empty")
    one_line_error(cli("sample", "--ckpt", path, "--count", 2, "--out", out), "already exists and is not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".r.tmp-*"))
    one_line_error(cli("sample", "--ckpt", path, "--count", 2, "--out", out / "notes.txt"), "a file, not a folder")
    assert (out / "notes.txt").read_text() == "mine"


def test_a_judge_or_missing_checkpoint_is_one_line(tmp_path):
    torch.save({"format": "fal-judge", "version": 1, "task": "shapes-classifier"}, tmp_path / "judge.pt")
    (tmp_path / "s").mkdir()
    one_line_error(cli("refine", "--ckpt", tmp_path / "judge.pt", "--steps", 2, "--input", tmp_path / "s",
                       "--out", tmp_path / "r"), "a shapes-classifier judge, not a generator")
    one_line_error(cli("sample", "--ckpt", tmp_path / "none.pt", "--count", 2, "--out", tmp_path / "r"),
                   "no such checkpoint file")


def test_cli_sample_then_refine_end_to_end(ckpt, tmp_path):
    path = ckpt("toy")
    result = cli("sample", "--ckpt", path, "--count", 20, "--out", tmp_path / "s", "--steps", 1)
    assert result.exit_code == 0, result.output
    result = cli("refine", "--ckpt", path, "--steps", 3, "--input", tmp_path / "s", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "t=3:" in result.output and len(json.loads((tmp_path / "r" / "refine.json").read_text())["d_real_probability"]) == 3


def test_samples_record_the_checkpoint_file_even_when_given_its_run_folder(ckpt, tmp_path):
    path = ckpt("toy")
    sample(SampleOptions(path.parent.parent, tmp_path / "s", count=4, steps=1))
    manifest = json.loads((tmp_path / "s" / "fal-samples.json").read_text())
    assert manifest["checkpoint"] == str(path.resolve())
    warnings = []
    refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", steps=2), warn=warnings.append)
    assert not any("made by" in w for w in warnings)  # the same checkpoint, named the other way


def test_voxel_samples_in_one_npy_refine_like_their_binvox_files(ckpt, tmp_path):
    path = ckpt("voxel")
    sample(SampleOptions(path, tmp_path / "bv", count=3, steps=1))
    sample(SampleOptions(path, tmp_path / "np", count=3, steps=1, voxels="npy"))
    grids = np.load(tmp_path / "np" / "voxels.npy")
    files = [y_up_to_z_up(read_binvox(tmp_path / "bv" / f"{i:06d}.binvox")[0]) for i in range(3)]
    assert grids.dtype == np.uint8 and np.array_equal(grids, np.stack(files))  # the same shapes, fal's frame
    assert not list((tmp_path / "np").glob("*.binvox"))
    refine(RefineOptions(path, tmp_path / "bv", tmp_path / "r1", steps=2), warn=lambda m: None)
    refine(RefineOptions(path, tmp_path / "np", tmp_path / "r2", steps=2), warn=lambda m: None)
    for i in range(3):
        name = f"step-2/{i:06d}.binvox"
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes()
    with pytest.raises(FalError, match="--voxels npy is for voxel checkpoints"):
        sample(SampleOptions(ckpt("toy"), tmp_path / "t", count=3, voxels="npy"))
