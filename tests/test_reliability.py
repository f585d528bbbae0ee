"""Reliability (docs/reliability.md): nothing hangs, nothing leaks, nothing is half-written.

Four families, each CI-sized: hostile raw folders and archives prepared under a memory limit and a timeout;
bad command lines, each one line of stderr, exit code 2 and untouched files; a seeded recipe fuzzer; and a
kill -9 / resume loop that must end bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tarfile
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1024 * 2**20   # address space the hostile inputs' subprocess may add to its imports (bombs: 2 GiB)
CASE_TIMEOUT_S = 20           # per hostile input: a hang fails the case instead of the whole suite


# --- builders of hostile inputs ---

def _png(path: Path, size: int = 24) -> None:
    Image.new("RGB", (size, size), (200, 30, 30)).save(path)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (and whose pixel data is missing): cheap to write."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _zeros_deflate(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of `size` zero bytes (size a multiple of 1 MiB), built from one repeated block, and
    its CRC: a 2 GiB member in 2 MB, written in a fraction of a second."""
    block = bytes(2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressor.compress(block)
    compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same bytes every time now
    crc = 0
    for _ in range(size // 2**20):
        crc = zlib.crc32(block, crc)
    return piece * (size // 2**20) + compressor.flush(), crc


def _zip_raw(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip written by hand: (name, deflated data, declared size, crc, mode bits) per member, so that the
    declared sizes can lie."""
    local, central = b"", b""
    for name, data, declared, crc, mode in members:
        encoded = name.encode()
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), declared, len(encoded), 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, 20, 0, 8, 0, 0, crc, len(data), declared,
                               len(encoded), 0, 0, 0, 0, mode << 16, len(local)) + encoded
        local += header + encoded + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(local + central + end)


def _tar_with(path: Path, kind: bytes, name: str = "x.png", mode: str = "w", size: int = 0,
              content: bytes = b"", linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    with tarfile.open(path, mode) as tar:
        tar.addfile(info, __import__("io").BytesIO(content) if size else None)


def _gzip_tar_bomb(path: Path, size: int) -> None:
    """A .tar.gz whose one member holds `size` zero bytes (the tar header is honest, the download small)."""
    header = tarfile.TarInfo("big.png")
    header.size = size
    raw = header.tobuf(format=tarfile.GNU_FORMAT)
    block = bytes(2**20)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = [compressor.compress(raw)]
    for _ in range(size // 2**20):
        out.append(compressor.compress(block))
    out.append(compressor.compress(bytes(1024)) + compressor.flush())
    path.write_bytes(b"".join(out))


def hostile_cases(base: Path) -> list[dict]:
    """(dataset, raw, expectation) of every hostile input; `expect` is "error" or the images that survive."""
    cases: list[dict] = []

    def folder(name: str) -> Path:
        path = base / name
        path.mkdir()
        _png(path / "good.png")
        return path

    def add(label: str, raw: Path, expect, dataset: str = "images", follow: bool = False) -> None:
        cases.append({"label": label, "dataset": dataset, "raw": str(raw), "expect": expect, "follow": follow,
                      "out": str(base / "out" / f"{len(cases):03d}")})

    outside = base / "outside"
    outside.mkdir()
    _png(outside / "secret.png")
    # Raw folders: the good image is kept, the hostile entry skipped (or the whole input refused).
    raw = folder("fifo"); os.mkfifo(raw / "f.png"); add("FIFO in a folder", raw, 1)
    raw = folder("fifo-follow"); os.mkfifo(raw / "f.png"); add("FIFO, links followed", raw, 1, follow=True)
    raw = folder("loop"); (raw / "l1").symlink_to("."); add("symlink loop", raw, 1)
    raw = folder("loop-follow"); (raw / "l1").symlink_to("."); add("symlink loop, followed", raw, 1, follow=True)
    raw = folder("loop2"); (raw / "a").mkdir(); (raw / "a" / "up").symlink_to("..")
    add("loop through a subfolder, followed", raw, 1, follow=True)
    raw = folder("zero"); (raw / "z.png").symlink_to("/dev/zero"); add("link to /dev/zero", raw, 1)
    raw = folder("zero-follow"); (raw / "z.png").symlink_to("/dev/zero")
    add("link to /dev/zero, followed", raw, 1, follow=True)
    raw = folder("null-follow"); (raw / "n.png").symlink_to("/dev/null")
    add("link to /dev/null, followed", raw, 1, follow=True)
    raw = folder("etc"); (raw / "etc").symlink_to("/etc"); add("link to /etc", raw, 1)
    raw = folder("escape"); (raw / "s.png").symlink_to(outside / "secret.png"); add("link to a file outside", raw, 1)
    raw = folder("escape-follow"); (raw / "s.png").symlink_to(outside / "secret.png")
    add("link to a file outside, followed", raw, 2, follow=True)
    raw = folder("dangling"); (raw / "d.png").symlink_to(base / "nowhere.png"); add("dangling link", raw, 1)
    raw = folder("dangling-follow"); (raw / "d.png").symlink_to(base / "nowhere.png")
    add("dangling link, followed", raw, 1, follow=True)
    raw = folder("socket")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(raw / "s.png"))
    finally:
        sock.close()
    add("socket in a folder", raw, 1)
    raw = folder("newline"); _png(raw / "new\nline.png"); add("line break in a file name", raw, 1)
    raw = folder("sparse")
    with open(raw / "huge.png", "wb") as handle:
        handle.truncate(3 * 2**30)  # sparse: 3 GiB that occupy no disk
    add("3 GiB sparse file", raw, "error")
    raw = folder("pixels"); (raw / "big.png").write_bytes(_png_header(12000, 12000)); add("12000² PNG", raw, "error")
    raw = folder("pixels2"); (raw / "big.png").write_bytes(_png_header(100000, 100000))
    add("100000² PNG", raw, "error")
    raw = folder("random"); (raw / "noise.png").write_bytes(np.random.default_rng(0).bytes(4096))
    add("random bytes as a PNG", raw, "error")
    raw = folder("empty"); (raw / "empty.png").write_bytes(b""); add("empty PNG", raw, "error")
    raw = folder("truncated"); (raw / "cut.png").write_bytes((raw / "good.png").read_bytes()[:60])
    add("truncated PNG", raw, "error")
    fifo = base / "raw.fifo"; os.mkfifo(fifo); add("--raw is a FIFO", fifo, "error")
    fifo_zip = base / "raw.zip"; os.mkfifo(fifo_zip); add("--raw is a FIFO named .zip", fifo_zip, "error")
    add("--raw is /dev/zero", Path("/dev/zero"), "error")
    # Archives: bombs by declared size, by a lying declared size, and by their sum; unsafe members.
    data, crc = _zeros_deflate(2 * 2**30)
    _zip_raw(base / "bomb.zip", [("big.png", data, 2 * 2**30, crc, 0o100644)]); add("2 GiB zip bomb", base / "bomb.zip", "error")
    _zip_raw(base / "liar.zip", [("big.png", data, 1000, crc, 0o100644)])
    add("zip bomb declaring 1000 bytes", base / "liar.zip", "error")
    small = zlib.compressobj(9, zlib.DEFLATED, -15)
    tiny = small.compress(b"x") + small.flush()
    _zip_raw(base / "sum.zip", [(f"{i:03d}.png", tiny, 500 * 2**20, 0, 0o100644) for i in range(140)])
    add("zip declaring 68 GiB in all", base / "sum.zip", "error")
    _zip_raw(base / "celeba-bomb.zip", [("img_align_celeba/000001.jpg", data, 2 * 2**30, crc, 0o100644)])
    add("CelebA zip bomb", base / "celeba-bomb.zip", "error", dataset="celeba")
    _zip_raw(base / "link.zip", [("l.png", tiny, 1, zlib.crc32(b"x"), 0o120777)]); add("zip symlink member", base / "link.zip", "error")
    for label, name in (("zip '..' member", "../evil.png"), ("zip absolute member", "/etc/evil.png")):
        path = base / f"{len(cases)}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(name, b"x")
        add(label, path, "error")
    path = base / "newline.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.png", (outside / "secret.png").read_bytes())
        archive.writestr("bad\nname.png", (outside / "secret.png").read_bytes())
    add("zip member with a line break", path, 1)
    path = base / "pixels.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("big.png", _png_header(12000, 12000))
    add("12000² PNG in a zip", path, "error")
    (base / "cut.zip").write_bytes(path.read_bytes()[:40]); add("truncated zip", base / "cut.zip", "error")
    for label, kind, link in (("tar FIFO member", tarfile.FIFOTYPE, ""), ("tar device member", tarfile.CHRTYPE, ""),
                              ("tar symlink member", tarfile.SYMTYPE, "/etc/passwd"),
                              ("tar hard link member", tarfile.LNKTYPE, "/etc/passwd")):
        path = base / f"{len(cases)}.tar"
        _tar_with(path, kind, linkname=link)
        add(label, path, "error")
    path = base / "slip.tar"; _tar_with(path, tarfile.REGTYPE, name="../slip.png", size=1, content=b"x")
    add("tar '..' member", path, "error")
    _gzip_tar_bomb(base / "bomb.tar.gz", 600 * 2**20); add("600 MiB tar.gz bomb", base / "bomb.tar.gz", "error")
    (base / "cut.tar.gz").write_bytes((base / "bomb.tar.gz").read_bytes()[:300])
    add("truncated tar.gz", base / "cut.tar.gz", "error")
    # Voxels: a binvox header claiming a 100000^3 grid, and a FIFO where a model should be.
    for label, name in (("binvox claiming 100000³", "vox-huge"), ("FIFO as a binvox model", "vox-fifo")):
        for model in ("m1", "m2"):  # a class needs two models (one goes to val)
            (base / name / "02691156" / model).mkdir(parents=True)
        path = base / name / "02691156" / "m1" / "model.binvox"
        if "FIFO" in label:
            os.mkfifo(path)
        else:
            path.write_bytes(b"#binvox 1\ndim 100000 100000 100000\ndata\n" + b"\x01\xff" * 8)
        (base / name / "02691156" / "m2" / "model.binvox").write_bytes(
            __import__("falcli.formats.binvox", fromlist=["encode_binvox"]).encode_binvox(np.ones((32,) * 3)))
        add(label, base / name, "error", dataset="shapenet")
    return cases


# The subprocess: every case in one interpreter (start-up is seconds here), under an address-space limit,
# each case under an alarm.
_RUNNER = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    from falcli.errors import FalError
    from falcli.formats.store import load_names
    from falcli.commands.prepare import prepare
    # the limit is headroom over what the imports (torch among them) reserved: what prepare itself may allocate
    size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), size + int(sys.argv[2])))

    def alarm(signum, frame):
        raise TimeoutError("hang")

    signal.signal(signal.SIGALRM, alarm)
    results = []
    for case in json.loads(Path(sys.argv[1]).read_text()):
        warnings = []
        signal.alarm(int(sys.argv[3]))
        try:
            out = prepare(case["dataset"], Path(case["raw"]), Path(case["out"]), size=16, warn=warnings.append,
                          follow_links=case["follow"])
            result = {"outcome": len(load_names(out, "train"))}
        except FalError as error:
            result = {"outcome": "error", "message": str(error)}
        except BaseException as error:
            result = {"outcome": "crash", "message": f"{type(error).__name__}: {error}"}
        signal.alarm(0)
        # VmHWM, not ru_maxrss: the latter keeps the RSS of the forking parent (pytest) from before exec
        peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
        results.append({**case, **result, "warnings": warnings, "peak_mb": peak / 1024})
    print(json.dumps(results))
""")


def test_hostile_raw_inputs_are_refused_or_skipped_in_bounded_memory(tmp_path: Path) -> None:
    cases = hostile_cases(tmp_path)
    assert len(cases) >= 33
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _RUNNER, str(listing), str(MEMORY_LIMIT), str(CASE_TIMEOUT_S)],
                          capture_output=True, text=True, env=env, timeout=CASE_TIMEOUT_S * len(cases))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = [(r["label"], r["expect"], r["outcome"], r.get("message")) for r in results
             if r["outcome"] != r["expect"]]
    assert not wrong
    for r in results:
        assert "\n" not in r.get("message", ""), r  # one line each
        assert len(r["warnings"]) <= 1, r           # at most one line about what was skipped
        assert r["expect"] == "error" or not Path(r["raw"]).is_dir() or r["outcome"] == 2 or r["warnings"], r
        if r["outcome"] == "error":
            assert not Path(r["out"]).exists(), r  # nothing half-written
    assert max(r["peak_mb"] for r in results) - min(r["peak_mb"] for r in results) < MEMORY_LIMIT / 2**20


def test_a_read_is_capped_while_streaming_whatever_the_declared_size(monkeypatch) -> None:
    from falcli.errors import FalError
    from falcli.formats import archive

    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 10_000)
    import io

    assert archive.read_capped(io.BytesIO(b"x" * 10_000), "ok", declared=10) == b"x" * 10_000
    with pytest.raises(FalError, match="over the 0 MiB cap"):
        archive.read_capped(io.BytesIO(b"x" * 10_001), "liar", declared=10)  # the declared size lied
    with pytest.raises(FalError, match="cap of one file"):
        archive.read_capped(io.BytesIO(b""), "declared", declared=10_001)   # refused before reading


