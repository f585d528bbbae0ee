"""`feedback.output: latent`: each later step moves G's latent, z_t = z_(t-1) + Δz_t, and draws x_t = G(z_t)
(falcli/core/feedback.py, falcli/nn/spatial_transform.py LatentStep)."""
from __future__ import annotations

import pytest
import torch

from falcli.config import FeedbackConfig
from falcli.core.feedback import feedback_input, make_feedback_modules, unroll
from falcli.errors import FalError
from falcli.tasks import TASKS
from falcli.tasks.image.task import ImageGenerator, ModelConfig as ImageModel, PatchDiscriminator
from falcli.tasks.voxel.task import ModelConfig as VoxelModel, VoxelDiscriminator, VoxelGenerator

LATENT = FeedbackConfig(output="latent")


def _toy(toy_recipe, *overrides):
    recipe = toy_recipe("feedback.output=latent", *overrides)
    G, D = TASKS["toy"].make_networks(recipe)
    return recipe, G, D


def _open_head(G):
    torch.nn.init.normal_(G.feedback.latent.net[-1].weight, std=0.5)


def _image(latent_dim=8):
    model = ImageModel(latent_dim=latent_dim, g_channels=4, d_channels=4)
    G, D = ImageGenerator(model, 16, None), PatchDiscriminator(model, 16)
    G.feedback = make_feedback_modules(LATENT, {0: G.stage_channels[0]}, out_channels=3, cond_channels=0, dims=2,
                                       seed=0, latent_dim=latent_dim)
    return G.eval(), D


def _voxel(latent_dim=8):
    model = VoxelModel(latent_dim=latent_dim, base_channels=4)
    feedback = make_feedback_modules(LATENT, {0: 4}, out_channels=1, cond_channels=0, dims=3, seed=0,
                                     latent_dim=latent_dim)
    return VoxelGenerator(model, 16, feedback), VoxelDiscriminator(model, 16)


def test_latent_mode_builds_a_latent_step_and_no_transforms(toy_recipe):
    _, G, _ = _toy(toy_recipe)
    assert G.feedback.latent is not None and len(G.feedback.transforms) == 0
    G_ast, _ = TASKS["toy"].make_networks(toy_recipe("feedback.output=residual"))
    assert G_ast.feedback.latent is None and len(G_ast.feedback.transforms) > 0


@pytest.mark.parametrize("make, latent", [(_image, 8), (_voxel, 8)])
def test_latent_starts_as_a_copy_of_step_one_on_images_and_voxels(make, latent):
    G, D = make()
    out = unroll(G, D, torch.randn(2, latent), None, 3, LATENT, lambda x: x)
    assert out.samples[0].shape == out.samples[2].shape and out.logits[2].shape == out.logits[0].shape
    assert all(torch.equal(x, out.samples[0]) for x in out.samples[1:])  # Δz = 0 while the head is zero


def test_each_step_draws_g_of_the_moved_latent(toy_recipe):
    recipe, G, D = _toy(toy_recipe)
    _open_head(G)
    z = torch.randn(6, recipe.model.latent_dim)
    out = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x)
    with torch.no_grad():  # by hand: z_2 = z + Δz(f(x_1), z), z_3 = z_2 + Δz(f(x_2), z_2), x_t = G(z_t)
        z2 = G.feedback.move_latent(z, feedback_input(out.logits[0], out.samples[0], None, recipe.feedback))
        z3 = G.feedback.move_latent(z2, feedback_input(out.logits[1], out.samples[1], None, recipe.feedback))
    assert not torch.allclose(z2, z) and not torch.allclose(z3, z2)
    torch.testing.assert_close(out.samples[1], G(z2))
    torch.testing.assert_close(out.samples[2], G(z3))


def test_gradients_reach_the_latent_step_and_the_backbone(toy_recipe):
    recipe, G, D = _toy(toy_recipe)
    out = unroll(G, D, torch.randn(8, recipe.model.latent_dim), None, 3, recipe.feedback, lambda x: x)
    out.logits[-1].sum().backward()
    assert G.feedback.latent.net[-1].weight.grad.abs().sum() > 0  # through D's verdict on G(z_3)
    assert G.out.weight.grad.abs().sum() > 0  # x_3 is drawn by the backbone (feedback_only keeps it out)


