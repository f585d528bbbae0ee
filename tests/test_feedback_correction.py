"""Feedback as a correction: residual output, the proximity term, and what protects step 1 (falcli/core/feedback.py).

Every option off must be FAL as it was: the reference numbers below were written by the code before these options
existed (/work/main at fede1a9), from the same recipe and seed. They are bit for bit on the CPU that wrote them; on
another (an AMD EPYC's BLAS, 2 December 2026) G's float32 weights round differently in the last bits after 20
iterations (weight sum 4e-9 apart, the losses still equal), so the comparison allows 1e-6 relative — each option
moves them by 5e-3 or more (`test_each_option_changes_training`).
"""
from __future__ import annotations

import json

import pytest
import torch

from falcli.commands import toy_experiment, train
from falcli.core import checkpoint
from falcli.config import FeedbackConfig
from falcli.core.feedback import Unrolled, diversity_loss, proximity_loss, proximity_weights, unroll
from falcli.tasks import TASKS
from falcli.tasks.image.task import ImageGenerator, ModelConfig as ImageModel
from falcli.tasks.translation.nets import UNetGenerator
from falcli.tasks.voxel.task import ModelConfig as VoxelModel, VoxelGenerator

# The toy recipe shrunk to a 20-iteration run.
SMALL = ["data.points=512", "train.iterations=20", "train.batch_size=64", "train.log_every=10",
         "train.checkpoint_every=20", "train.sample_every=0", "model.hidden=32"]
# The toy recipe as it was then (its defaults have since changed), with every new option at its default.
REFERENCE = SMALL + ["train.lr_decay_start_fraction=null", "train.betas=[0.5,0.999]", "feedback.output=direct",
                     "feedback.proximity_weight=0", "feedback.later_steps_train=all", "feedback.discriminate=all"]
# (loss/G, loss/D, loss/G/step3) at iterations 10 and 20, and the sum of G's weights after 20, before the options.
REFERENCE_LOSSES = [(2.2113101482391357, 1.3627625703811646, 0.7365497350692749),
                    (2.1636970043182373, 1.3305952548980713, 0.7123591899871826)]
REFERENCE_WEIGHT_SUM = 96.17373530623445
SAME = 1e-6  # relative: another CPU's BLAS rounds the last bits differently (module docstring)


def _toy_recipe(overrides):
    from falcli.resolve import load_recipe
    from tests.conftest import ROOT

    return load_recipe(ROOT / "recipes" / "toy.yaml", overrides)


def _run_toy(out, overrides):
    recipe = _toy_recipe(overrides)
    with torch.random.fork_rng(devices=[]):
        return train.run(recipe, train.RunOptions(out=out, device="cpu"))


def _trained(tmp_path, overrides):
    run_dir = _run_toy(tmp_path / "run", REFERENCE + overrides)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["loss/G"], r["loss/D"], r["loss/G/step3"]) for r in lines if r["kind"] == "train"]
    G = checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])["G"]
    return losses, float(sum(v.double().sum() for v in G.values()))


@pytest.mark.parametrize("overrides", [[], ["feedback.proximity=uniform", "feedback.later_steps_train=all",
                                            "feedback.lr=null"]])
def test_options_off_train_exactly_as_before(tmp_path, overrides):
    losses, weight_sum = _trained(tmp_path, overrides)
    assert losses == [pytest.approx(row, rel=SAME) for row in REFERENCE_LOSSES]
    assert weight_sum == pytest.approx(REFERENCE_WEIGHT_SUM, rel=SAME)


def test_each_option_changes_training(tmp_path):
    """The reference is sensitive: each option moves the losses away from it (so the test above can fail)."""
    for i, option in enumerate(["feedback.output=residual", "feedback.output=latent", "feedback.proximity_weight=1",
                                "feedback.diversity_weight=1", "feedback.later_steps_train=feedback_only",
                                "feedback.lr=1e-2"]):
        losses, _ = _trained(tmp_path / str(i), [option])
        assert losses != [pytest.approx(row, rel=100 * SAME) for row in REFERENCE_LOSSES], option


