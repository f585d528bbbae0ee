"""FID/KID math against closed forms and pytorch-fid, the offline Inception, folder reading, and weight lookup."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfi
from torch import nn

from falcli.errors import FalError
from falcli.metrics import fid, weights
from falcli.metrics.weights import find_weights

_SCIPY = tuple(int(part) for part in scipy.__version__.split(".")[:2])


def pytorch_fid_reference(test):
    """pytorch-fid 0.3.0 is the reference, but its sqrtm(disp=False) breaks on SciPy >= 1.18 (why we avoid sqrtm)."""
    test = pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")(test)
    return pytest.mark.skipif(_SCIPY >= (1, 18), reason="pytorch-fid 0.3.0 fails on SciPy >= 1.18")(test)


def _random_stats(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    a = rng.normal(size=(d, d))
    return rng.normal(size=d), a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(0)
    mu1, sigma = _random_stats(rng, 6)
    mu2 = mu1 + np.arange(6)
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.arange(6) @ np.arange(6)), abs=1e-8)


def test_frechet_diagonal_closed_form():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 5.0
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytorch_fid_reference
def test_frechet_matches_pytorch_fid():
    rng = np.random.default_rng(1)
    mu1, s1 = _random_stats(rng, 16)
    mu2, s2 = _random_stats(rng, 16)
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-8)


def test_frechet_shape_mismatch_is_user_error():
    with pytest.raises(FalError, match="--dims"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_identical_near_zero_and_shifted_positive():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same_mean, same_std = fid.kid(a, b, subsets=20, subset_size=100)
    shifted_mean, _ = fid.kid(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same_mean) < 0.05 and same_std >= 0
    assert shifted_mean > 10 * max(abs(same_mean), 0.01)


def test_kid_matches_direct_unbiased_mmd_formula():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(5)) / 25
    mean, std = fid.kid(x, y, subsets=3, subset_size=5)  # every subset is the full set
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std == pytest.approx(0, abs=1e-12)


def test_kid_refuses_fewer_samples_than_the_subset_size_as_torch_fidelity_does():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(8, 3))
    # Before: the subset silently shrank to all 5 samples, every subset the same, kid_std ≈ 0.
    with pytest.raises(FalError, match=r"KID subset size 50 is larger than the samples \(5 and 8\); pass "
                                       r"--kid-subset-size 2 \(at most 5\)"):
        fid.kid(x, y, subsets=3, subset_size=50)
    with pytest.raises(FalError, match="must be >= 2"):
        fid.kid(x, y, subset_size=1)
    _, std = fid.kid(x, y, subsets=10, subset_size=3)
    assert std > 0  # real subsets, a real spread


def test_statistics_and_too_few_samples():
    feats = np.random.default_rng(4).normal(size=(10, 3))
    mu, sigma = fid.statistics(feats)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False))
    assert mu.shape == (3,) and sigma.dtype == np.float64
    with pytest.raises(FalError, match="--dims"):
        fid.statistics(np.zeros((5, 64)))


def test_stats_roundtrip_and_bad_files(tmp_path: Path):
    mu, sigma = _random_stats(np.random.default_rng(5), 4)
    written = fid.save_stats(tmp_path / "ref", mu, sigma)
    assert written.name == "ref.npz"
    with np.load(written) as f:  # pytorch-fid reads exactly these keys
        np.testing.assert_array_equal(f["mu"], mu)
    mu2, sigma2 = fid.load_stats(written)
    np.testing.assert_array_equal(sigma2, sigma)
    np.savez(tmp_path / "nokeys.npz", mean=mu)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    np.save(tmp_path / "plain.npy", mu)
    for name, pattern in [("nokeys.npz", "lacks"), ("junk.npz", "not a readable"), ("plain.npy", "plain .npy"),
                          ("absent.npz", "no such")]:
        with pytest.raises(FalError, match=pattern):
            fid.load_stats(tmp_path / name)


class PoolStub(nn.Module):
    """Deterministic stand-in for Inception: 2x2 average pool of the [0, 1] image → 12 features, pytorch-fid style."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.adaptive_avg_pool2d(x, 2).reshape(len(x), 12, 1, 1)]


def _write_pngs(folder: Path, n: int, seed: int, size: tuple[int, int] = (8, 8)) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytorch_fid_reference
def test_folder_pipeline_matches_pytorch_fid(tmp_path: Path):
    files_a = _write_pngs(tmp_path / "a", 20, seed=0)
    files_b = _write_pngs(tmp_path / "b", 20, seed=1)
    stub = PoolStub()
    stats = [fid.statistics(fid.extract_features(fid.image_folder_batches(tmp_path / n, 7), stub)) for n in "ab"]
    ours = fid.frechet_distance(*stats[0], *stats[1])
    ref = [fid_score.calculate_activation_statistics(f, stub, 7, 12, "cpu", 0) for f in (files_a, files_b)]
    np.testing.assert_allclose(stats[0][1], ref[0][1], rtol=1e-10)
    assert ours == pytest.approx(fid_score.calculate_frechet_distance(*ref[0], *ref[1]), rel=1e-8)


