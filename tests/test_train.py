"""The training loop: artefacts, exact resume, atomic checkpoints, divergence, and T=1 = plain GAN."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from falcli import resolve
from falcli.core import checkpoint
from falcli.commands import train
from falcli.errors import FalError
from falcli.tasks import TASKS


def run(recipe, out, **options):
    return train.run(recipe, train.RunOptions(out=out, device="cpu", **options))


def final_state(run_dir):
    return checkpoint.load(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1])


def train_lines(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "train"]


def test_run_writes_recipe_metrics_samples_and_checkpoints(tmp_path, toy_recipe):
    run_dir = run(toy_recipe("train.sample_every=6"), tmp_path / "run")
    assert (run_dir / "recipe.yaml").read_text().startswith("task: toy")
    lines = train_lines(run_dir)
    assert [line["iteration"] for line in lines] == [3, 6, 9, 12]
    assert all(torch.isfinite(torch.tensor(line["loss/G"])) for line in lines)
    assert {"loss/G/step1", "loss/G/step3", "loss/D/real", "loss/D/fake"} <= set(lines[0])
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["iter-0000006.png", "iter-0000012.png"]
    names = [p.name for p in checkpoint.list_checkpoints(run_dir / "checkpoints")]
    assert names == ["iter-0000006.pt", "iter-0000012.pt"]
    payload = torch.load(run_dir / "checkpoints" / names[-1], weights_only=True)
    assert payload["iteration"] == 12 and payload["task"] == "toy"
    assert payload["rng"]["torch"].dtype == torch.uint8


def test_resume_continues_exactly(tmp_path, toy_recipe):
    recipe = toy_recipe("train.ema_decay=0.9")
    straight = run(recipe, tmp_path / "straight")

    interrupted = tmp_path / "interrupted"
    shutil.copytree(straight, interrupted)
    (interrupted / "checkpoints" / "iter-0000012.pt").unlink()   # as if the run died after iteration 6
    (interrupted / "metrics.jsonl").write_text("")
    run(recipe, interrupted, resume="auto")

    a, b = final_state(straight), final_state(interrupted)
    for key in ("G", "D", "G_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resuming"
    after = [line for line in train_lines(straight) if line["iteration"] > 6]
    resumed = train_lines(interrupted)
    for x, y in zip(after, resumed):
        assert {k: v for k, v in x.items() if not k.startswith("time/")} == \
               {k: v for k, v in y.items() if not k.startswith("time/")}


def test_resume_can_extend_training(tmp_path, toy_recipe):
    run_dir = run(toy_recipe(), tmp_path / "run")
    said = []
    train.run(toy_recipe("train.iterations=16"), train.RunOptions(out=run_dir, device="cpu", resume="auto"),
              say=said.append)
    assert final_state(run_dir)["iteration"] == 16
    # the change is named, heard and kept with the run: a resume without the first command's --set is no surprise
    assert len(said) == 1 and "train settings other than the checkpoint's: iterations 16 (was 12)" in said[0]
    assert f"fal train {run_dir / 'recipe.yaml'} --out {run_dir} --resume auto" in said[0]
    notes = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [n["note"] for n in notes if n["kind"] == "note"] == said


def test_a_resume_with_the_runs_own_settings_says_nothing(tmp_path, toy_recipe):
    recipe = toy_recipe()
    run_dir = run(recipe, tmp_path / "run")
    (run_dir / "checkpoints" / "iter-0000012.pt").unlink()   # as if the run died after iteration 6
    said = []
    train.run(recipe, train.RunOptions(out=run_dir, device="cpu", resume="auto"), say=said.append)
    assert said == [] and final_state(run_dir)["iteration"] == 12


def test_steps_one_is_the_plain_gan_bit_for_bit(tmp_path, toy_recipe):
    """Our loop with feedback.steps: 1 against a plain GAN step written out by hand, same seeds."""
    recipe = toy_recipe("feedback.steps=1", "train.iterations=6", "loss.r1_weight=0")  # the hand-written step has no R1
    ours = final_state(run(recipe, tmp_path / "ours"))

    task = TASKS["toy"]
    G, D = task.make_networks(recipe)
    opt_G = torch.optim.Adam(G.parameters(), recipe.train.lr_generator, betas=recipe.train.betas)
    opt_D = torch.optim.Adam(D.parameters(), recipe.train.lr_discriminator, betas=recipe.train.betas)
    from falcli.data.loader import batch_stream
    stream = batch_stream(task.make_dataset(recipe, "train"), recipe.train.batch_size, recipe.seed)
    softplus = torch.nn.functional.softplus
    for _ in range(6):
        real = next(stream)["real"]
        z = torch.randn(len(real), recipe.model.latent_dim)
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


def test_feedback_does_not_change_initial_backbone_or_discriminator(toy_recipe):
    G1, D1 = TASKS["toy"].make_networks(toy_recipe("feedback.steps=1"))
    G3, D3 = TASKS["toy"].make_networks(toy_recipe("feedback.steps=3"))
    plain = G1.state_dict()
    assert all(torch.equal(v, G3.state_dict()[k]) for k, v in plain.items())
    assert all(torch.equal(v, D3.state_dict()[k]) for k, v in D1.state_dict().items())
    assert any(k.startswith("feedback.") for k in G3.state_dict())


def test_existing_run_is_never_overwritten(tmp_path, toy_recipe):
    run_dir = run(toy_recipe(), tmp_path / "run")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(FalError, match="already holds a run; continue it with --resume auto"):
        run(toy_recipe(), run_dir)
    assert before == {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_resume_auto_without_checkpoint(tmp_path, toy_recipe):
    with pytest.raises(FalError, match="--resume auto: no checkpoint in"):
        run(toy_recipe(), tmp_path / "empty", resume="auto")


def test_resume_refuses_other_task_and_changed_model(tmp_path, toy_recipe):
    run_dir = run(toy_recipe(), tmp_path / "run")
    path = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    payload = checkpoint.load(path)
    with pytest.raises(FalError, match="the recipe's `model` differs"):
        run(toy_recipe("model.hidden=16", "train.iterations=20"), run_dir, resume=str(path))
    payload["task"] = "image"
    other = tmp_path / "other.pt"
    checkpoint.atomic_save(payload, other)
    with pytest.raises(FalError, match="a checkpoint of task 'image', but the recipe trains 'toy'"):
        run(toy_recipe("train.iterations=20"), tmp_path / "x", resume=str(other))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, toy_recipe, monkeypatch):
    run_dir = run(toy_recipe(), tmp_path / "run")
    good = checkpoint.list_checkpoints(run_dir / "checkpoints")

    def dying_save(payload, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run(toy_recipe("train.iterations=18"), run_dir, resume="auto")
    monkeypatch.undo()
    assert checkpoint.list_checkpoints(run_dir / "checkpoints") == good
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert checkpoint.load(good[-1])["iteration"] == 12


def test_truncated_newest_checkpoint_is_skipped(tmp_path, toy_recipe):
    run_dir = run(toy_recipe(), tmp_path / "run")
    newest = run_dir / "checkpoints" / "iter-0000012.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(FalError, match="not a readable checkpoint"):
        checkpoint.load(newest)
    path, payload = checkpoint.latest_valid(run_dir / "checkpoints", warn=lambda _: None)
    assert payload["iteration"] == 6
    assert newest.exists()  # reported and skipped, never deleted


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, toy_recipe, monkeypatch):
    task = TASKS["toy"]
    real_losses = task.extra_generator_losses
    calls = {"n": 0}

    def poisoned(unrolled, batch, recipe):
        calls["n"] += 1
        nan = torch.tensor(float("nan")) if calls["n"] > 7 else torch.tensor(0.0)
        return {"poison": nan + 0 * unrolled.samples[-1].sum()}

    monkeypatch.setattr(task, "extra_generator_losses", poisoned)
    with pytest.raises(train.TrainingDiverged, match=r"iteration 9: loss/.* is not finite; the last good "
                                                     r"checkpoint is .*iter-0000006.pt"):
        run(toy_recipe(), tmp_path / "run")
    monkeypatch.setattr(task, "extra_generator_losses", real_losses)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["iter-0000006.pt"]


def test_linear_decay_reaches_zero(toy_recipe):
    cfg = toy_recipe("train.iterations=10", "train.lr_decay_start=5").train
    factors = [train.learning_rate_factor(cfg, i) for i in range(10)]
    assert factors[:6] == [1.0] * 5 + [1.0]
    assert factors[-1] == pytest.approx(0.2) and factors == sorted(factors, reverse=True)


def test_short_toy_run_covers_more_modes_than_at_start(tmp_path, toy_recipe):
    recipe = toy_recipe("data.std=0.1", "data.points=4096", "train.iterations=300",
                        "train.checkpoint_every=300", "train.log_every=100", "model.hidden=64",
                        "train.batch_size=128", "feedback.steps=2")
    task = TASKS["toy"]
    G, D = task.make_networks(recipe)
    before = task.evaluate(G.eval(), D.eval(), recipe, torch.device("cpu"), 1, 1000)[0]["modes_covered"]
    run_dir = run(recipe, tmp_path / "run")
    _, G, D, _, _ = resolve.restore(checkpoint.list_checkpoints(run_dir / "checkpoints")[-1],
                                       torch.device("cpu"))
    after = task.evaluate(G, D, recipe, torch.device("cpu"), 2, 1000)
    assert max(step["modes_covered"] for step in after) > before


def test_method_unsupported_by_task_is_refused_before_writing(tmp_path, toy_recipe):
    with pytest.raises(FalError, match="method.glead: not available for the 'toy' task"):
        run(toy_recipe("method.glead=true"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_restores_its_newest_checkpoint(tmp_path, toy_recipe):
    run_dir = run(toy_recipe(), tmp_path / "run")
    newest = checkpoint.list_checkpoints(run_dir / "checkpoints")[-1]
    _, G_folder, _, _, payload = resolve.restore(run_dir, torch.device("cpu"))
    _, G_file, _, _, _ = resolve.restore(newest, torch.device("cpu"))
    assert payload["iteration"] == 12
    for name, tensor in G_file.state_dict().items():
        assert torch.equal(tensor, G_folder.state_dict()[name])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FalError, match="no checkpoint in"):
        resolve.restore(tmp_path / "empty", torch.device("cpu"))


def test_a_live_writer_is_refused_before_the_data_is_made(tmp_path, toy_recipe, monkeypatch):
    """The shapes data takes ~15 s to render: a second writer hears "being written by process" before that."""
    import fcntl
    import os

    run_dir = run(toy_recipe(), tmp_path / "run")
    descriptor = os.open(run_dir / checkpoint.LOCK_NAME, os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: as another process would hold it
    os.write(descriptor, b"4242\n")

    def no_data(*args):
        raise AssertionError("the data was made before the live writer was refused")

    monkeypatch.setattr(TASKS["toy"], "make_dataset", no_data)
    try:
        with pytest.raises(FalError, match="being written by process 4242"):
            run(toy_recipe("train.iterations=16"), run_dir, resume="auto")
    finally:
        os.close(descriptor)
    assert not list(run_dir.glob(".*.tmp-*"))  # and nothing was created or taken


def test_resume_branches_into_a_new_folder_and_never_overwrites_later_checkpoints(tmp_path, toy_recipe):
    recipe = toy_recipe()
    straight = run(recipe, tmp_path / "straight")
    older = straight / "checkpoints" / "iter-0000006.pt"
    before = {p.name: p.read_bytes() for p in (straight / "checkpoints").iterdir()}
    with pytest.raises(FalError, match="older than .*iter-0000012.pt.*pass --out NEW_FOLDER"):
        run(recipe, None, resume=str(older))
    assert {p.name: p.read_bytes() for p in (straight / "checkpoints").iterdir()} == before

    branch = run(recipe, tmp_path / "branch", resume=str(older))  # a new folder: a run continued from iteration 6
    assert (branch / "recipe.yaml").read_text() == (straight / "recipe.yaml").read_text()
    a, b = final_state(straight), final_state(branch)
    assert all(torch.equal(t, b["G"][k]) for k, t in a["G"].items())
    assert [line["iteration"] for line in train_lines(branch)] == [9, 12]

    loose = tmp_path / "downloads" / "model.pt"
    loose.parent.mkdir()
    loose.write_bytes(older.read_bytes())
    with pytest.raises(FalError, match="not inside a run folder .* pass --out FOLDER"):
        run(recipe, None, resume=str(loose))
    assert sorted(p.name for p in loose.parent.iterdir()) == ["model.pt"]


def test_a_run_that_stopped_before_its_first_checkpoint_says_to_delete_it(tmp_path, toy_recipe):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text("task: toy\n")
    with pytest.raises(FalError, match="stopped before its first checkpoint .* delete that folder"):
        run(toy_recipe(), tmp_path / "run")
    with pytest.raises(FalError, match="no checkpoint in .* after deleting"):
        run(toy_recipe(), tmp_path / "run", resume="auto")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a run")
    with pytest.raises(FalError, match="holds other files and no run"):
        run(toy_recipe(), tmp_path / "mine")
    with pytest.raises(FalError, match="a file, not a folder"):
        run(toy_recipe(), tmp_path / "mine" / "notes.txt")
    with pytest.raises(FalError, match="a file, not a folder"):
        run(toy_recipe(), tmp_path / "mine" / "notes.txt", resume="auto")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not a run"
