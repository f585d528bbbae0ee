"""EqGAN-SA and GLeaD on the image task, their combinations with FAL, and `fal ablate`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from falcli.core import checkpoint
from falcli.commands import train
from falcli.cli import app
from falcli.data.loader import batch_stream
from falcli.errors import FalError
from falcli.core.feedback import unroll
from falcli.methods import eqgan_sa, glead
from falcli.metrics import weights
from falcli.tasks import TASKS
from falcli.tasks.image.task import ImageGenerator, PatchDiscriminator, _dcgan_init

from test_task_image import recipe, tiny_judge  # noqa: F401  (tiny_judge is a fixture)

TASK = TASKS["image"]
EQGAN = ("method.eqgan_sa=true",)
GLEAD = ("method.glead=true", "method.glead_distance=mse")


def final_state(run_dir: Path) -> dict:
    return checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])


def losses(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- EqGAN-SA: heatmaps ---

def test_heatmap_codes_follow_the_official_distribution():
    code = eqgan_sa.fixed_code(20_000, torch.Generator().manual_seed(0))
    parts = eqgan_sa.unpack_code(code)
    assert code.shape == (20_000, eqgan_sa.CODE_SIZE)
    assert parts["centre"].abs().max() <= 0.75 and 0.28 < parts["centre"].std() < 0.34  # N(0, .33²), clipped
    assert 0.5 <= parts["width1"].min() and parts["width1"].max() < 1.0
    assert parts["offsets2"].abs().max() <= 0.4 and parts["offsets3"].abs().max() <= 0.8
    assert parts["offsets3"].abs().max() > 0.75  # uniform over the whole range
    assert 0.1 / 1.4 <= parts["widths2"].min() and parts["widths2"].max() < 1.1 / 1.4
    assert 0.05 <= parts["widths3"].min() and parts["widths3"].max() < 0.55
    torch.manual_seed(1)
    training = eqgan_sa.unpack_code(eqgan_sa.training_code(16, torch.device("cpu")))
    assert (training["width1"] == training["width1"][0]).all()  # one width per minibatch, as the official code
    assert training["centre"].unique().numel() > 16


def test_heatmaps_have_one_two_and_four_centres_where_the_code_puts_them():
    offsets2, offsets3 = [[0.375, 0.0], [-0.375, 0.0]], [[0.75, 0.5], [0.5, -0.75], [-0.5, 0.5], [-0.25, -0.5]]
    code = eqgan_sa.heatmap_code(2, centre=(-0.5, 0.25), width=0.5, offsets2=offsets2, widths2=[0.05, 0.05],
                                 offsets3=offsets3, widths3=[0.02] * 4)
    levels = eqgan_sa.render_heatmaps(code, 33)  # odd size: the grid has a pixel at every multiple of 1/16
    assert [tuple(h.shape) for h in levels] == [(2, 1, 33, 33), (2, 2, 33, 33), (2, 4, 33, 33)]
    for h in levels:
        assert h.min() >= 0.01 and h.max() <= 1.01 + 1e-6
    axis = torch.linspace(-1, 1, 33)
    centre = torch.tensor([-0.5, 0.25])
    sub_centres = [centre + torch.tensor(offsets) for offsets in (offsets2, offsets3)]
    expected = [[centre]] + [list(c) for c in sub_centres]
    for h, centres in zip(levels, expected):
        for channel, where in zip(h[0], centres):
            y, x = divmod(int(channel.argmax()), 33)
            assert torch.allclose(torch.stack([axis[y], axis[x]]), where, atol=1e-5)
    moved = eqgan_sa.render_heatmaps(eqgan_sa.move_centre(code, (0.5, 0.5)), 33)
    y, x = divmod(int(moved[1][0, 0].argmax()), 33)  # sub-centres follow the centre
    assert torch.allclose(torch.stack([axis[y], axis[x]]), torch.tensor([0.875, 0.5]), atol=1e-5)


# --- EqGAN-SA: G's side ---

def test_spatial_encoding_layer_modulates_with_one_channel_maps_and_is_residual():
    layer = eqgan_sa.SpatialEncodingLayer(channels=6, heatmap_channels=32)
    x, features = torch.randn(2, 6, 8, 8), torch.randn(2, 32, 32, 32)
    out = layer(x, features)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert layer.scale.out_channels == layer.shift.out_channels == 1  # broadcast over all channels
    other = layer(x, features + torch.randn_like(features))
    assert not torch.allclose(out, other)  # the heatmap features matter
    torch.nn.init.zeros_(layer.mix.weight), torch.nn.init.zeros_(layer.mix.bias)
    assert torch.equal(layer(x, features), x)  # out = x + 0.1·conv(…)
    assert [eqgan_sa.level_for(s) for s in (4, 8, 16, 32, 64)] == [0, 1, 2, 3, 3]


def test_eqgan_generator_reads_the_code_and_routes_heatmap_features_by_resolution():
    r = recipe(*EQGAN, "feedback.steps=1")
    G, _ = TASK.make_networks(r)
    assert set(G.spatial.layers) == {"1", "2", "3"}  # inputs of stage 1 (4²), stage 2 (8²) and `out` (16²)
    assert [G.spatial.layers[k].shared.in_channels for k in "123"] == [32, 32, 32]
    G64, _ = TASK.make_networks(recipe(*EQGAN, "data.image_size=64", "model.d_map_size=8"))
    assert G64.spatial.layers["4"].shared.in_channels == 96  # 32² input: all three levels
    batch = TASK.make_batch({"images": torch.zeros(3, 32, 32, 3, dtype=torch.uint8)}, r, training=True)
    assert batch.gen_input.shape == (3, 8 + eqgan_sa.CODE_SIZE)
    assert G(batch.gen_input).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="heatmap code"):
        G(batch.gen_input[:, :8])
    plain = TASK.fixed_batch(recipe("feedback.steps=1"), torch.device("cpu"), 5).gen_input
    fixed = TASK.fixed_batch(r, torch.device("cpu"), 5).gen_input
    assert torch.equal(fixed[:, :8], plain)  # the same latents as the plain run of this seed


def test_hand_set_heatmaps_change_the_samples_where_they_are_placed():
    G, _ = TASK.make_networks(recipe(*EQGAN, "feedback.steps=1", "model.g_channels=8"))
    G.eval()
    z = torch.randn(4, 8)
    code = eqgan_sa.heatmap_code(4, centre=(0.0, 0.0))
    base = eqgan_sa.render_heatmaps(code, 32)
    bump = torch.zeros(32, 32)
    bump[:8, :8] = 1.0  # hand-drawn: more of every level in the top-left corner only
    edited = [h + bump for h in base]
    with torch.no_grad():
        before = G(z, heatmaps=base)
        after = G(z, heatmaps=edited)
        assert torch.equal(G(torch.cat([z, code], 1)), before)  # the code renders exactly these heatmaps
    change = (after - before).abs().mean(dim=(0, 1))
    assert change.sum() > 0
    assert change[:12, :12].mean() > 3 * change[20:, 20:].mean()


# --- EqGAN-SA: D's attention and the alignment loss ---

def test_hard_pixel_mining_averages_the_hard_errors_only_when_there_are_several():
    target = torch.zeros(1, 1, 1, 5)
    prediction = torch.tensor([0.1, 0.5, 0.6, 0.05, float("nan")]).reshape(1, 1, 1, 5)
    assert math.isclose(eqgan_sa.hard_l1(prediction, target, 0.25).item(), 0.55, rel_tol=1e-6)
    one_hard = torch.tensor([0.1, 0.5, 0.2, 0.0, 0.2]).reshape(1, 1, 1, 5)
    assert math.isclose(eqgan_sa.hard_l1(one_hard, target, 0.25).item(), 0.2, rel_tol=1e-6)


def test_gradcam_maps_have_image_shape_and_the_alignment_gradient_reaches_g():
    r = recipe(*EQGAN, "feedback.steps=1")
    G, D = TASK.make_networks(r)
    D.requires_grad_(False)  # as in the loop's G step
    gen_input = TASK.make_batch({"images": torch.zeros(3, 32, 32, 3, dtype=torch.uint8)}, r, True).gen_input
    sample = G(gen_input)
    alphas = eqgan_sa.gradcam_weights(D, sample)
    assert [tuple(a.shape) for a in alphas] == [(3, 16, 1, 1), (3, 8, 1, 1), (3, 4, 1, 1)]  # 4², 8², 16² blocks
    assert D.training  # put back in train mode
    _, blocks = D(sample, returns="blocks")
    maps = eqgan_sa.attention_maps(blocks, alphas, 32)
    assert all(m.shape == (3, 1, 32, 32) and 0 <= m.min() and m.max() <= 1 for m in maps)
    loss = eqgan_sa.alignment_loss(D, sample, gen_input[:, 8:], 0.25)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    for module in (G.stages[0], G.spatial.embed, G.spatial.layers):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is None for p in D.parameters())


# --- GLeaD ---

def test_glead_decoder_predicts_g_features_that_g_decodes_into_an_image():
    r = recipe(*GLEAD, "feedback.steps=1")
    G, D = TASK.make_networks(r)
    logits, predicted = D(torch.randn(3, 3, 32, 32), returns="reconstruction")
    assert logits.shape == (3, 1, 4, 4)
    assert predicted.shape == (3, G.stage_channels[1], 8, 8)  # G's features at ¼ of the image
    assert G.decode(predicted).shape == (3, 3, 32, 32)
    assert [type(m) for m in D.decoder.modules()].count(torch.nn.Conv2d) == 2  # linear: 1×1 convs only
    assert all(m.kernel_size == (1, 1) for m in D.decoder.modules() if isinstance(m, torch.nn.Conv2d))


def test_glead_loss_trains_d_only():
    r = recipe(*GLEAD, "feedback.steps=1")
    G, D = TASK.make_networks(r)
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, G(torch.randn(4, 8)).detach()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G.requires_grad_(False)  # as in the loop's D step
    terms = glead.discriminator_terms(r, G, D, real, [fake], None)
    assert set(terms) == {"glead_real", "glead_fake"} and all(torch.isfinite(t) for t in terms.values())
    opt_D = torch.optim.Adam(D.parameters(), 1e-3)
    sum(terms.values()).backward()
    opt_D.step()
    assert all(p.grad is None for p in G.parameters())
    for key, value in G.state_dict().items():  # weights and batch-norm running statistics alike
        assert torch.equal(value, before[key]), key
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.decoder.parameters())
    assert D.net[0].weight.grad.abs().sum() > 0  # the reconstruction task shapes D's own features


def test_glead_without_lpips_weights_falls_back_to_mse_loudly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FAL_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(glead, "_DISTANCES", {})
    assert glead.distance_for("lpips", torch.device("cpu")) is glead.mse
    assert "GLeaD falls back to MSE" in capsys.readouterr().err
    assert glead.distance_for("lpips", torch.device("cpu")) is glead.mse
    assert "falls back" not in capsys.readouterr().err  # said once per process
    run_dir = train.run(recipe("method.glead=true", "train.iterations=1", "train.log_every=1",
                               "train.checkpoint_every=1"), train.RunOptions(out=tmp_path / "run", device="cpu"))
    notes = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(n["kind"] == "note" and "distance is MSE" in n["note"] for n in notes)  # the run keeps the fallback


def test_glead_lpips_is_differentiable_and_a_wrong_trunk_file_is_an_error(monkeypatch, tmp_path):
    import torchvision

    trunk = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path / weights.ALEXNET_LPIPS.filename
    torch.save(trunk, path)
    monkeypatch.setenv("FAL_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(glead, "_DISTANCES", {})
    with pytest.raises(FalError, match="not the official") as error:
        glead.distance_for("lpips", torch.device("cpu"))
    assert "--allow-unofficial-weights" not in str(error.value) and "glead_distance: mse" in str(error.value)
    with pytest.raises(FalError, match="GLeaD's LPIPS"):  # at the start of a run, before its folder is written
        train.run(recipe("method.glead=true"), train.RunOptions(out=tmp_path / "run", device="cpu"))
    assert not (tmp_path / "run").exists()
    spec = weights.WeightsSpec(path.name, "file://test", weights.sha256_of(path)[:8])
    monkeypatch.setattr(weights, "ALEXNET_LPIPS", spec)
    distance = glead.distance_for("lpips", torch.device("cpu"))
    assert distance is not glead.mse
    a = torch.zeros(2, 3, 32, 32, requires_grad=True)
    value = distance(a, torch.rand(2, 3, 32, 32) * 2 - 1)
    value.sum().backward()
    assert value.shape == (2,) and a.grad.abs().sum() > 0


# --- recipes ---

def test_method_recipes_are_checked():
    with pytest.raises(FalError, match="cannot be combined"):
        recipe(*EQGAN, "method.glead=true")
    with pytest.raises(FalError, match="method.eqgan_sa aligns D's attention .* at most 4"):
        recipe(*EQGAN, "model.d_map_size=8")
    with pytest.raises(FalError, match="method.glead decodes .* at most 8"):
        recipe(*GLEAD, "model.d_map_size=16")


# --- in the loop ---

def test_methods_off_is_the_plain_gan_bit_for_bit(tmp_path):
    """The loop with feedback.steps: 1 and methods off against a DCGAN step written out by hand."""
    r = recipe("feedback.steps=1", "train.iterations=4", "train.log_every=2")
    ours = final_state(train.run(r, train.RunOptions(out=tmp_path / "ours", device="cpu")))

    torch.manual_seed(r.seed)  # the networks exactly as the image task built them before the methods existed
    G, D = ImageGenerator(r.model, 32, feedback=None), PatchDiscriminator(r.model, 32)
    G.apply(_dcgan_init), D.apply(_dcgan_init)
    built_G, built_D = TASK.make_networks(r)
    assert G.state_dict().keys() == built_G.state_dict().keys()
    assert D.state_dict().keys() == built_D.state_dict().keys()
    for mine, theirs in ((G, built_G), (D, built_D)):
        for key, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), key

    opt_G = torch.optim.Adam(G.parameters(), r.train.lr_generator, betas=r.train.betas)
    opt_D = torch.optim.Adam(D.parameters(), r.train.lr_discriminator, betas=r.train.betas)
    stream = batch_stream(TASK.make_dataset(r, "train"), r.train.batch_size, r.seed)
    softplus = torch.nn.functional.softplus
    for _ in range(4):
        real = next(stream)["images"].permute(0, 3, 1, 2).float().div(127.5).sub(1)
        flip = torch.rand(len(real)) < 0.5
        real = torch.where(flip[:, None, None, None], real.flip(3), real)
        z = torch.randn(len(real), r.model.latent_dim)
        D.requires_grad_(False)
        fake = G(z)
        loss_G = softplus(-D(fake)).mean()
        opt_G.zero_grad(), loss_G.backward(), opt_G.step()
        D.requires_grad_(True)
        loss_D = softplus(-D(real)).mean() + softplus(D(fake.detach())).mean()
        opt_D.zero_grad(), loss_D.backward(), opt_D.step()
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, ours["G"][name]), name
    for name, tensor in D.state_dict().items():
        assert torch.equal(tensor, ours["D"][name]), name


@pytest.mark.parametrize("switch", [EQGAN, GLEAD], ids=["eqgan_sa", "glead"])
def test_methods_leave_the_backbone_and_discriminator_initialisation_alone(switch):
    G0, D0 = TASK.make_networks(recipe("feedback.steps=3"))
    G1, D1 = TASK.make_networks(recipe("feedback.steps=3", *switch))
    assert set(G0.state_dict()) <= set(G1.state_dict()) and set(D0.state_dict()) <= set(D1.state_dict())
    for small, big in ((G0, G1), (D0, D1)):
        for key, value in small.state_dict().items():
            assert torch.equal(value, big.state_dict()[key]), key


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("switch", [(), EQGAN, GLEAD], ids=["none", "eqgan_sa", "glead"])
def test_every_combination_trains_with_finite_losses(tmp_path, switch, steps):
    r = recipe(f"feedback.steps={steps}", *switch, "train.iterations=3", "train.log_every=3",
               "train.checkpoint_every=3")
    logged = losses(train.run(r, train.RunOptions(out=tmp_path / "run", device="cpu")))[-1]
    assert all(math.isfinite(v) for v in logged.values() if isinstance(v, float))
    assert ("loss/G/align" in logged) == (switch == EQGAN)
    assert ("loss/D/glead_real" in logged and "loss/D/glead_fake" in logged) == (switch == GLEAD)
    assert f"loss/G/step{steps}" in logged


@pytest.mark.parametrize("switch", [EQGAN + ("feedback.steps=2",), GLEAD + ("feedback.steps=1",)],
                         ids=["fal_eqgan_sa", "glead"])
def test_resuming_a_method_run_is_exact(tmp_path, switch):
    r = recipe(*switch, "train.iterations=4", "train.log_every=2", "train.checkpoint_every=2")
    straight = train.run(r, train.RunOptions(out=tmp_path / "straight", device="cpu"))
    half = recipe(*switch, "train.iterations=2", "train.log_every=2", "train.checkpoint_every=2")
    train.run(half, train.RunOptions(out=tmp_path / "resumed", device="cpu"))
    torch.manual_seed(123)  # whatever the process did in between must not matter
    resumed = train.run(r, train.RunOptions(out=tmp_path / "resumed", device="cpu", resume="auto"))
    a, b = final_state(straight), final_state(resumed)
    for part in ("G", "D", "G_ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert losses(straight)[-1]["loss/G"] == losses(resumed)[-1]["loss/G"]
    other = recipe(*switch, "method.eqgan_sa=false", "method.glead=false", "train.iterations=6")
    with pytest.raises(FalError, match="`method` differs"):
        train.run(other, train.RunOptions(out=tmp_path / "resumed", device="cpu", resume="auto"))


# --- fal ablate ---

TINY_ABLATION = ["--set", "data.shapes_train=16", "--set", "data.shapes_val=12", "--set", "model.latent_dim=8",
                 "--set", "model.g_channels=4", "--set", "model.d_channels=4",
                 "--set", "feedback.encoder_channels=4", "--set", "feedback.hidden_channels=4",
                 "--set", "train.batch_size=2", "--set", "train.iterations=2", "--set", "train.log_every=1",
                 "--set", "train.checkpoint_every=1", "--set", "train.sample_every=0",
                 "--set", "evaluate.num_samples=12", "--set", "method.glead_distance=mse"]


def test_ablate_end_to_end_writes_the_tables_and_reuses_finished_runs(tmp_path, tiny_judge):  # noqa: F811
    runner = CliRunner()
    shapes = str(Path(__file__).resolve().parents[1] / "recipes" / "shapes.yaml")
    args = ["ablate", shapes, "--seeds", "2", "--out", str(tmp_path / "abl"), "--device", "cpu", *TINY_ABLATION,
            "--configs", "plain,fal,eqgan_sa,glead,fal_eqgan_sa,fal_glead"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert list(report["summary"]) == ["plain", "fal", "eqgan_sa", "glead", "fal_eqgan_sa", "fal_glead"]
    assert report["metric"] == "fid_judge" and report["seeds"] == [0, 1]
    for config, row in report["summary"].items():
        assert row["steps"] == (3 if config.startswith("fal") else 1) == len(row["per_step"])
        assert math.isfinite(row["last"]["mean"]) and row["last"]["std"] >= 0
        assert len(report["runs"][config]) == 2
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| FAL + GLeaD | 3 |" in table and "fal ablate" in table
    saved = checkpoint.load(tmp_path / "abl" / "eqgan_sa-s1" / "checkpoints" / "iter-0000002.pt")["recipe"]
    assert saved["method"]["eqgan_sa"] and saved["feedback"]["steps"] == 1 and saved["seed"] == 1

    final = tmp_path / "abl" / "fal-s0" / "checkpoints" / "iter-0000002.pt"
    stamp = final.stat().st_mtime_ns
    again = runner.invoke(app, args + ["--configs", "fal"])
    assert again.exit_code == 0, again.output
    assert final.stat().st_mtime_ns == stamp  # reused, not retrained
    # a narrower request rebuilds the tables from every run they held: nothing is dropped
    assert list(json.loads((tmp_path / "abl" / "ablation.json").read_text())["summary"]) == list(report["summary"])

    changed = runner.invoke(app, args + ["--set", "model.d_channels=8", "--configs", "plain"])
    assert changed.exit_code == 2 and "trained with model.d_channels = 4" in changed.output
    (tmp_path / "abl" / "glead-s0" / "checkpoints" / "iter-0000002.pt").unlink()  # as if stopped at iteration 1
    unfinished = runner.invoke(app, args + ["--configs", "glead"])
    assert unfinished.exit_code == 2 and "unfinished run (1 of 2 iterations); pass --resume auto" in unfinished.output
    resumed = runner.invoke(app, args + ["--configs", "glead", "--resume", "auto"])
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "abl" / "glead-s0" / "checkpoints" / "iter-0000002.pt").is_file()


def test_ablate_refuses_unknown_configs_and_a_recipe_without_feedback(tmp_path, monkeypatch):
    from falcli.config import SHIPPED_RECIPES
    from falcli.judges import provision

    monkeypatch.setattr(provision, "RECIPES", SHIPPED_RECIPES)  # the shipped judge: 128 feature dimensions
    runner = CliRunner()
    shapes = str(Path(__file__).resolve().parents[1] / "recipes" / "shapes.yaml")
    result = runner.invoke(app, ["ablate", shapes, "--configs", "plain,stylegan", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown stylegan" in result.output
    result = runner.invoke(app, ["ablate", shapes, "--set", "feedback.steps=1", "--configs", "fal",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2 and "feedback.steps must be >= 2" in result.output
    assert not any(tmp_path.iterdir())
    # what could get no FID is refused before anything trains; the successors are image-task switches
    toy = str(Path(__file__).resolve().parents[1] / "recipes" / "toy.yaml")
    result = runner.invoke(app, ["ablate", toy, "--configs", "eqgan_sa", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "not available for the 'toy' task" in result.output
    result = runner.invoke(app, ["ablate", shapes, "--set", "evaluate.num_samples=12", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "needs more than" in " ".join(result.output.split())
    (tmp_path / "file").write_text("mine")
    result = runner.invoke(app, ["ablate", shapes, "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "a file, not a folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- fal edit-heatmaps ---

def test_edit_heatmaps_writes_one_row_per_centre_and_refuses_bad_input(tmp_path):
    from PIL import Image

    r = recipe(*EQGAN, "feedback.steps=2", "train.iterations=1", "train.log_every=1", "train.checkpoint_every=1")
    ckpt = checkpoint.list_checkpoints(train.run(r, train.RunOptions(out=tmp_path / "run",
                                                                                  device="cpu")) / "checkpoints")[-1]
    runner = CliRunner()
    out = tmp_path / "edit.png"
    args = ["edit-heatmaps", "--ckpt", str(ckpt), "--centre=-0.5,-0.5", "--centre=0.5,0.5", "--count", "3",
            "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    width, height = Image.open(out).size
    assert height > 2 * 32 and height < 3 * 32 and width > 4 * 32 and width < 5 * 32  # 2 rows of heatmap + 3
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(app, args[:3] + ["--centre", "0.5", "--out", str(tmp_path / "b.png")])
    assert bad.exit_code == 2 and "expected y,x" in bad.output
    under_a_file = runner.invoke(app, args[:-3] + [str(out / "x.png"), "--device", "cpu"])
    assert under_a_file.exit_code == 2 and "is a file, not a folder" in under_a_file.output
    plain = recipe("feedback.steps=1", "train.iterations=1", "train.log_every=1", "train.checkpoint_every=1")
    plain_ckpt = checkpoint.list_checkpoints(train.run(plain, train.RunOptions(out=tmp_path / "plain",
                                                                               device="cpu")) / "checkpoints")[-1]
    result = runner.invoke(app, ["edit-heatmaps", "--ckpt", str(plain_ckpt), "--centre", "0,0",
                                 "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "not an EqGAN-SA run" in result.output