def test_folder_batches_workers_count_and_grey(tmp_path: Path):
    _write_pngs(tmp_path / "a", 5, seed=0)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "a" / "grey.PNG")
    batches = fid.image_folder_batches(tmp_path / "a", batch_size=4, num_workers=1)
    got = list(batches)
    assert batches.count == 6 and len(batches) == 2 == len(got)
    assert got[0].dtype == torch.uint8 and got[0].shape == (4, 3, 8, 8)
    assert (got[1][-1] == 7).all()  # convert("RGB") replicates the grey channel


def test_folder_errors_name_the_files(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FalError, match="no images"):
        fid.image_folder_batches(tmp_path / "empty", 4)
    with pytest.raises(FalError, match="no such folder"):
        fid.image_folder_batches(tmp_path / "missing", 4)
    _write_pngs(tmp_path / "mixed", 2, seed=0)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "mixed" / "odd.png")
    with pytest.raises(FalError, match=r"000\.png.*odd\.png"):
        fid.image_folder_batches(tmp_path / "mixed", 4)
    _write_pngs(tmp_path / "broken", 2, seed=0)
    (tmp_path / "broken" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(FalError, match=r"bad\.jpg"):
        fid.image_folder_batches(tmp_path / "broken", 4)


def test_truncated_image_reported_from_worker(tmp_path: Path):
    (tmp_path / "t").mkdir()
    buf = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf)
    (tmp_path / "t" / "cut.png").write_bytes(buf.read_bytes()[:-200])  # header intact, pixel data cut
    with pytest.raises(FalError, match=r"cut\.png"):
        list(fid.image_folder_batches(tmp_path / "t", 2, num_workers=1))


def test_random_inception_offline_dims64_and_batch_independent():
    model, info = fid.load_inception(dims=64, random_weights=True)
    assert info["official"] is False and info["dims"] == 64 and "299" in info["resize"]
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    whole = fid.extract_features([images], model)
    split = fid.extract_features([images[:2], images[2:]], model)
    assert whole.shape == (4, 64)
    np.testing.assert_allclose(whole, split, rtol=1e-5, atol=1e-6)


def test_offline_inception_equals_pytorch_fid_layout(monkeypatch: pytest.MonkeyPatch):
    trunk = fid._fid_inception_v3(None)
    monkeypatch.setattr(pfi, "fid_inception_v3", lambda: trunk)  # what pytorch-fid would have downloaded
    reference = pfi.InceptionV3([3]).eval()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        ours = fid.OfflineInceptionV3(trunk, 3).eval()(x)[0]
        theirs = reference(x)[0]
    assert ours.shape == (1, 2048, 1, 1) and torch.equal(ours, theirs)


def test_load_inception_rejects_bad_dims_and_bad_file(tmp_path: Path):
    with pytest.raises(FalError, match="--dims"):
        fid.load_inception(dims=100, random_weights=True)
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(FalError, match="not the official"):
        fid.load_inception(dims=64, weights=bogus)
    with pytest.raises(FalError, match="cannot read"):
        fid.load_inception(dims=64, weights=bogus, allow_unofficial=True)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(FalError, match="not a pytorch-fid Inception"):
        fid.load_inception(dims=64, weights=other, allow_unofficial=True)


def _file_with_hash(path: Path, payload: bytes) -> str:
    path.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()[:8]


def test_find_weights_search_order_and_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FAL_WEIGHTS_DIR", raising=False)
    with pytest.raises(FalError) as missing:
        find_weights(weights.INCEPTION_FID.filename, None, "6726825d")
    message = str(missing.value)
    assert weights.INCEPTION_FID.url in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--weights" in message and "\n" not in message

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    prefix = _file_with_hash(hub / "w.pth", b"hub copy")
    assert find_weights("w.pth", None, prefix) == (hub / "w.pth", True)

    env_dir = tmp_path / "env"
    env_dir.mkdir()
    env_prefix = _file_with_hash(env_dir / "w.pth", b"env copy")
    monkeypatch.setenv("FAL_WEIGHTS_DIR", str(env_dir))
    assert find_weights("w.pth", None, env_prefix) == (env_dir / "w.pth", True)
    with pytest.raises(FalError, match="--allow-unofficial-weights"):
        find_weights("w.pth", None, prefix)
    assert find_weights("w.pth", None, prefix, allow_unofficial=True) == (env_dir / "w.pth", False)
    assert find_weights("w.pth", hub / "w.pth", prefix) == (hub / "w.pth", True)
    with pytest.raises(FalError, match="no such weights file"):
        find_weights("w.pth", tmp_path / "nope.pth", prefix)


def test_hash_cache_notices_rewrites(tmp_path: Path):
    path = tmp_path / "w.pth"
    first = _file_with_hash(path, b"one")
    assert weights.sha256_of(path).startswith(first)
    second = _file_with_hash(path, b"two!")  # different size, so the cache key changes even within one mtime tick
    assert weights.sha256_of(path).startswith(second)
