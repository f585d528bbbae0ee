"""One rule for every judge (falcli/judges/provision.py): one user cache keyed by what the judge was trained on,
trained on demand by commands only, resumable, one trainer at a time, refused up front where it cannot apply;
and a voxel classifier that does not score noise as a shape."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from falcli.cli import app
from falcli.commands import train
from falcli.commands.evaluate.checkpoints import EvaluateOptions, run as evaluate
from falcli.commands.evaluate.fid import fid_command
from falcli.resolve import load_recipe, recipe_from_dict
from falcli.core import checkpoint
from falcli.errors import FalError
from falcli.formats.store import write_dataset
from falcli.judges import provision
from falcli.judges.base import STATE, fit, load, predict
from falcli.judges.run import run_judge
from falcli.judges.voxel_classifier import JUDGE as VOXEL_JUDGE
from falcli.tasks import TASKS
from falcli.tasks.base import JudgeNeed

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
TINY_VOXEL_RUN = [
    "data.resolution=16", "data.primitives_train=4", "data.primitives_val=8", "model.latent_dim=4",
    "model.base_channels=2", "feedback.encoder_channels=2", "feedback.hidden_channels=2", "train.batch_size=2",
    "train.iterations=1", "train.log_every=1", "train.sample_every=0", "train.checkpoint_every=1",
    "evaluate.num_samples=6",
]
VOXEL_NEED = JudgeNeed("judge", "voxel_classifier.yaml", {"data.resolution": 16})


def tiny_voxel_judge(**train_keys):
    return recipe_from_dict({"task": "voxel-classifier", "name": "j",
                             "data": {"resolution": 16, "primitives_train": 8, "primitives_val": 4},
                             "model": {"channels": 2, "depth": 2, "features": 4},
                             "train": {"iterations": 6, "batch_size": 4, "log_every": 1, **train_keys}})


# --- where judges live ---

def test_the_cache_is_one_user_folder_that_env_vars_move(monkeypatch, tmp_path):
    monkeypatch.delenv("FAL_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert provision.cache_root() == tmp_path / "home" / ".cache" / "fal"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert provision.cache_root() == tmp_path / "xdg" / "fal"
    monkeypatch.setenv("FAL_CACHE", str(tmp_path / "mine"))
    assert provision.cache_root() == tmp_path / "mine"
    assert provision.judge_dir(tiny_voxel_judge()).parent == tmp_path / "mine" / "judges"


def test_the_key_changes_with_the_recipe_and_with_the_training_data(tmp_path):
    base = provision.judge_recipe(VOXEL_NEED)
    assert provision.judge_dir(base) == provision.judge_dir(provision.judge_recipe(VOXEL_NEED))  # deterministic
    assert provision.judge_dir(base).name.startswith("voxel-classifier-")
    other_size = provision.judge_recipe(JudgeNeed("judge", "voxel_classifier.yaml", {"data.resolution": 32}))
    assert provision.judge_dir(other_size) != provision.judge_dir(base)
    longer = provision.judge_recipe(JudgeNeed("judge", "voxel_classifier.yaml", {"train.iterations": 7}))
    assert provision.judge_dir(longer) != provision.judge_dir(base)

    def on(folder: Path):
        return provision.judge_recipe(JudgeNeed("judge", "voxel_classifier.yaml",
                                                {"data.source": "prepared", "data.root": str(folder)}))
    for name in ("a", "b"):  # two folders of one name holding the same files are still different data
        write_dataset(tmp_path / name / "shapenet", "voxels", "shapenet",
                      {"train": {"voxels": np.zeros((2, 16, 16, 16), np.uint8), "labels": np.zeros(2, np.int64)}},
                      {"size": 16, "classes": ["airplane"]})
    first = provision.judge_dir(on(tmp_path / "a" / "shapenet"))
    assert first != provision.judge_dir(on(tmp_path / "b" / "shapenet"))
    array = next((tmp_path / "a" / "shapenet").rglob("*.npy"))
    array.write_bytes(array.read_bytes() + b"\0")  # the data prepared again: another judge
    assert provision.judge_dir(on(tmp_path / "a" / "shapenet")) != first


def test_the_same_run_evaluated_from_two_folders_trains_its_judge_once(tmp_path, monkeypatch):
    run_dir = train.run(load_recipe(ROOT / "recipes" / "primitives.yaml", TINY_VOXEL_RUN),
                        train.RunOptions(out=tmp_path / "run", device="cpu"))
    trained = []
    real_fit = provision.fit
    monkeypatch.setattr(provision, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    results = []
    for where in ("one", "two/deeper"):
        (tmp_path / where).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / where)
        results.append(evaluate("voxel-accuracy", EvaluateOptions(ckpt=run_dir, device="cpu",
                                                                  json_path=tmp_path / where / "e.json")))
    assert trained == [1]
    judges = list((provision.cache_root() / "judges").iterdir())
    assert len(judges) == 1 and (judges[0] / "judge.pt").is_file()
    assert results[0].protocol["judge"] == results[1].protocol["judge"] == str(judges[0] / "judge.pt")
    assert results[0].rows == results[1].rows
    assert not (tmp_path / "one" / "runs").exists()  # nothing relative to the working folder


# --- resuming, one trainer at a time ---

class Stop(KeyboardInterrupt):
    pass


def _stop_at(iteration: int):
    def on_progress(done, total, logged):
        if done == iteration:
            raise Stop()
    return on_progress


def test_an_interrupted_judge_continues_and_equals_one_trained_in_one_go(tmp_path, monkeypatch):
    recipe = tiny_voxel_judge()
    whole = fit(VOXEL_JUDGE, recipe, tmp_path / "whole", CPU)
    folder = provision.judge_dir(recipe)
    real_fit = provision.fit
    monkeypatch.setattr(provision, "fit", lambda judge, r, out, device, on_progress:
                        real_fit(judge, r, out, device, _stop_at(3)))
    with pytest.raises(Stop) as stopped:
        provision.provide(recipe, CPU, say=lambda _: None)
    assert (folder / STATE).is_file() and not (folder / "judge.pt").exists()
    assert "next time an evaluation needs it" in stopped.value.resume_hint and "--resume" not in stopped.value.resume_hint
    monkeypatch.setattr(provision, "fit", real_fit)
    said = []
    resumed = provision.provide(recipe, CPU, say=said.append)
    assert "continuing at iteration 3 of 6" in said[0]
    a, b = load(whole, CPU, VOXEL_JUDGE)[0].state_dict(), load(resumed, CPU, VOXEL_JUDGE)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines if line["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert not (folder / STATE).exists()


def test_ctrl_c_in_an_evaluation_says_the_judge_resumes_by_itself(tmp_path, monkeypatch):
    run_dir = train.run(load_recipe(ROOT / "recipes" / "primitives.yaml", TINY_VOXEL_RUN),
                        train.RunOptions(out=tmp_path / "run", device="cpu"))
    real_fit = provision.fit
    monkeypatch.setattr(provision, "fit", lambda judge, r, out, device, on_progress:
                        real_fit(judge, r, out, device, _stop_at(1)))
    result = CliRunner().invoke(app, ["evaluate", "voxel-accuracy", "--ckpt", str(run_dir), "--device", "cpu"])
    assert result.exit_code == 130
    assert "continues from its last checkpoint the next time an evaluation needs it" in result.output
    assert "--resume" not in result.output


def test_fal_train_of_a_judge_resumes_with_resume_auto(tmp_path):
    recipe = tiny_voxel_judge()
    with pytest.raises(Stop):
        run_judge(recipe, tmp_path / "j", "cpu", on_progress=_stop_at(2))
    with pytest.raises(FalError, match="continue its training with --resume auto"):
        run_judge(recipe, tmp_path / "j", "cpu")
    path = run_judge(recipe, tmp_path / "j", "cpu", resume="auto")
    whole = fit(VOXEL_JUDGE, recipe, tmp_path / "whole", CPU)
    a, b = load(whole, CPU, VOXEL_JUDGE)[0].state_dict(), load(path, CPU, VOXEL_JUDGE)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FalError, match="already holds a trained judge"):
        run_judge(recipe, tmp_path / "j", "cpu", resume="auto")


HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.write(descriptor, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    sys.stdin.readline()
""")