def test_prepare_refuses_an_absurd_size(tmp_path: Path) -> None:
    from falcli.errors import FalError
    from falcli.commands.prepare import prepare

    with pytest.raises(FalError, match="--size 1000000: over the largest images size"):
        prepare("images", tmp_path, tmp_path / "out", size=1_000_000)
    assert not (tmp_path / "out").exists()


# --- recipes: validated before anything is built ---

@pytest.mark.parametrize("override, message", [
    ("model.depth=18446744073709551617", "model.depth: 18446744073709551617 is beyond the 64-bit range"),
    ("model.hidden=200000", "model.hidden: 200000 is above 65536"),
    ("model.hidden=60000", "model.hidden=60000 makes G and D"),      # the parameter estimate names the key
    ("model.depth=1000", "model.depth 1000 is above 64"),
    ("train.lr_generator=.nan", "train.lr_generator: nan is not a finite number"),
    ("train.lr_discriminator=.inf", "train.lr_discriminator: inf is not a finite number"),
    ("train.lr_generator=1e400", "is not a finite number"),
    ("train.betas=[2, 3]", "train.betas must both be in [0, 1)"),
    ("train.betas=[0.5, 1.0]", "train.betas must both be in [0, 1)"),
    ("loss.r1_weight=.nan", "loss.r1_weight: nan is not a finite number"),
    ("seed=1180591620717411303424", "seed: 1180591620717411303424 is beyond the 64-bit range"),
    ("seed=-1", "seed -1 is outside 0"),
    ("task=[toy]", "task must be one name, got ['toy']"),
    ("task={a: 1}", "task must be one name"),
    ("train.iterations=" + "9" * 400, "an integer of 400 digits is beyond the 64-bit range"),
])
def test_recipe_values_are_refused_naming_the_key(override: str, message: str) -> None:
    from falcli.resolve import load_recipe
    from falcli.errors import FalError

    with pytest.raises(FalError) as error:
        load_recipe(ROOT / "recipes" / "toy.yaml", [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_non_string_key_and_a_binary_recipe_are_one_line(tmp_path: Path) -> None:
    import torch

    from falcli.resolve import load_recipe
    from falcli.errors import FalError

    (tmp_path / "keys.yaml").write_text("task: toy\n1: 2\n")
    with pytest.raises(FalError, match="key 1 is not a name"):
        load_recipe(tmp_path / "keys.yaml")
    torch.save({"G": torch.zeros(3)}, tmp_path / "model.pt")
    with pytest.raises(FalError, match="not a text file"):
        load_recipe(tmp_path / "model.pt")


def test_a_checkpoint_whose_recipe_cannot_fit_is_refused_before_allocating(tmp_path: Path, toy_recipe) -> None:
    import torch

    from falcli import resolve
    from falcli.core import checkpoint
    from falcli.config import recipe_to_dict
    from falcli.errors import FalError

    stored = recipe_to_dict(toy_recipe())
    stored["model"]["hidden"] = 60000  # 14 G parameters: refused by the estimate, before make_networks
    path = tmp_path / "run" / "checkpoints" / "iter-0000001.pt"
    checkpoint.atomic_save({"format": "fal-checkpoint", "version": 1, "task": "toy", "iteration": 1,
                            "recipe": stored, "G": {}, "D": {}}, path)
    with pytest.raises(FalError, match="model.hidden=60000 makes G and D"):
        resolve.restore(path, torch.device("cpu"))


# --- the memory estimate: parameters, Adam state and one step's activations, before anything is built ---

def test_every_shipped_recipe_has_an_estimate_and_fits_a_small_machine() -> None:
    from falcli.config import shipped_recipes
    from falcli.resolve import load_recipe
    from falcli.judges import JudgeRecipe
    from falcli.nn import budget
    from falcli.tasks import TASKS

    estimated = 0
    for path in shipped_recipes():
        recipe = load_recipe(path)  # accepted at load (the parameter check)
        if isinstance(recipe, JudgeRecipe):
            continue
        found = budget.estimate(recipe, TASKS[recipe.task])
        # cityscapes and nyu_depth too, without their prepared data: from the channels the preparers write
        assert isinstance(found, budget.Estimate), (path.name, found)
        assert found.total_bytes < 8 * 2**30, (path.name, found.describe())  # docs/reliability.md: the largest
        estimated += 1
    assert estimated >= 10


def test_translation_is_estimated_from_the_declared_channels_before_its_data_is_prepared(tmp_path: Path) -> None:
    from falcli.resolve import load_recipe
    from falcli.nn import budget
    from falcli.tasks import TASKS

    task = TASKS["translation"]
    plain = load_recipe(ROOT / "recipes" / "cityscapes.yaml", ["feedback.steps=1", f"data.root={tmp_path}"])
    # pix2pix's unet_256 and 70×70 PatchGAN on 3 → 3 channels (tests/test_task_translation.py counts them built)
    assert budget.parameters(plain, task) == 54_413_955 + 2_768_705
    depth = load_recipe(ROOT / "recipes" / "nyu_depth.yaml", [f"data.root={tmp_path}"])
    first_conv = next(m for m in task.memory_probe(depth)[1].modules() if isinstance(m, __import__("torch").nn.Conv2d))
    assert first_conv.in_channels == 3 + 1  # D sees the RGB input and the one-channel depth
    unknown = load_recipe(ROOT / "recipes" / "cityscapes.yaml", [f"data.root={tmp_path}", "data.direction=sideways"])
    found = budget.estimate(unknown, task)
    assert isinstance(found, str) and found.startswith("skipped:") and "data.direction 'sideways'" in found


def test_the_dry_run_prints_the_estimate_or_why_it_was_skipped(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from falcli.cli import app

    shown = CliRunner().invoke(app, ["train", "toy", "--dry-run", "--device", "cpu"])  # toy's sections need torch
    assert shown.exit_code == 0 and "memory estimate (cpu): 0.07 M parameters" in shown.stdout, shown.output
    # a default-sized recipe of a torch-free task: the dry run stays torch-free and says when it is checked
    light = CliRunner().invoke(app, ["train", "shapes", "--dry-run", "--device", "cpu"])
    assert light.exit_code == 0, light.output
    assert "memory estimate: checked when training starts (--dry-run stays torch-free)" in light.stdout
    wider = CliRunner().invoke(app, ["train", "shapes", "--dry-run", "--device", "cpu", "--set", "model.g_channels=128"])
    assert wider.exit_code == 0 and "memory estimate (cpu): 3.55 M parameters" in wider.stdout, wider.output
    skipped = CliRunner().invoke(app, ["train", "cityscapes", "--dry-run", "--device", "cpu", "--set",
                                       f"data.root={tmp_path}", "--set", "data.direction=sideways", "--set",
                                       "model.generator_channels=128"])
    assert skipped.exit_code == 0 and "memory estimate (cpu): skipped:" in skipped.stdout, skipped.output


def test_a_step_too_large_is_refused_by_the_dry_run_when_torch_is_loaded_and_by_train_always(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from falcli.cli import app

    wide = ["--set", "model.g_channels=128", "--set", "train.batch_size=1000000"]
    refused = CliRunner().invoke(app, ["train", "shapes", "--dry-run", "--device", "cpu", *wide])
    assert refused.exit_code == 2 and "train.batch_size=1000000" in refused.output, refused.output
    light = CliRunner().invoke(app, ["train", "shapes", "--dry-run", "--device", "cpu", "--set",
                                     "train.batch_size=1000000"])
    assert light.exit_code == 0 and "checked when training starts" in light.stdout, light.output
    out = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", "shapes", "--device", "cpu", "--out", str(out), "--set",
                                       "train.batch_size=1000000"])
    assert trained.exit_code == 2 and "train.batch_size=1000000" in trained.output, trained.output
    assert not out.exists()  # refused before anything is written


def test_activations_scale_with_the_batch_and_the_steps_and_the_refusal_names_the_key() -> None:
    from falcli.resolve import load_recipe
    from falcli.errors import FalError
    from falcli.nn import budget
    from falcli.tasks import TASKS

    task = TASKS["image"]
    small, large = (budget.estimate(load_recipe(ROOT / "recipes" / "shapes.yaml", [f"train.batch_size={b}"]), task)
                    for b in (16, 64))
    assert small.parameters == large.parameters
    assert 3.9 < large.activation_bytes / small.activation_bytes < 4.1
    one, many = (budget.estimate(load_recipe(ROOT / "recipes" / "shapes.yaml", [f"feedback.steps={t}"]), task)
                 for t in (2, 20000))  # 20000 steps cost no more to estimate than 2 (steps 2 … T are alike)
    assert 9000 < many.activation_bytes / one.activation_bytes < 20000
    cpu = __import__("torch").device("cpu")
    for override, key in (("train.batch_size=1000000", "train.batch_size=1000000"),
                          ("feedback.steps=20000", "feedback.steps=20000")):
        with pytest.raises(FalError, match=key) as error:
            budget.check_training(load_recipe(ROOT / "recipes" / "shapes.yaml", [override]), task, cpu)
        assert "\n" not in str(error.value) and "to train" in str(error.value)


# The fuzzer: real recipes, mutated at random (seeded), through load and validation in-process. Each must
# end as a Recipe or a one-line FalError; anything else is a traceback a user would see.
FUZZ_MUTATIONS = 1000
_STRANGE = [None, True, 0, -1, 2**64, -2**70, 10**100, 1.5, float("nan"), float("inf"), -float("inf"), "",
            "x" * 300, "nan", "1e999", "ü\n\t", [], [1, "a"], {}, {"a": {"b": 1}}, [[1]], {1: 2}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))


def _mutate(raw: dict, rng) -> dict:
    import copy

    raw = copy.deepcopy(raw)
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _paths(raw) if p]
        path = paths[int(rng.integers(len(paths)))]
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        key, value = path[-1], parent[path[-1]]
        kind = int(rng.integers(8))
        if kind == 0:      # a strange value of another type
            parent[key] = copy.deepcopy(_STRANGE[int(rng.integers(len(_STRANGE)))])
        elif kind == 1:    # a number scaled to the absurd, or its sign flipped
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parent[key] = [-value, value * 10**int(rng.integers(1, 30)), type(value)(0)][int(rng.integers(3))]
            else:
                parent[key] = int(rng.integers(-5, 5))
        elif kind == 2:    # an unknown key
            parent[f"{key}_{int(rng.integers(100))}"] = 1
        elif kind == 3:    # a key dropped
            del parent[key]
        elif kind == 4:    # nesting changed: a value wrapped, or a section flattened
            parent[key] = {"value": value} if rng.random() < 0.5 else [value]
        elif kind == 5:    # a non-string key
            parent[[7, None, True, 1.5][int(rng.integers(4))]] = value
        elif kind == 6:    # a list shortened or lengthened
            parent[key] = list(value)[:-1] if isinstance(value, list) and value else [value] * 3
        else:              # a string for a number, or a number for a string
            parent[key] = str(value) if not isinstance(value, str) else float(len(value))
    return raw