def _toy(toy_recipe, *overrides):
    recipe = toy_recipe(*overrides)
    G, D = TASKS["toy"].make_networks(recipe)
    return recipe, G, D


def _open_heads(G):
    for ast in G.feedback.transforms.values():
        torch.nn.init.normal_(ast.gamma.weight, std=0.5)
        torch.nn.init.normal_(ast.beta.weight, std=0.5)


def test_residual_starts_as_a_copy_of_step_one(toy_recipe):
    recipe, G, D = _toy(toy_recipe, "feedback.output=residual", "feedback.steps=4")
    out = unroll(G, D, torch.randn(6, 4), None, 4, recipe.feedback, lambda x: x)
    assert all(torch.equal(x, out.samples[0]) for x in out.samples[1:])  # Δ_t = 0 while the heads are zero


def test_residual_adds_each_correction_to_the_previous_step(toy_recipe):
    recipe, G, D = _toy(toy_recipe, "feedback.output=residual")
    _open_heads(G)
    z = torch.randn(6, 4)
    out = unroll(G, D, z, None, 3, recipe.feedback, lambda x: x)
    direct = unroll(G, D, z, None, 3, FeedbackConfig(), lambda x: x)
    with torch.no_grad():  # by hand: Δ_3 = G(z, feedback of x_2) − G(z); x_3 = x_2 + Δ_3
        from falcli.core.feedback import feedback_input
        delta = G(z, feedback_input(out.logits[1], out.samples[1], None, recipe.feedback)) - G(z)
    torch.testing.assert_close(out.samples[2], out.samples[1] + delta)
    torch.testing.assert_close(out.samples[1], direct.samples[1])  # x_2 = x_1 + G(z, f_1) − G(z) = G(z, f_1)
    assert not torch.allclose(out.samples[2], direct.samples[2])  # … but step 3 builds on x_2, not on x_1


def test_gradients_flow_through_the_residual_path_into_the_feedback_modules(toy_recipe):
    recipe, G, D = _toy(toy_recipe, "feedback.output=residual")
    _open_heads(G)
    out = unroll(G, D, torch.randn(8, 4), None, 3, recipe.feedback, lambda x: x)
    out.logits[-1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.feedback.encoder.parameters())
    assert sum(ast.gamma.weight.grad.abs().sum() for ast in G.feedback.transforms.values()) > 0


def test_later_step_reaches_the_backbone_only_through_the_change(toy_recipe):
    """With zero heads, G(z, f) = G(z): a later step's loss gives the backbone exactly zero gradient."""
    recipe, G, D = _toy(toy_recipe, "feedback.output=residual")
    out = unroll(G, D, torch.randn(8, 4), None, 3, recipe.feedback, lambda x: x)
    out.logits[-1].sum().backward()
    backbone = [p for name, p in G.named_parameters() if not name.startswith("feedback.")]
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in backbone)


def test_residual_refine_starts_from_the_given_sample(toy_recipe):
    recipe, G, D = _toy(toy_recipe, "feedback.output=residual")
    initial = torch.randn(5, 2)
    out = unroll(G, D, torch.randn(5, 4), None, 3, recipe.feedback, lambda x: x, initial=initial)
    assert torch.equal(out.samples[0], initial)
    torch.testing.assert_close(out.samples[2], initial)  # zero heads: no correction


@pytest.mark.parametrize("make, shape", [
    (lambda: ImageGenerator(ImageModel(latent_dim=8, g_channels=4), 16, None), (2, 8)),
    (lambda: VoxelGenerator(VoxelModel(latent_dim=8, base_channels=4), 16, None), (2, 8)),
    (lambda: UNetGenerator(3, 3, 4, 4, "batch", False), (2, 3, 16, 16)),
])
def test_every_generator_exposes_its_pre_activation(make, shape):
    from falcli.core.feedback import OUTPUT_ACTIVATIONS

    G = make().eval()
    x = torch.randn(*shape)
    activation, inverse = OUTPUT_ACTIVATIONS[G.output_activation]
    pre = G(x, None, pre_activation=True)
    torch.testing.assert_close(activation(pre), G(x, None))
    assert pre.min() < 0 or pre.max() > 1  # not already squashed
    torch.testing.assert_close(inverse(activation(pre.clamp(-3, 3))), pre.clamp(-3, 3), atol=2e-3, rtol=1e-3)