def test_a_second_evaluation_waits_for_the_one_training_its_judge(tmp_path, monkeypatch):
    recipe = tiny_voxel_judge()
    trained_elsewhere = fit(VOXEL_JUDGE, recipe, tmp_path / "elsewhere", CPU)
    folder = provision.judge_dir(recipe)
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder / checkpoint.LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(provision, "WAIT_POLL_S", 0.05)
        monkeypatch.setattr(provision, "fit", lambda *a, **k: pytest.fail("trained a judge another process trains"))
        said = []

        def say(message: str) -> None:  # the other process finishes its judge while this one waits
            said.append(message)
            (folder / "judge.pt").write_bytes(trained_elsewhere.read_bytes())
            holder.communicate("done\n", timeout=30)

        assert provision.provide(recipe, CPU, say=say) == folder / "judge.pt"
        assert len(said) == 1 and f"by process {holder.pid}" in said[0] and "waiting for it" in said[0]
    finally:
        if holder.poll() is None:
            holder.kill()


# --- refused up front ---

def test_the_judge_feature_space_on_256_images_is_refused_before_anything_is_written(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((256, 256, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(FalError, match=r"holds 256×256 images; use --feature-space inception"):
        fid_command(tmp_path / "a", tmp_path / "b", feature_space="judge", device="cpu", workers=0)
    assert not any(provision.cache_root().rglob("*"))  # no judge folder, no lock, nothing
    # and `fal evaluate fid` draws no bar before that refusal (its bar starts once the inputs are accepted)
    from falcli.commands.evaluate.checkpoints import EvaluateOptions, run

    drawn = []
    with pytest.raises(FalError, match="256×256"):
        run("fid", EvaluateOptions(a=tmp_path / "a", b=tmp_path / "b", feature_space="judge", device="cpu",
                                   workers=0), lambda *update: drawn.append(update))
    assert drawn == []


def test_a_voxel_run_whose_classes_its_data_lacks_is_refused_before_a_judge_trains(tmp_path):
    root = write_dataset(tmp_path / "sn", "voxels", "shapenet",
                         {"train": {"voxels": np.zeros((2, 16, 16, 16), np.uint8), "labels": np.zeros(2, np.int64)}},
                         {"size": 16, "classes": ["airplane"]})
    recipe = load_recipe(ROOT / "recipes" / "primitives.yaml",
                         TINY_VOXEL_RUN + ["data.source=prepared", f"data.root={root}", "data.classes=[car]"])
    with pytest.raises(FalError, match="'car' is not in"):
        TASKS["voxel"].judge_needs(recipe)
    assert not any(provision.cache_root().rglob("*"))  # no judge folder, no lock, nothing


# --- the voxel classifier does not reward noise ---

@pytest.fixture(scope="module")
def noise_judge(tmp_path_factory):
    """A small voxel classifier with its reject class, trained briefly on the built-in primitives at 16³."""
    recipe = recipe_from_dict({"task": "voxel-classifier", "name": "j",
                               "data": {"resolution": 16, "primitives_train": 64, "primitives_val": 32},
                               "model": {"channels": 4, "depth": 2, "features": 16},
                               "train": {"iterations": 120, "batch_size": 16, "lr": 3e-3, "log_every": 20}})
    path = fit(VOXEL_JUDGE, recipe, tmp_path_factory.mktemp("noise-judge"), CPU)
    net, recipe, payload = load(path, CPU, VOXEL_JUDGE)
    return path, net, recipe, payload


def _accuracy(net, recipe, grids: torch.Tensor) -> float:
    """The metric's accuracy: share assigned to any shape class (the reject class counts for none)."""
    return float((predict(net, grids, CPU) < len(VOXEL_JUDGE.class_names(recipe))).float().mean())


def test_noise_cubes_get_no_accuracy_while_real_shapes_keep_theirs(noise_judge):
    _, net, recipe, payload = noise_judge
    real, truth = VOXEL_JUDGE.load_data(recipe, "val")
    assert float((predict(net, real, CPU) == truth).float().mean()) >= 0.85  # the right class, not just any
    assert payload["val_accuracy"] >= 0.85
    generator = torch.Generator().manual_seed(7)
    uniform = (torch.rand(64, 1, 16, 16, 16, generator=generator) < 0.5).to(torch.uint8)
    sparse = (torch.rand(64, 1, 16, 16, 16, generator=generator) < 0.1).to(torch.uint8)
    salt_and_pepper = real ^ (torch.rand(real.shape, generator=generator) < 0.2).to(torch.uint8)
    assert _accuracy(net, recipe, uniform) <= 0.05
    assert _accuracy(net, recipe, sparse) <= 0.05
    assert _accuracy(net, recipe, salt_and_pepper) <= 0.1
    assert _accuracy(net, recipe, real) >= 0.9


def test_voxel_accuracy_on_noise_files_is_near_zero_and_says_where_they_went(noise_judge, tmp_path):
    path = noise_judge[0]
    grids = (torch.rand(40, 16, 16, 16, generator=torch.Generator().manual_seed(3)) < 0.5).numpy().astype(np.uint8)
    np.save(tmp_path / "noise.npy", grids)
    evaluation = evaluate("voxel-accuracy", EvaluateOptions(a=tmp_path / "noise.npy", judge=path,
                                                            class_name="airplane", device="cpu"))
    (row,) = evaluation.rows
    assert row["accuracy"] <= 0.05 and row["predicted/reject"] >= 0.95


def test_a_judge_without_reject_examples_is_refused():
    with pytest.raises(FalError, match="reject_share must be in"):
        recipe_from_dict({"task": "voxel-classifier", "model": {"reject_share": 0}})


def test_no_judge_is_trained_by_a_task_or_a_metric():
    """Only commands provision judges: the task and metric code never imports judges/provision.py."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("tasks", "metrics")
                 for p in (ROOT / "falcli" / folder).rglob("*.py")
                 if "judges.provision" in p.read_text() or "judges import provision" in p.read_text()]
    assert offenders == []
