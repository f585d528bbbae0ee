"""`fal evaluate` on files: outputs and targets matched by file name, label maps, depth maps, voxel grids and
2D points, each read and scored once (a checkpoint's steps are scored in falcli/commands/evaluate/checkpoints.py).

Every scorer returns a FileScore: one row (step None), the protocol, notes. Every bad input is a FalError
naming the file and saying what was expected.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from falcli.core.files import checked_points, list_by_stem
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.formats.binvox import read_binvox, y_up_to_z_up
from falcli.formats.images import IMAGE_SUFFIXES, decode_image
from falcli.judges.base import load, predict
from falcli.judges.voxel_classifier import JUDGE, to_judge_resolution
from falcli.metrics import image, lpips
from falcli.metrics.depth import DEPTH_KEYS, depth_errors, eigen_crop_mask
from falcli.metrics.segmentation import colors_to_train_ids, confusion, score_keys, segmentation_scores
from falcli.metrics.toy import toy_metrics
from falcli.tasks.toy import DataConfig, mixture_centers, sample_mixture
from falcli.tasks.translation import evaluate as translation_eval

if TYPE_CHECKING:
    from falcli.commands.evaluate.checkpoints import EvaluateOptions

FileScore = tuple[list[dict[str, Any]], dict[str, Any], list[str]]  # (rows, protocol, notes)
ProgressFn = Callable[[str, int, int], None]
DEPTH_SUFFIXES = (".npy", ".png")       # metres in .npy, millimetres in 16-bit PNG
VOXEL_SUFFIXES = (".binvox", ".npy")
NUM_TRAIN_IDS = 19                      # Cityscapes train ids 0..18; 255 = ignore
LPIPS_MIN_SIZE = 32                     # pixels a side
TOY_DATASETS = ("ring", "grid")


# --- l1, psnr, ssim, lpips: outputs against targets ---

def image_pairs(metric: str, options: EvaluateOptions, progress: ProgressFn) -> FileScore:
    """Outputs against targets matched by file name, on [-1, 1] images (data_range 2, as the translation task:
    PSNR and SSIM equal their values on [0, 1]; L1 is on the training loss's scale)."""
    a, b = two_folders(metric, options.a, options.b, "outputs", "targets")
    pairs = match_by_name(a, b, IMAGE_SUFFIXES, IMAGE_SUFFIXES, "images")
    protocol = {"images": "RGB, uint8 mapped to [-1, 1]", "averaging": "per image, then mean over images",
                "pairs": len(pairs)}
    key = metric.replace("-", "_")
    to_input = to_network
    if metric == "lpips":
        score, info = _lpips_scorer(options)
        protocol["lpips"] = info
        protocol["label"] = info["label"]
    elif key in image.SSIM_VARIANTS:
        # SSIM on the files' own values: scikit-image's structural_similarity of the uint8 images, exactly.
        score = partial(image.ssim_per_image, data_range=image.PIXEL_RANGE, variant=key)
        to_input = _to_pixels_chw
        protocol.update(images="RGB, uint8 values [0, 255]", data_range=image.PIXEL_RANGE,
                        ssim=image.SSIM_PROTOCOLS[key])
    else:
        score = {"l1": image.l1_per_image, "psnr": partial(image.psnr_per_image, data_range=2.0)}[metric]
        protocol["data_range"] = 2.0
    values = []
    for done, (_, path_a, path_b) in enumerate(pairs, start=1):
        x, y = read_image(path_a), read_image(path_b)
        check_same_size(path_a, x, path_b, y)
        values.append(score(to_input(x), to_input(y)))
        progress(f"{metric} {a.name} vs {b.name}", done, len(pairs))
    return [{"step": None, key: float(np.concatenate(values).mean())}], protocol, []


def _to_pixels_chw(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (1, 3, H, W) float64 with the same values."""
    return image.transpose(2, 0, 1)[None].astype(np.float64)


def _lpips_scorer(options: EvaluateOptions) -> tuple[Callable[[torch.Tensor, torch.Tensor], np.ndarray], dict]:
    distance, info = lpips.load_lpips(weights=options.weights, device=pick_device(options.device),
                                      allow_unofficial=options.allow_unofficial_weights)

    def score(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if min(x.shape[-2:]) < LPIPS_MIN_SIZE:  # AlexNet's pooling would shrink smaller images to nothing
            raise FalError(f"LPIPS needs images of at least {LPIPS_MIN_SIZE}×{LPIPS_MIN_SIZE} pixels, got "
                           f"{x.shape[-1]}×{x.shape[-2]}")
        return distance(x, y).cpu().numpy()

    info = dict(info, label="official LPIPS v0.1 AlexNet weights: comparable with published LPIPS"
                if info["official"] else "NOT COMPARABLE: unofficial AlexNet weights")  # printed first, as for FID
    return score, info


# --- fcn: generated photos read by a segmenter judge ---

def fcn(metric: str, options: EvaluateOptions, progress: ProgressFn) -> FileScore:
    """The FCN-score of photos against label maps matched by name; each photo is resized (bilinear) to its
    label map's size, as pix2pix's eval_cityscapes does, then segmented at the judge's size."""
    if options.seg_weights is None:
        raise FalError("fcn on folders needs --seg-weights JUDGE.pt (a segmenter: `fal train "
                       "recipes/<dataset>_segmenter.yaml` writes runs/<dataset>_segmenter/judge.pt; `fal evaluate "
                       "fcn --ckpt RUN` trains and reuses one for the run's data)")
    a, b = two_folders(metric, options.a, options.b, "generated photos", "label maps")
    pairs = match_by_name(a, b, IMAGE_SUFFIXES, IMAGE_SUFFIXES, "images")
    device = pick_device(options.device)
    segmenter = translation_eval._open_segmenter(options.seg_weights, None, device, note=None)
    hist = np.zeros((NUM_TRAIN_IDS, NUM_TRAIN_IDS), np.int64)
    for done, (_, path_a, path_b) in enumerate(pairs, start=1):
        photo, labels = to_network(read_image(path_a)), read_label_map(path_b)
        if tuple(photo.shape[-2:]) != labels.shape:
            photo = F.interpolate(photo, size=labels.shape, mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            predicted = translation_eval._segment(segmenter, photo.to(device))
        hist += confusion(predicted, torch.from_numpy(labels)[None])
        progress(f"fcn {a.name} vs {b.name}", done, len(pairs))
    scores = segmentation_scores(hist, options.class_means)
    row = {"step": None, **{f"fcn/{k}": scores[k] for k in score_keys(options.class_means)}}
    protocol = {"judge": str(options.seg_weights), "pairs": len(pairs), "scores": scores["protocol"],
                "labels": "8-bit train ids (255 ignored) or RGB colours snapped to the nearest Cityscapes colour, "
                          "void colours (black among them) ignored as in `fal prepare cityscapes`"}
    return [row], protocol, []


# --- depth: predicted against true depth maps ---

def depth(metric: str, options: EvaluateOptions, progress: ProgressFn) -> FileScore:
    """Eigen et al.'s errors per map, averaged over maps; `.npy` in metres, 16-bit PNG in millimetres."""
    a, b = two_folders(metric, options.a, options.b, "predicted depth maps", "true depth maps")
    pairs = match_by_name(a, b, DEPTH_SUFFIXES, DEPTH_SUFFIXES, "depth maps")
    sums, scored, notes = np.zeros(len(DEPTH_KEYS)), 0, []
    for done, (_, path_a, path_b) in enumerate(pairs, start=1):
        predicted, truth = read_depth(path_a), read_depth(path_b)
        check_same_size(path_a, predicted, path_b, truth)
        valid = (truth > options.min_depth) & (truth < options.max_depth)  # depth_errors' own rule
        if options.eigen_crop:
            valid &= eigen_crop_mask(*truth.shape)
        if valid.any():
            errors = depth_errors(predicted, truth, options.min_depth, options.max_depth, options.eigen_crop)
            sums += np.array([errors[k] for k in DEPTH_KEYS])
            scored += 1
        progress(f"depth {a.name} vs {b.name}", done, len(pairs))
    if not scored:
        raise FalError(f"{b}: no true depth lies in ({options.min_depth}, {options.max_depth}) m in any map; check "
                       f"the units (.npy in metres, 16-bit PNG in millimetres) or --max-depth")
    if scored < len(pairs):
        notes.append(f"{len(pairs) - scored} of {len(pairs)} maps have no valid true depth and were skipped")
    row = {"step": None, **{f"depth/{k}": float(v) for k, v in zip(DEPTH_KEYS, sums / scored)}}
    protocol = {"units": ".npy metres, 16-bit PNG millimetres", "min_depth": options.min_depth,
                "max_depth": options.max_depth, "eigen_crop": options.eigen_crop, "maps": scored,
                "averaging": "per map, then mean over maps with a valid pixel"}
    return [row], protocol, notes


# --- voxel-accuracy: the paper's ShapeNet metric ---

def voxel_accuracy(metric: str, options: EvaluateOptions, progress: ProgressFn) -> FileScore:
    """Share of shapes the voxel classifier assigns to --class (thresholded at 0.5, max-pooled to the judge's
    resolution), and where the others went."""
    if options.a is None or options.b is not None:
        raise FalError("`fal evaluate voxel-accuracy` takes one input: a folder of .binvox/.npy grids or one .npy "
                       "(or --ckpt CKPT)")
    if options.judge is None:
        raise FalError("voxel-accuracy on files needs --judge JUDGE.pt (a voxel classifier: `fal train "
                       "recipes/voxel_classifier.yaml` writes runs/voxel_classifier/judge.pt; `fal evaluate "
                       "voxel-accuracy --ckpt RUN` trains and reuses one for the run's data)")
    device = pick_device(options.device)
    net, judge_recipe, _ = load(options.judge, device, JUDGE)
    names = JUDGE.class_names(judge_recipe)
    if options.class_name not in names:
        given = f"{options.class_name!r} is not a class of this judge" if options.class_name else "missing"
        raise FalError(f"--class: {given}; name the class the shapes should be: {', '.join(names)}")
    grids = read_grids(options.a, progress)
    predicted = predict(net, to_judge_resolution(torch.from_numpy(grids), judge_recipe), device)
    row = {"step": None, "accuracy": float((predicted == names.index(options.class_name)).float().mean())}
    row.update({f"predicted/{n}": float((predicted == k).float().mean())
                for k, n in enumerate(JUDGE.output_names(judge_recipe))})  # reject: noise, counted for no class
    protocol = {"judge": str(options.judge), "class": options.class_name, "shapes": len(grids),
                "resolution": int(grids.shape[-1]), "judge_resolution": judge_recipe.data.resolution,
                "threshold": "occupancy > 0.5 for probabilities"}
    return [row], protocol, []


# --- toy: 2D points against a mixture ---

def toy_points(metric: str, options: EvaluateOptions, progress: ProgressFn) -> FileScore:
    """Modes covered, high-quality share and sliced Wasserstein distances (falcli/metrics/toy.py) of (N, 2)
    points; the reference of `sliced_wasserstein` is N points drawn from the mixture (seed 0), `sw_to_mixture`
    needs none."""
    if options.a is None or options.b is not None:
        raise FalError("`fal evaluate toy` takes one input: an .npy of (N, 2) points with --dataset ring|grid "
                       "(or --ckpt CKPT)")
    if options.dataset not in TOY_DATASETS:
        raise FalError(f"toy on points needs --dataset {' or '.join(TOY_DATASETS)} (the mixture they should match)")
    points = read_points(options.a)
    data = DataConfig(mixture=options.dataset)
    reference = sample_mixture(data, len(points), torch.Generator().manual_seed(0))
    row = toy_metrics(torch.from_numpy(points), mixture_centers(data), data.sigma, reference)
    protocol = {"mixture": options.dataset, "std": data.sigma, "points": len(points),
                "reference": f"{len(points)} points drawn from the mixture, seed 0"}
    return [{"step": None, **row}], protocol, []


# --- folders and names ---

def two_folders(metric: str, a: Path | None, b: Path | None, what_a: str, what_b: str) -> tuple[Path, Path]:
    if a is None or b is None:
        raise FalError(f"`fal evaluate {metric}` needs two folders, {what_a} and {what_b} (matched by file "
                       f"name), or --ckpt CKPT")
    for path in (a, b):
        if path.suffix == ".npz":
            raise FalError(f"{path}: .npz statistics are for fid and kid; {metric} compares {what_a} with "
                           f"{what_b} file by file")
        if not path.exists():
            raise FalError(f"{path}: no such folder")
        if not path.is_dir():
            raise FalError(f"{path}: not a folder; pass folders of {what_a} and {what_b}")
    return a, b


def match_by_name(a: Path, b: Path, suffixes_a: tuple[str, ...], suffixes_b: tuple[str, ...],
                  what: str) -> list[tuple[str, Path, Path]]:
    """(name, file in a, file in b) for every name, matched by stem (out/x.png ↔ targets/x.jpg); FalError
    unless both folders hold exactly the same names."""
    files_a, files_b = list_by_stem(a, suffixes_a, what), list_by_stem(b, suffixes_b, what)
    only_a, only_b = sorted(files_a.keys() - files_b.keys()), sorted(files_b.keys() - files_a.keys())
    if only_a or only_b:
        parts = [f"{len(names)} only in {folder} (e.g. {files[names[0]].name})"
                 for names, folder, files in ((only_a, a, files_a), (only_b, b, files_b)) if names]
        raise FalError(f"{a} and {b} do not match by file name: {', '.join(parts)}; each file needs a partner "
                       f"of the same name")
    return [(name, files_a[name], files_b[name]) for name in sorted(files_a)]


def check_same_size(path_a: Path, a: np.ndarray, path_b: Path, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise FalError(f"{path_a} is {a.shape[1]}×{a.shape[0]} but {path_b} is {b.shape[1]}×{b.shape[0]}; "
                       f"matched files must have one size")


# --- images and label maps ---

def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    return np.array(decode_image(path, mode="RGB"), dtype=np.uint8)  # a writable copy, as torch wants


def to_network(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float in [-1, 1], as the networks see images."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1)


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) uint8 train ids: an 8-bit map holds them directly (255 = ignore); an RGB map is snapped to the
    nearest Cityscapes colour, void colours (black, …) giving 255 as `fal prepare cityscapes` reads them."""
    image = decode_image(path, mode=None)
    if image.mode in ("RGB", "RGBA"):
        return colors_to_train_ids(np.asarray(image.convert("RGB")))
    if image.mode not in ("L", "P"):
        raise FalError(f"{path}: a {image.mode} image; label maps are 8-bit train ids or RGB colour maps")
    ids = np.array(image, dtype=np.uint8)
    bad = (ids >= NUM_TRAIN_IDS) & (ids != 255)
    if bad.any():
        raise FalError(f"{path}: value {int(ids[bad][0])} is not a train id (0-18, 255 = ignore); convert "
                       f"Cityscapes labelIds with falcli.metrics.segmentation.LABEL_ID_TO_TRAIN_ID, or pass "
                       f"colour maps")
    return ids


# --- depth maps ---

def read_depth(path: Path) -> np.ndarray:
    """(H, W) float64 metres from an .npy in metres or a 16-bit PNG in millimetres (0 = no measurement)."""
    if path.suffix == ".npy":
        array = _load_npy(path)
        if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
            array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
        if array.ndim != 2 or array.dtype.kind not in "fiu":
            raise FalError(f"{path}: a {array.dtype} array of shape {array.shape}; depth maps are (H, W) numbers "
                           f"in metres")
        return array.astype(np.float64)
    image = decode_image(path, mode=None)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise FalError(f"{path}: a {image.mode} PNG; depth PNGs must be 16-bit in millimetres (an 8-bit image "
                       f"cannot hold depth), or save .npy maps in metres")
    return np.asarray(image).astype(np.float64) / 1000.0


# --- voxel grids and points ---

def read_grids(path: Path, progress: ProgressFn | None = None) -> np.ndarray:
    """(N, R, R, R) uint8 {0, 1} from one .npy ((R, R, R) or (N, R, R, R)) or a folder of .binvox / .npy files;
    probabilities are thresholded at 0.5 (as the voxel task's shapes)."""
    if not path.exists():
        raise FalError(f"{path}: no such file or folder")
    files = list(list_by_stem(path, VOXEL_SUFFIXES, "voxel grids").values()) if path.is_dir() else [path]
    grids: list[np.ndarray] = []
    for done, file in enumerate(files, start=1):
        grids.extend(_grids_of(file))
        if progress is not None:
            progress(f"read {path.name}", done, len(files))
    sizes = {g.shape for g in grids}
    if len(sizes) > 1:
        raise FalError(f"{path}: grids of several sizes ({', '.join(sorted('×'.join(map(str, s)) for s in sizes))});"
                       f" score one resolution at a time")
    return np.stack(grids)


def _grids_of(path: Path) -> list[np.ndarray]:
    if path.suffix == ".binvox":
        grid, _ = read_binvox(path)
        return [y_up_to_z_up(grid).astype(np.uint8)]
    if path.suffix != ".npy":
        raise FalError(f"{path}: not a .binvox or .npy voxel file")
    array = _load_npy(path)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or len(set(array.shape[1:])) != 1 or array.shape[1] == 0:
        raise FalError(f"{path}: shape {array.shape}; voxel grids are (R, R, R) or (N, R, R, R) cubes")
    if array.dtype.kind == "f":
        return list((array > 0.5).astype(np.uint8))
    if array.dtype.kind not in "biu" or not np.isin(array, (0, 1)).all():
        raise FalError(f"{path}: voxel grids must be 0/1 (or probabilities in [0, 1] as floats)")
    return list(array.astype(np.uint8))


def read_points(path: Path) -> np.ndarray:
    """(N, 2) float32 points from an .npy."""
    if path.suffix != ".npy":
        raise FalError(f"{path}: toy points come as an .npy of shape (N, 2)")
    return checked_points(_load_npy(path), path)


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FalError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise FalError(f"{path}: not a readable .npy array ({type(error).__name__}); write it with numpy.save") from None
