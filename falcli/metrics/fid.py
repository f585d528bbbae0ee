"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) with pytorch-fid's Inception, fully offline.

Feature extraction follows pytorch-fid 0.3.0 exactly (ToTensor scaling, bilinear resize to 299, FID Inception);
the Frechet distance avoids `scipy.linalg.sqrtm`, whose `disp` argument pytorch-fid relies on and SciPy 1.18 removed.
"""
from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from pytorch_fid import inception as pfi
from torch import nn
from torch.utils.data import DataLoader, Dataset

from falcli.errors import FalError
from falcli.metrics.weights import INCEPTION_FID, find_weights, sha256_of

FID_DIMS = tuple(pfi.InceptionV3.BLOCK_INDEX_BY_DIM)
IMAGE_EXTENSIONS = frozenset({"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"})
RESIZE_PROTOCOL = "bilinear to 299, as pytorch-fid"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, S1) and N(mu2, S2); mu (d,), sigma (d, d).

    d² = ||mu1 - mu2||² + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))   (Dowson & Landau 1982; FID, Heusel et al. 2017).
    S1 S2 is similar to the PSD matrix S1^½ S2 S1^½, so Tr(sqrt(S1 S2)) = Σ_i sqrt(λ_i(S1 S2)); eigenvalues are
    taken in float64 with tiny negative/imaginary round-off clipped: Σ sqrt(max(Re λ_i, 0)).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise FalError(
            f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}; "
            "compute both sides with the same --dims"
        )
    if not all(np.isfinite(x).all() for x in (mu1, mu2, sigma1, sigma2)):
        raise FalError("FID statistics contain NaN or inf; recompute them (were features extracted from empty images?)")
    diff = mu1 - mu2
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2)
    tr_covmean = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³; x, y (m, d)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(
    feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018); feats (N, d), (M, d) → (mean, std) over subsets.

    Each subset draws subset_size rows from each side without replacement and computes the unbiased MMD² with
    k(x, y) = (x·y / d + 1)³, as torch-fidelity and clean-fid do; std uses ddof=0 like torch-fidelity. Fewer
    samples than subset_size on a side is refused, as torch-fidelity refuses it: every subset would then be the
    whole set and kid_std a meaningless 0 (`check_kid_counts` says so before any features are extracted).
    """
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise FalError(f"KID features do not match: {a.shape} vs {b.shape}; extract both with the same --dims")
    check_kid_counts(len(a), len(b), subset_size)
    m = subset_size
    if subsets < 1:
        raise FalError(f"KID needs at least one subset, got subsets={subsets}")
    rng = np.random.default_rng(seed)
    mmds = np.array(
        [
            _mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
            for _ in range(subsets)
        ]
    )
    return float(mmds.mean()), float(mmds.std())


def check_kid_counts(n_a: int, n_b: int, subset_size: int) -> None:
    """torch-fidelity's rule: each side needs at least subset_size samples (and a subset at least 2)."""
    if subset_size < 2:
        raise FalError(f"--kid-subset-size must be >= 2 (the unbiased MMD² needs pairs), got {subset_size}")
    if min(n_a, n_b) < subset_size:
        raise FalError(f"KID subset size {subset_size} is larger than the samples ({n_a} and {n_b}); pass "
                       f"--kid-subset-size {max(2, min(n_a, n_b) // 2)} (at most {min(n_a, n_b)}) or use more "
                       f"images")


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of features (N, d) in float64, as pytorch-fid (np.cov, rowvar=False)."""
    feats = np.asarray(features, np.float64)
    if feats.ndim != 2:
        raise FalError(f"features must be (N, dims), got shape {feats.shape}")
    n, d = feats.shape
    if n <= d:  # n points span at most n − 1 dimensions
        raise FalError(
            f"{n} samples for {d}-dim features gives a singular covariance; use more images "
            f"(>= {d + 1}) or a smaller --dims ({'/'.join(map(str, FID_DIMS))})"
        )
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def save_stats(path: Path, mu: np.ndarray, sigma: np.ndarray, label: str | None = None) -> Path:
    """Write pytorch-fid compatible statistics (`np.savez_compressed`, keys mu, sigma); returns the written path.

    `label`, when given, is kept as an extra key `fal_label` (pytorch-fid reads only mu and sigma), so that a
    value computed later from these statistics still says whether it is comparable. numpy appends `.npz` when
    missing, so the returned path is the one actually on disk.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"fal_label": np.array(label)} if label else {}
    np.savez_compressed(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), **extra)
    return path