def test_fuzzed_recipes_end_in_a_recipe_or_one_line(tmp_path: Path) -> None:
    import yaml

    from falcli.config import recipe_to_dict
    from falcli.resolve import recipe_from_dict
    from falcli.errors import FalError

    originals = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "recipes").glob("*.yaml"))]
    rng = np.random.default_rng(20190615)
    outcomes = {"recipe": 0, "refused": 0}
    for index in range(FUZZ_MUTATIONS):
        raw = _mutate(originals[index % len(originals)], rng)
        try:
            recipe = recipe_from_dict(raw, source="fuzz")
        except FalError as error:
            assert "\n" not in str(error), (raw, str(error))
            outcomes["refused"] += 1
            continue
        recipe_from_dict(recipe_to_dict(recipe), source="round trip")  # what is accepted is stored and reloaded
        outcomes["recipe"] += 1
    assert outcomes["refused"] > FUZZ_MUTATIONS // 2 and outcomes["recipe"] > 0, outcomes


# --- kill -9 and resume: bit-identical to an uninterrupted run, nothing left over, no line logged twice ---

KILL_POINTS = int(os.environ.get("FAL_RELIABILITY_KILLS", "3"))  # docs/reliability.md: 20 measured once
_RUN = ["model.hidden=16", "model.latent_dim=4", "model.depth=2", "data.points=256", "train.batch_size=32",
        "train.iterations=80", "train.log_every=2", "train.sample_every=0", "train.checkpoint_every=4",
        "train.keep_checkpoints=2", "evaluate.num_samples=64",
        "train.lr_decay_start_fraction=null"]  # as conftest's TINY_TOY, which the reference run adds