def _unrolled(samples, logits):
    return Unrolled([torch.tensor(s) for s in samples], [torch.tensor(m) for m in logits])


def test_proximity_is_off_at_one_step_and_when_weight_is_zero():
    one = _unrolled([[[1.0, 2.0]]], [[[0.0]]])
    assert proximity_loss(one, FeedbackConfig(steps=1, proximity_weight=1.0)) is None
    two = _unrolled([[[0.0, 0.0]], [[3.0, 4.0]]], [[[0.0]], [[0.0]]])
    assert proximity_loss(two, FeedbackConfig(proximity_weight=0.0)) is None


def test_proximity_uniform_closed_form():
    # two points; step 2 moves them by (3, 4) and (0, 1), step 3 by (1, 0) and (0, 0): squared moves 25, 1 | 1, 0
    out = _unrolled([[[0.0, 0.0], [0.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]], [[4.0, 4.0], [0.0, 1.0]]],
                    [[[0.0], [0.0]]] * 3)
    loss = proximity_loss(out, FeedbackConfig(proximity_weight=0.5))
    assert loss.item() == pytest.approx(0.5 * ((25 + 1) / 2 + (1 + 0) / 2))


def test_proximity_spatial_weights_each_sample_by_d_belief_it_was_real():
    logits = [[[2.0], [-1.0]], [[0.5], [0.0]], [[0.0], [0.0]]]
    out = _unrolled([[[0.0, 0.0], [0.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]], [[4.0, 4.0], [0.0, 1.0]]], logits)
    s = torch.sigmoid
    expected = ((25 * s(torch.tensor(2.0)) + 1 * s(torch.tensor(-1.0))) / 2 + (1 * s(torch.tensor(0.5))) / 2)
    loss = proximity_loss(out, FeedbackConfig(proximity_weight=2.0, proximity="spatial"))
    assert loss.item() == pytest.approx(2.0 * expected.item())


def test_proximity_never_moves_the_previous_step():
    previous = torch.zeros(2, 2, requires_grad=True)
    current = torch.ones(2, 2, requires_grad=True)
    out = Unrolled([previous, current], [torch.zeros(2, 1), torch.zeros(2, 1)])
    proximity_loss(out, FeedbackConfig(proximity_weight=1.0)).backward()
    assert previous.grad is None and current.grad.abs().sum() > 0


def test_diversity_closed_form_charges_only_pairs_pulled_together():
    # three points; pairs (i, i−1): (0, 2), (1, 0), (2, 1). Step 1 distances 2, 1, 1 (mean 4/3); step 2 pulls
    # pair (0, 2) to 1 and pushes (1, 0) to 3: only the first is charged, 1 / 3 of a batch, over the mean 4/3.
    step1 = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]
    step2 = [[0.0, 0.0], [3.0, 0.0], [1.0, 0.0]]
    out = _unrolled([step1, step2], [[[0.0]] * 3] * 2)
    d1 = torch.tensor([2.0, 1.0, 1.0])
    d2 = torch.tensor([1.0, 3.0, 2.0])
    expected = torch.relu(d1 - d2).mean() / d1.mean()
    assert diversity_loss(out, FeedbackConfig(steps=2, diversity_weight=2.0)).item() == \
        pytest.approx(2.0 * expected.item())