def stats_label(path: Path) -> str | None:
    """The comparability label `save_stats` kept with the statistics, if any."""
    with np.load(path, allow_pickle=False) as data:
        return str(data["fal_label"]) if "fal_label" in data.files else None


def load_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (mu (d,), sigma (d, d)) from a pytorch-fid `.npz`; every failure is a FalError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FalError(f"{path}: no such statistics file (create one with --save-stats)")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise FalError(f"{path}: a plain .npy array, not an .npz with mu and sigma; recreate it with --save-stats")
        with data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise FalError(f"{path}: npz lacks {sorted(missing)}; expected pytorch-fid statistics (mu, sigma)")
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except FalError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise FalError(f"{path}: not a readable .npz statistics file ({type(e).__name__}); recreate it") from e
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise FalError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not (d,) and (d, d); recreate it")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise FalError(f"{path}: the statistics contain NaN or inf; recreate them with --save-stats")
    return mu, sigma


def _fid_inception_v3(state_dict: dict | None) -> nn.Module:
    """pytorch-fid's `fid_inception_v3()` without its download: torchvision trunk patched with the FID blocks."""
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net


class OfflineInceptionV3(pfi.InceptionV3):
    """pytorch-fid's InceptionV3 feature extractor built from a given trunk instead of a downloaded one.

    The block layout is copied from pytorch-fid 0.3.0 so the inherited `forward` (resize, [-1, 1] scaling) applies.
    """

    def __init__(self, trunk: nn.Module, block_index: int) -> None:
        nn.Module.__init__(self)
        self.resize_input = True
        self.normalize_input = True
        self.output_blocks = [block_index]
        self.last_needed_block = block_index
        t = trunk
        stages = [
            [t.Conv2d_1a_3x3, t.Conv2d_2a_3x3, t.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [t.Conv2d_3b_1x1, t.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [t.Mixed_5b, t.Mixed_5c, t.Mixed_5d, t.Mixed_6a, t.Mixed_6b, t.Mixed_6c, t.Mixed_6d, t.Mixed_6e],
            [t.Mixed_7a, t.Mixed_7b, t.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))],
        ]
        self.blocks = nn.ModuleList(nn.Sequential(*s) for s in stages[: block_index + 1])
        for p in self.parameters():
            p.requires_grad = False


def _read_state_dict(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors alike for a bad file
        raise FalError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}); re-download it") from e


def load_inception(
    dims: int = 2048,
    weights: Path | None = None,
    allow_unofficial: bool = False,
    random_weights: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict]:
    """pytorch-fid's FID InceptionV3 returning the `dims`-feature block, loaded from disk only; → (model, info).

    Equivalent to `InceptionV3([BLOCK_INDEX_BY_DIM[dims]], resize_input=True, normalize_input=True,
    use_fid_inception=True)`. `random_weights` skips the file (tests, speed benchmarks) and marks info official=False.
    info records the protocol: weights, sha256_prefix, official, dims, resize, input scaling.
    """
    if dims not in pfi.InceptionV3.BLOCK_INDEX_BY_DIM:
        raise FalError(f"--dims {dims} is not an Inception feature size; use one of {'/'.join(map(str, FID_DIMS))}")
    path, official, state_dict = None, False, None
    if not random_weights:
        path, official = find_weights(
            INCEPTION_FID.filename, weights, INCEPTION_FID.sha256_prefix, allow_unofficial, INCEPTION_FID.url
        )
        state_dict = _read_state_dict(path)
    try:
        trunk = _fid_inception_v3(state_dict)
    except RuntimeError as e:
        raise FalError(f"{path}: not a pytorch-fid Inception state dict (keys or shapes differ); re-download it") from e
    model = OfflineInceptionV3(trunk, pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]).to(device).eval()
    info = {
        "network": "pytorch-fid FID InceptionV3 (TF 2015-12-05 port)",
        "weights": str(path) if path else "random (not comparable)",
        "sha256_prefix": sha256_of(path)[:8] if path and not official else INCEPTION_FID.sha256_prefix,  # the file's own
        "official": official,
        "dims": dims,
        "resize": RESIZE_PROTOCOL,
        "input": "uint8 RGB /255 (ToTensor) then 2x-1",
        "pooling": "global average when the block output is not 1x1, as pytorch-fid",
    }
    return model, info