def _train_command(run_dir: Path, resume: bool) -> list[str]:
    sets = [arg for item in _RUN for arg in ("--set", item)]
    return [sys.executable, "-m", "falcli", "train", str(ROOT / "recipes" / "toy.yaml"), *sets, "--out",
            str(run_dir), "--device", "cpu"] + (["--resume", "auto"] if resume else [])


def _train_lines(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"kind": "train"' in line]


def _kill_when(process: subprocess.Popen, ready, rng, mid_save: bool) -> str:
    """SIGKILL `process` once `ready()` holds: right away (a save caught mid-way) or after a random wait."""
    import time

    while process.poll() is None:
        if ready(mid_save):
            if not mid_save:
                time.sleep(float(rng.uniform(0, 0.05)))
            process.kill()
            process.wait()
            return "mid-save" if mid_save else "random"
        time.sleep(0.0005)
    return "finished"


def test_kill_and_resume_is_bit_identical_with_no_leftovers(tmp_path: Path, toy_recipe) -> None:
    import torch
    from typer.testing import CliRunner

    from falcli.commands import train
    from falcli.core import checkpoint
    from falcli.cli import app

    reference = train.run(toy_recipe(*_RUN), train.RunOptions(out=tmp_path / "reference", device="cpu"))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(7)
    kills: list[str] = []
    second_writer = None
    while len(kills) < KILL_POINTS:
        started = (run_dir / "checkpoints").is_dir()
        before = len(checkpoint.list_checkpoints(run_dir / "checkpoints"))
        process = subprocess.Popen(_train_command(run_dir, resume=started), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)

        def ready(mid_save: bool) -> bool:
            folder = run_dir / "checkpoints"
            if mid_save:
                return folder.is_dir() and any(".tmp-" in p.name for p in folder.iterdir())
            return len(checkpoint.list_checkpoints(folder)) > before or (before >= 2 and folder.is_dir() and
                                                                          rng.random() < 0.002)

        if second_writer is None:  # while the first writer is alive, a second is refused naming it
            import time

            while process.poll() is None and not (run_dir / "metrics.jsonl").is_file():
                time.sleep(0.005)
            if process.poll() is None:
                second_writer = CliRunner().invoke(app, [a for a in _train_command(run_dir, True)[3:]])
        outcome = _kill_when(process, ready, rng, mid_save=len(kills) % 2 == 0)  # alternately mid-save
        if outcome == "finished":
            break
        kills.append(outcome)
    final = subprocess.run(_train_command(run_dir, resume=True), env=env, capture_output=True, text=True)
    assert final.returncode in (0, 2), final.stderr  # 2: the last kill came after the final checkpoint
    if final.returncode == 2:
        assert "already trained for 80 iterations" in final.stderr

    assert second_writer is not None and second_writer.exit_code == 2
    assert "being written by process" in second_writer.output and "Traceback" not in second_writer.output
    last = checkpoint.checkpoint_name(80)
    expected, got = (torch.load(d / "checkpoints" / last, weights_only=True) for d in (reference, run_dir))
    assert got["iteration"] == 80 and (expected["G_ema"] is None) == (got["G_ema"] is None)
    for key in ("G", "D"):
        for name, tensor in expected[key].items():
            assert torch.equal(tensor, got[key][name]), (key, name)
    for name, state in expected["opt_G"]["state"].items():
        assert all(torch.equal(v, got["opt_G"]["state"][name][k]) for k, v in state.items())
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
    lines = _train_lines(run_dir)
    assert [r["iteration"] for r in lines] == list(range(2, 81, 2))  # each logged once, in order
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rs]  # noqa: E731
    assert strip(lines) == strip(_train_lines(reference))
    print(f"kills: {len(kills)} ({kills.count('mid-save')} mid-save, {kills.count('random')} at random)")
    assert len(kills) == KILL_POINTS, kills