def test_refine_starts_from_the_given_sample(toy_recipe):
    recipe, G, D = _toy(toy_recipe)
    initial, z = torch.randn(5, 2), torch.randn(5, recipe.model.latent_dim)
    out = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x, initial=initial)
    assert torch.equal(out.samples[0], initial)
    torch.testing.assert_close(out.samples[1], G(z))  # zero head: step 2 is G's own pass from the latent


def test_eqgan_heatmap_code_is_not_moved():
    from falcli.nn.spatial_transform import LatentStep

    step = LatentStep(feedback_channels=3, latent_dim=4, hidden=8)
    torch.nn.init.normal_(step.net[-1].weight, std=0.5)
    z = torch.randn(5, 4 + 6)  # 4 latent numbers, then a 6-number code that stays as drawn
    moved = step(z, torch.randn(5, 3, 2, 2))
    assert torch.equal(moved[:, 4:], z[:, 4:]) and not torch.allclose(moved[:, :4], z[:, :4])


def test_a_generator_without_a_latent_refuses_latent_output():
    with pytest.raises(FalError, match="feedback.output: latent.*use residual or direct"):
        make_feedback_modules(LATENT, {0: 8}, out_channels=3, cond_channels=3, dims=2, seed=0)


def test_translation_recipe_with_latent_output_is_one_line_error(tmp_path):
    from tests.conftest import ROOT
    from typer.testing import CliRunner

    from falcli.cli import app

    result = CliRunner().invoke(app, ["train", str(ROOT / "recipes" / "streets.yaml"), "--out", str(tmp_path / "r"),
                                      "--set", "feedback.output=latent", "--set", "data.train_count=4",
                                      "--set", "data.val_count=2", "--set", "train.iterations=1"])
    assert result.exit_code != 0 and "feedback.output: latent" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


@pytest.mark.parametrize("recipe_file, overrides", [
    ("shapes.yaml", ["data.image_size=32", "data.shapes_train=8", "data.shapes_val=8", "model.latent_dim=8",
                     "model.g_channels=4", "model.d_channels=4"]),
    ("primitives.yaml", ["data.resolution=16", "data.primitives_train=8", "data.primitives_val=4",
                         "model.latent_dim=8", "model.base_channels=2"]),
])
def test_images_and_voxels_train_with_latent_output(tmp_path, recipe_file, overrides):
    import json

    from falcli.commands import train
    from falcli.core import checkpoint
    from falcli.resolve import load_recipe
    from tests.conftest import ROOT

    recipe = load_recipe(ROOT / "recipes" / recipe_file, overrides + [
        "feedback.output=latent", "feedback.encoder_channels=2", "feedback.hidden_channels=4", "train.batch_size=2",
        "train.iterations=2", "train.log_every=1", "train.checkpoint_every=2", "train.sample_every=0"])
    run_dir = train.run(recipe, train.RunOptions(out=tmp_path / "run", device="cpu"))
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert all(torch.isfinite(torch.tensor(last[f"loss/G/step{t}"])) for t in (1, 2, 3))
    G = checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])["G"]
    assert any(key.startswith("feedback.latent.") for key in G)
    assert not any(key.startswith("feedback.transforms.") for key in G)


def test_sampled_latents_draw_the_written_step_so_dot_continues_it(toy_recipe, tmp_path):
    """fal sample --steps 3 keeps z_3, whose G pass is the written sample: latent DOT then starts from that
    sample exactly and is not warned that it moves the latent of G's first pass."""
    import json

    import numpy as np

    from falcli.commands import train
    from falcli.commands.refine import RefineOptions, refine
    from falcli.commands.sample import SampleOptions, open_checkpoint, sample

    run_dir = train.run(toy_recipe("feedback.output=latent"), train.RunOptions(out=tmp_path / "run", device="cpu"))
    path = sorted((run_dir / "checkpoints").glob("iter-*.pt"))[-1]
    sample(SampleOptions(path, tmp_path / "s", count=16, steps=3, seed=0))
    assert json.loads((tmp_path / "s" / "fal-samples.json").read_text())["latents_step"] == 3
    _, G, _, _ = open_checkpoint(path, torch.device("cpu"))
    z3 = torch.from_numpy(np.load(tmp_path / "s" / "latents.npy"))
    with torch.no_grad():
        torch.testing.assert_close(G(z3, None), torch.from_numpy(np.load(tmp_path / "s" / "points.npy")))
    warned: list[str] = []
    refine(RefineOptions(path, tmp_path / "s", tmp_path / "r", method="dot-latent", steps=2), warn=warned.append)
    assert not any("feedback loop" in line for line in warned), warned