def _to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 in [0, 1], bit-identical to torchvision's ToTensor; grey repeated to RGB."""
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise FalError(
            f"FID expects uint8 image batches (B, 3, H, W), got {tuple(batch.shape)} {batch.dtype}; "
            "save images as 8-bit RGB"
        )
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    return batch.to(torch.float32).div(255)


def extract_features(
    images: Iterable[torch.Tensor],
    model: nn.Module,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Feature rows (N, dims) float64 for uint8 batches (B, 3, H, W), as pytorch-fid's `get_activations`.

    Scaling is ToTensor's x/255 in float32 before casting to `dtype` (the model must already be in `dtype`);
    non-1x1 outputs are global-average pooled. Batches are independent, so the result does not depend on B.
    """
    rows = []
    model.eval()
    with torch.no_grad():
        for batch in images:
            x = _to_unit_float(batch).to(device=device, dtype=dtype)
            out = model(x)[0]
            if out.shape[2:] != (1, 1):
                out = F.adaptive_avg_pool2d(out, output_size=(1, 1))
            rows.append(out.squeeze(3).squeeze(2).float().cpu().numpy().astype(np.float64))
    if not rows:
        raise FalError("no images to extract FID features from; check the folder is not empty")
    return np.concatenate(rows, axis=0)


def list_images(path: Path) -> list[Path]:
    """Sorted image files directly in `path` (non-recursive, like pytorch-fid; extensions case-insensitive)."""
    path = Path(path)
    if not path.is_dir():
        raise FalError(f"{path}: no such folder (pass a folder of images or a .npz statistics file)")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix[1:].lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FalError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return files


def _check_same_size(files: list[Path]) -> tuple[int, int]:
    """Read only headers; images must share one size since batches are stacked without resizing."""
    first_size = None
    for f in files:
        try:
            with Image.open(f) as im:
                size = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise FalError(f"{f}: unreadable or corrupt image ({type(e).__name__}); remove or re-export it") from e
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise FalError(
                f"{f.parent}: mixed image sizes: {files[0].name} is {first_size[0]}x{first_size[1]} but {f.name} is "
                f"{size[0]}x{size[1]}; resize the folder to one size first"
            )
    return first_size


class _DecodedImages(Dataset):
    """Decodes one file to uint8 (3, H, W); a failure is returned, not raised, so workers report one clean line."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        try:
            with Image.open(self.files[i]) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            return f"{self.files[i]}: unreadable or corrupt image ({type(e).__name__}: {e}); remove or re-export it"
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _collate(items: list[torch.Tensor | str]) -> torch.Tensor | str:
    errors = [x for x in items if isinstance(x, str)]
    return errors[0] if errors else torch.stack(items)


class ImageFolderBatches:
    """Iterable of uint8 batches (B, 3, H, W) over a folder; `count` images, `len()` batches, `files` in order."""

    def __init__(self, path: Path, batch_size: int, num_workers: int = 0) -> None:
        if batch_size < 1:
            raise FalError(f"batch size must be >= 1, got {batch_size}")
        self.files = list_images(path)
        self.count = len(self.files)
        self.image_size = _check_same_size(self.files)
        self.batch_size = batch_size
        self.num_workers = num_workers

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        loader = DataLoader(
            _DecodedImages(self.files),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate,
        )
        for batch in loader:
            if isinstance(batch, str):
                raise FalError(batch)
            yield batch


def image_folder_batches(path: Path, batch_size: int, num_workers: int = 0) -> ImageFolderBatches:
    """uint8 RGB batches (B, 3, H, W) of the sorted images in `path`; workers > 0 decode in parallel.

    Errors (FalError): missing or empty folder, images of mixed sizes (names two), unreadable file (names it).
    """
    return ImageFolderBatches(path, batch_size, num_workers)