# --- bad command lines: one line of stderr, exit code 2, nothing touched ---

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished tiny run and the odd files the bad inputs point at (the sentinels)."""
    from falcli.commands import train
    from falcli.core import checkpoint
    import yaml

    from falcli.config import recipe_to_dict
    from falcli.resolve import load_recipe

    base = tmp_path_factory.mktemp("world")
    recipe = load_recipe(ROOT / "recipes" / "toy.yaml", ["model.hidden=16", "model.latent_dim=4", "model.depth=2",
                         "data.points=256", "train.batch_size=32", "train.iterations=4", "train.log_every=2",
                         "train.sample_every=0", "train.checkpoint_every=4", "evaluate.num_samples=64"])
    run = train.run(recipe, train.RunOptions(out=base / "run", device="cpu"))
    (base / "afile").write_text("a file, not a folder\n")
    (base / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (base / "list.yaml").write_text("- task: toy\n")
    (base / "syntax.yaml").write_text("task: toy\nmodel: {hidden: [1, 2\n")
    (base / "keys.yaml").write_text("task: toy\n1: 2\n")
    (base / "empty").mkdir()
    (base / "raw").mkdir()
    _png(base / "raw" / "a.png")
    os.mkfifo(base / "fifo")
    stored = recipe_to_dict(recipe)
    stored["model"]["hidden"] = 60000
    checkpoint.atomic_save({"format": "fal-checkpoint", "version": 1, "task": "toy", "iteration": 4,
                            "recipe": stored, "G": {}, "D": {}}, base / "huge" / "checkpoints" / "iter-0000004.pt")
    (base / "huge" / "recipe.yaml").write_text("task: toy\n")
    # Checkpoints that are not what they claim: cut short, empty, and one whose recipe is of another task.
    saved = run / "checkpoints" / "iter-0000004.pt"
    (base / "truncated.pt").write_bytes(saved.read_bytes()[:2000])
    (base / "empty.pt").write_bytes(b"")
    import torch

    payload = torch.load(saved, weights_only=True)
    payload["recipe"], payload["task"] = yaml.safe_load((ROOT / "recipes" / "shapes.yaml").read_text()), "image"
    payload["recipe"]["name"] = "shapes"
    checkpoint.atomic_save(payload, base / "other-task" / "checkpoints" / "iter-0000004.pt")
    (base / "empty.yaml").write_text("")
    np.save(base / "points.npy", np.zeros((64, 2), dtype=np.float32))
    (base / "bad.npy").write_bytes(np.random.default_rng(2).bytes(500))
    (base / "empty.zip").write_bytes(b"")
    return base, run


TOY = str(ROOT / "recipes" / "toy.yaml")
BAD_INPUTS = [  # {w}: the world folder; {run}: its finished run
    ["train", "{w}/no.yaml"], ["train", "{w}/binary.yaml"], ["train", "{run}/checkpoints/iter-0000004.pt"],
    ["train", "{w}/list.yaml"], ["train", "{w}/syntax.yaml"], ["train", "{w}/keys.yaml"], ["train", "{w}/afile"],
    ["train", TOY, "--set", "train.lr_generator=.nan"], ["train", TOY, "--set", "train.betas=[2, 3]"],
    ["train", TOY, "--set", "loss.r1_weight=.nan"], ["train", TOY, "--seed", "1180591620717411303424"],
    ["train", TOY, "--set", "model.depth=18446744073709551617", "--dry-run"], ["train", TOY, "--set", "task=[toy]"],
    ["train", TOY, "--set", "task={a: 1}"], ["train", TOY, "--set", "train.lr_gen=1"], ["train", TOY, "--set", "x"],
    ["train", TOY, "--set", "model.hidden=60000", "--dry-run"], ["train", TOY, "--set", "seed=-1"],
    ["train", TOY, "--set", "train.betas=.nan"], ["train", TOY, "--set", "train.iterations=0"],
    ["train", TOY, "--set", "train.checkpoint_every=7"], ["train", TOY, "--set", "train.batch_size=1e9"],
    ["train", TOY, "--set", "model=3"], ["train", TOY, "--set", "feedback.steps=[1]"],
    ["train", TOY, "--out", "{run}"], ["train", TOY, "--out", "{w}/afile"], ["train", TOY, "--out", "{w}/afile/x"],
    ["train", TOY, "--resume", "{w}/no.pt", "--out", "{w}/new"], ["train", TOY, "--resume", "auto", "--out", "{w}/empty"],
    ["train", TOY, "--device", "banana"], ["train", TOY, "--resume", "{w}/binary.yaml", "--out", "{w}/new"],
    ["train", "{run}/recipe.yaml", "--resume", "auto", "--out", "{run}"],
    ["toy", "{w}/no.yaml"], ["toy", TOY, "--out", "{w}/afile/x", "--quick"], ["toy", TOY, "--set", "data.std=.inf"],
    ["sample", "--ckpt", "{w}/no.pt", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/huge", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/binary.yaml", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "0", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--out", "{run}"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--out", "{w}/afile/x"],
    ["sample", "--ckpt", "{w}/empty", "--count", "2", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--steps", "2", "--input", "{w}/nothing", "--out", "{w}/new"],
    ["refine", "--ckpt", "{w}/huge", "--steps", "2", "--input", "{w}/raw", "--out", "{w}/new"],
    ["evaluate", "banana"], ["evaluate", "toy", "--ckpt", "{w}/no.pt"], ["evaluate", "toy", "--ckpt", "{w}/huge"],
    ["evaluate", "toy", "--ckpt", "{run}", "--json", "{w}/afile/x.json"],
    ["evaluate", "fid", "{w}/nothing", "{w}/nothing2"], ["evaluate", "toy", "{w}/fifo"],
    ["report", "{w}/nothing"], ["report", "{w}/empty"], ["report", "{run}", "--out", "{w}/afile/r.html"],
    ["prepare", "images", "{w}/raw", "--size", "1000000", "--out", "{w}/new"], ["prepare", "banana"],
    ["prepare", "images", "{w}/nothing", "--out", "{w}/new"], ["prepare", "images", "{w}/fifo", "--out", "{w}/new"],
    ["prepare", "images", "{w}/raw", "--out", "{w}/afile/x"], ["prepare", "images", "{w}/raw", "--out", "{run}"],
    ["prepare", "shapes", "--raw", "{w}/raw", "--out", "{w}/new"], ["prepare", "images", "{w}/raw", "--size", "-3"],
    ["ablate", "{w}/no.yaml"], ["ablate", "{w}/binary.yaml"],
    ["train", TOY, "--out", "/proc/fal-run"], ["report", "{run}", "--out", "/dev/full"],   # read-only, disk full
    ["evaluate", "toy", "--ckpt", "{run}", "--json", "/dev/full"], ["toy", TOY, "--out", "/proc/fal", "--quick"],
    ["edit-heatmaps", "--ckpt", "{run}", "--centre=0,0", "--out", "{w}/new.png"],
    # --- memory: a step the machine cannot hold is refused before anything is built ---
    ["train", TOY, "--set", "train.batch_size=100000000", "--dry-run"],
    ["train", TOY, "--set", "train.batch_size=100000000", "--out", "{w}/new"],
    # (shapes' --dry-run at its default sizes stays torch-free: the estimate waits for `fal train`, which refuses)
    ["train", "shapes", "--set", "train.batch_size=1000000", "--out", "{w}/new"],
    ["train", "shapes", "--set", "data.image_size=128", "--set", "train.batch_size=100000", "--out", "{w}/new"],
    # --- train: wrong types, counts, files ---
    ["train", TOY, "--workers", "-1"], ["train", TOY, "--workers", "two"], ["train", TOY, "--seed", "abc"],
    ["train", TOY, "--seed", "-5"], ["train", "{w}/empty.yaml"], ["train", "{w}/empty"], ["train"],
    ["train", TOY, "--resume", "{w}/truncated.pt", "--out", "{w}/new"],
    ["train", TOY, "--resume", "{w}/empty.pt", "--out", "{w}/new"],
    ["train", TOY, "--resume", "{w}/other-task/checkpoints/iter-0000004.pt", "--out", "{w}/new"],
    ["train", TOY, "--resume", "{w}/empty", "--out", "{w}/new"],
    ["train", TOY, "--set", "feedback.steps=0"], ["train", TOY, "--set", "train.batch_size=-4"],
    ["train", TOY, "--set", "feedback.test_steps=-1"], ["train", TOY, "--set", "evaluate.num_samples=many"],
    ["train", TOY, "--device", "cuda:7"], ["train", TOY, "--resume", "auto", "--out", "{w}/afile"],
    ["train", "{w}/\udcffrecipe.yaml"], ["train", TOY, "--bogus"], ["bogus"],
    # --- sample ---
    ["sample", "--ckpt", "{run}", "--count", "-1", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "two", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "2"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--steps", "0", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--steps", "-1", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--batch-size", "0", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/truncated.pt", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/empty.pt", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/other-task", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/afile", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{w}/\udcff.pt", "--count", "2", "--out", "{w}/new"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--out", "/proc/fal-sample"],
    ["sample", "--ckpt", "{run}", "--count", "2", "--device", "banana", "--out", "{w}/new"],
    # --- refine ---
    ["refine", "--ckpt", "{run}", "--steps", "0", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--method", "banana", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--input", "{w}/afile", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--input", "{w}/empty", "--out", "{w}/new"],
    ["refine", "--ckpt", "{w}/truncated.pt", "--out", "{w}/new"],
    ["refine", "--ckpt", "{w}/other-task", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--count", "0", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--count", "-3", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--out", "{run}"],
    ["refine", "--ckpt", "{run}", "--count", "4", "--out", "/proc/fal-refine"],
    ["refine", "--ckpt", "{run}", "--method", "dot-latent", "--lr", "-1", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--method", "gradient", "--iterations", "0", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--method", "drs", "--drs-percentile", "150", "--out", "{w}/new"],
    ["refine", "--ckpt", "{run}", "--batch-size", "0", "--out", "{w}/new"],
    # --- evaluate ---
    ["evaluate", "toy", "--ckpt", "{run}", "--steps", "0"], ["evaluate", "toy", "--ckpt", "{run}", "--num-samples", "0"],
    ["evaluate", "toy", "--ckpt", "{run}", "--num-samples", "-5"], ["evaluate", "toy", "--ckpt", "{w}/truncated.pt"],
    ["evaluate", "toy", "--ckpt", "{w}/other-task"], ["evaluate", "toy", "--ckpt", "{run}", "--json", "{w}/empty"],
    ["evaluate", "fid", "{w}/afile", "{w}/afile"], ["evaluate", "fid", "{w}/empty", "{w}/empty"],
    ["evaluate", "fid", "{w}/raw", "{w}/raw", "--dims", "7"], ["evaluate", "fid", "{w}/raw", "{w}/raw", "--batch-size", "0"],
    ["evaluate", "fid", "{w}/raw", "{w}/raw", "--feature-space", "banana"],
    ["evaluate", "kid", "{w}/raw", "{w}/raw", "--kid-subset-size", "0"],
    ["evaluate", "l1", "{w}/empty", "{w}/raw"], ["evaluate", "psnr", "{w}/raw"],
    ["evaluate", "depth", "{w}/raw", "{w}/raw", "--min-depth", "5", "--max-depth", "1"],
    ["evaluate", "toy", "{w}/binary.yaml", "--dataset", "ring"], ["evaluate", "toy", "{w}/points.npy", "--dataset", "banana"],
    ["evaluate", "toy", "{w}/bad.npy", "--dataset", "ring"], ["evaluate", "all"],
    ["evaluate", "toy", "--ckpt", "{w}/\udcffrun"],
    # --- prepare ---
    ["prepare", "images", "{w}/afile", "--out", "{w}/new"], ["prepare", "images", "{w}/empty", "--out", "{w}/new"],
    ["prepare", "images", "{w}/raw", "--size", "0", "--out", "{w}/new"], ["prepare", "images", "{w}/raw", "--size", "abc"],
    ["prepare", "shapes", "--count", "0", "--out", "{w}/new"], ["prepare", "shapes", "--count", "-1", "--out", "{w}/new"],
    ["prepare", "primitives", "--classes", "banana", "--out", "{w}/new"],
    ["prepare", "images", "{w}/raw", "--out", "/proc/fal-data"], ["prepare", "nyu", "{w}/afile", "--out", "{w}/new"],
    ["prepare", "celeba", "{w}/empty", "--out", "{w}/new"], ["prepare", "cityscapes", "{w}/empty", "--out", "{w}/new"],
    ["prepare", "pix2pix", "{w}/empty", "--out", "{w}/new"], ["prepare", "shapenet", "{w}/empty", "--out", "{w}/new"],
    ["prepare", "images", "{w}/raw", "--raw", "{w}/empty", "--out", "{w}/new"],
    ["prepare", "images", "{w}/\udcffraw", "--out", "{w}/new"], ["prepare", "images", "{w}/empty.zip", "--out", "{w}/new"],
    # --- report, ablate, toy, recipes, edit-heatmaps ---
    ["report", "{w}/afile"], ["report", "{run}", "--out", "{w}/empty"], ["report", "{run}", "--out", "/proc/fal-report.html"],
    ["report", "{w}/\udcffrun"], ["report"],
    ["ablate", TOY, "--seeds", "0"], ["ablate", TOY, "--configs", "banana"], ["ablate", TOY, "--seeds", "abc"],
    ["ablate", "{w}/empty.yaml"],
    ["toy", TOY, "--seeds", "0"], ["toy", "{w}/binary.yaml"], ["toy", "shapes", "--quick", "--out", "{w}/new"],
    ["recipes", "extra"], ["recipes", "--bogus"],
    ["edit-heatmaps", "--ckpt", "{w}/truncated.pt", "--centre=0,0", "--out", "{w}/new.png"],
    ["edit-heatmaps", "--ckpt", "{run}", "--centre=0,0", "--count", "0", "--out", "{w}/new.png"],
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    # the lock's content is the PID of whoever last held it: a refused writer may hold it for a moment
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("args", BAD_INPUTS, ids=[" ".join(a)[:60] for a in BAD_INPUTS])
def test_a_bad_input_is_one_line_exit_2_and_touches_nothing(world, args: list[str]) -> None:
    from typer.testing import CliRunner

    from falcli.cli import app

    base, run = world
    before = _snapshot(base)
    argv = [a.replace("{w}", str(base)).replace("{run}", str(run)) for a in args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "Traceback" not in result.output, (argv, result.exception, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr  # one line on stderr
    assert _snapshot(base) == before                   # sentinels untouched, nothing half-written
    assert not (base / "new").exists() and not (base / "new.png").exists()


def test_random_bytes_after_a_log_are_reported_not_a_traceback(world) -> None:
    from typer.testing import CliRunner

    from falcli.cli import app

    base, run = world
    copy = base / "damaged"
    copy.mkdir()
    for name in ("recipe.yaml", "metrics.jsonl"):
        (copy / name).write_bytes((run / name).read_bytes())
    with open(copy / "metrics.jsonl", "ab") as handle:
        handle.write(np.random.default_rng(1).bytes(3000) + b"\n[1, 2]\n{\"kind\": \"train\", \"iteration\": [1]}\n")
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "unreadable line" in (copy / "report.html").read_text()


def test_the_recipe_sections_load_without_torch() -> None:
    """tasks/sections.py (every task's data/model sections and cross-section checks, what `--dry-run` resolves)
    imports no network code: a check that borrowed a constant from a torch module once pulled torch in."""
    code = "import sys, falcli.tasks.sections, falcli.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stdout + result.stderr