def test_diversity_is_off_by_default_and_free_for_a_copy_or_a_spread():
    base = torch.randn(8, 2)
    copy = _unrolled([base.tolist(), base.tolist()], [[[0.0]] * 8] * 2)
    assert diversity_loss(copy, FeedbackConfig(steps=2)) is None
    assert diversity_loss(copy, FeedbackConfig(steps=2, diversity_weight=1.0)).item() == 0.0
    spread = _unrolled([base.tolist(), (3 * base).tolist()], [[[0.0]] * 8] * 2)
    assert diversity_loss(spread, FeedbackConfig(steps=2, diversity_weight=1.0)).item() == 0.0


def test_diversity_charges_a_collapse_fully_and_its_gradient_reaches_only_the_later_step():
    previous = torch.randn(6, 1, 4, 4, requires_grad=True)        # images: pairs compared over every pixel
    template = torch.zeros(1, 1, 4, 4).expand(6, 1, 4, 4).clone().requires_grad_(True)
    out = Unrolled([previous, template + 1e-3 * torch.randn(6, 1, 4, 4)], [torch.zeros(6, 1, 2, 2)] * 2)
    loss = diversity_loss(out, FeedbackConfig(steps=2, diversity_weight=1.0))
    assert loss.item() == pytest.approx(1.0, abs=0.01)             # every pair pulled (almost) together
    loss.backward()
    assert previous.grad is None and template.grad.abs().sum() > 0


def test_spatial_weights_are_sigmoid_of_d_resized_to_the_sample():
    logits = torch.tensor([[[[0.0, 2.0], [-2.0, 4.0]]]])  # D's 2×2 map of a 4×4 image
    like = torch.zeros(1, 1, 4, 4)
    weights = proximity_weights(logits, like)
    expected = torch.nn.functional.interpolate(torch.sigmoid(logits), size=(4, 4), mode="bilinear",
                                               align_corners=False)
    assert weights.shape == (1, 1, 4, 4)
    torch.testing.assert_close(weights, expected)
    assert weights[0, 0, 0, 0] == pytest.approx(0.5) and weights[0, 0, 3, 3] == pytest.approx(torch.sigmoid(
        torch.tensor(4.0)).item())


def test_spatial_proximity_on_images_is_weighted_per_pixel():
    previous = torch.zeros(1, 3, 4, 4)
    current = torch.zeros(1, 3, 4, 4)
    current[0, :, 0, 0] = 1.0  # one pixel changes in all 3 channels: squared change 3 there
    logits = torch.full((1, 1, 2, 2), -20.0)  # D calls everything fake (σ ≈ 0) …
    logits_real = torch.full((1, 1, 2, 2), 20.0)  # … or everything real (σ ≈ 1)
    cfg = FeedbackConfig(proximity_weight=1.0, proximity="spatial")
    fake = proximity_loss(Unrolled([previous, current], [logits, logits]), cfg)
    real = proximity_loss(Unrolled([previous, current], [logits_real, logits_real]), cfg)
    assert fake.item() == pytest.approx(0.0, abs=1e-7)
    assert real.item() == pytest.approx(3 / 16, rel=1e-6)


def test_feedback_only_keeps_later_losses_out_of_the_backbone(toy_recipe, tmp_path):
    """One G step with later_steps_train: feedback_only and step 1's weight 0: the backbone does not move."""
    recipe = toy_recipe("feedback.later_steps_train=feedback_only", "feedback.step_weights=[0,1,1]",
                        "train.iterations=1", "train.log_every=1", "train.checkpoint_every=1", "loss.r1_weight=0")
    task = TASKS["toy"]
    G, D = task.make_networks(recipe)
    _open_heads(G)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, torch.device("cpu"))
    step = train.TrainStep(task, recipe, G, D, G, D, opt_G, opt_D, False, torch.device("cpu"))
    real = torch.randn(16, 2)
    step(task.make_batch({"real": real}, recipe, training=True), 0)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("feedback."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("feedback."))


def _trained_weights(tmp_path, overrides):
    run_dir = _run_toy(tmp_path, SMALL + overrides)  # today's recipe, shrunk
    return checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])


@pytest.mark.parametrize("discriminate, same", [("first", True), ("all", False)])
def test_d_on_step_one_trains_d_and_the_backbone_as_the_plain_gan(tmp_path, discriminate, same):
    """discriminate: first with feedback_only (the toy recipe's): D and step 1 follow the plain GAN bit for bit."""
    overrides = ["feedback.later_steps_train=feedback_only", f"feedback.discriminate={discriminate}"]
    plain = _trained_weights(tmp_path / "plain", ["feedback.steps=1"])
    fal = _trained_weights(tmp_path / discriminate, overrides)
    backbone = [k for k in fal["G"] if not k.startswith("feedback.")]
    assert sorted(backbone) == sorted(plain["G"])
    assert all(torch.equal(plain["D"][k], fal["D"][k]) for k in plain["D"]) is same
    assert all(torch.equal(plain["G"][k], fal["G"][k]) for k in backbone) is same
    # … which is what lets `fal toy` take the plain GAN from FAL's step 1 (and only then)
    assert toy_experiment.gan_is_fal_step_one(_toy_recipe(SMALL + overrides)) is same


def test_fal_toy_takes_the_plain_gan_from_fal_step_one(tmp_path):
    """The shipped toy recipe: `fal toy` trains FAL alone, and its GAN rows are those of a plain GAN trained apart."""
    recipe = _toy_recipe(SMALL + ["evaluate.num_samples=300"])
    assert toy_experiment.gan_is_fal_step_one(recipe)
    once = toy_experiment.run(recipe, tmp_path / "once", seeds=2)
    apart = toy_experiment.run(recipe, tmp_path / "apart", seeds=2, share_gan=False)
    assert once["gan_shared"] and not apart["gan_shared"]
    assert not (tmp_path / "once" / "seed0" / "gan").exists() and (tmp_path / "apart" / "seed1" / "gan").is_dir()
    tables = [json.loads((tmp_path / name / "toy_table.json").read_text()) for name in ("once", "apart")]
    assert tables[0]["per_seed"] == tables[1]["per_seed"]  # GAN and FAL, both seeds, every metric to the bit
    assert tables[0]["gan"].startswith("FAL's step 1") and tables[1]["gan"] == "trained"
    assert (tmp_path / "once" / "toy_figure.png").stat().st_size > 10_000


def test_feedback_lr_is_its_own_group_and_decays(toy_recipe):
    recipe = toy_recipe("feedback.lr=5e-5", "train.lr_generator=1e-3", "train.lr_decay_start_fraction=0.5")
    G, D = TASKS["toy"].make_networks(recipe)
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, torch.device("cpu"), recipe.feedback.lr)
    backbone, feedback = opt_G.param_groups
    assert len(feedback["params"]) == len(list(G.feedback.parameters()))
    assert len(backbone["params"]) + len(feedback["params"]) == len(list(G.parameters()))
    train._set_learning_rates(opt_G, opt_D, recipe.train, 9)  # halfway through the decay (6 → 12)
    assert backbone["lr"] == pytest.approx(1e-3 * 0.5) and feedback["lr"] == pytest.approx(5e-5 * 0.5)


@pytest.mark.parametrize("key, value", [("proximity_weight", -1.0), ("diversity_weight", -1.0), ("lr", 0.0)])
def test_bad_feedback_options_are_refused(key, value):
    from falcli.errors import FalError

    with pytest.raises(FalError, match=f"feedback.{key}"):
        FeedbackConfig(**{key: value})


def test_lr_decay_start_fraction_decays_over_the_last_share_and_follows_iterations(toy_recipe):
    from falcli.config import TrainConfig
    from falcli.errors import FalError

    cfg = TrainConfig(iterations=3000, lr_decay_start_fraction=0.5)
    assert cfg.decay_start == 1500
    assert train.learning_rate_factor(cfg, 1499) == 1.0 and train.learning_rate_factor(cfg, 2250) == 0.5
    assert TrainConfig(iterations=12, lr_decay_start_fraction=0.5).decay_start == 6
    with pytest.raises(FalError, match="keep one"):
        TrainConfig(iterations=10, lr_decay_start=5, lr_decay_start_fraction=0.5)
