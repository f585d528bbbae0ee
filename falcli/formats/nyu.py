"""NYU-Depth v2 (labelled subset) as a paired rgb -> depth dataset, with the official 795/654 split.

`nyu_depth_v2_labeled.mat` is MATLAB v7.3 (HDF5): h5py sees MATLAB's axes reversed, so frame i as HWC is
`images[i].T` (480, 640, 3) and `depths[i].T` (480, 640), depth in metres.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from falcli.errors import FalError
from falcli.formats.images import crop_resize, resize_array
from falcli.formats.store import DatasetWriter, Progress, created_by, write_split

if TYPE_CHECKING:
    import h5py

MAT_NAME = "nyu_depth_v2_labeled.mat"
MAT_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
SPLITS_URL = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
# The Kinect frames have a white border where the depth/RGB registration left no data: rows 7:474 and
# cols 7:632 of 480x640 are valid. Other frame sizes (test fixtures) get the same box scaled proportionally.
BORDER_BOX_480x640 = (7, 474, 7, 632)
DIRECTIONS = {"rgb_to_depth": ["rgb", "depth"]}
FIELD_CHANNELS = {"rgb": 3, "depth": 1}  # what translation builds its networks for before the data is prepared
DEPTH_RANGE = [0.0, 10.0]
# Depth is resized with NEAREST: it keeps measured values (averaging across an object boundary would
# invent "flying pixels" floating between foreground and background depths).
DEPTH_FILTER = "nearest"


def border_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the valid region, scaled from the 480x640 box to height x width."""
    top, bottom, left, right = BORDER_BOX_480x640
    return (round(top * height / 480), round(bottom * height / 480),
            round(left * width / 640), round(right * width / 640))


def _find_mat(raw: Path) -> Path:
    mat = raw / MAT_NAME if raw.is_dir() else raw
    if not mat.is_file():
        raise FalError(f"{mat}: no such file; download {MAT_URL} and pass it (or its folder) as --raw")
    return mat


def load_splits(path: Path, count: int) -> dict[str, np.ndarray]:
    """Official split as 0-based indices: {"train": 795, "test": 654} from splits.mat (1-based in the file)."""
    if not path.is_file():
        raise FalError(f"{path}: no splits.mat (the official NYU train/test split); download {SPLITS_URL} "
                       "next to the .mat file or pass --splits PATH")
    try:
        import scipy.io  # here, not at the top: every `fal` command loads this module, few read a .mat

        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError, NotImplementedError) as e:
        raise FalError(f"{path}: not a readable MATLAB file ({e}); download {SPLITS_URL} again") from e
    keys = {"train": "trainNdxs", "test": "testNdxs"}
    found = sorted(k for k in mat if not k.startswith("__"))
    if any(key not in mat for key in keys.values()):
        raise FalError(f"{path}: expected keys trainNdxs and testNdxs, found {found or 'none'}; "
                       f"is this the NYU {SPLITS_URL}?")
    splits = {}
    for split, key in keys.items():
        raw_index = np.asarray(mat[key]).ravel()
        index = raw_index.astype(np.int64)
        if index.size == 0 or index.min() < 1 or index.max() > count:
            raise FalError(f"{path}: {key} has indices outside 1..{count} (the .mat has {count} frames); "
                           "the split file does not belong to this .mat")
        if not np.array_equal(index, raw_index) or len(np.unique(index)) != index.size:
            raise FalError(f"{path}: {key} holds repeated or non-integer frame indices; is this the NYU "
                           f"{SPLITS_URL}?")
        splits[split] = index - 1
    if np.intersect1d(splits["train"], splits["test"]).size:
        raise FalError(f"{path}: trainNdxs and testNdxs share frames; a test frame must not be trained on")
    return splits


def _open_mat(mat: Path) -> tuple[h5py.File, h5py.Dataset, h5py.Dataset]:
    import h5py  # as scipy.io above

    try:
        handle = h5py.File(mat, "r")
    except OSError as e:
        raise FalError(f"{mat}: not a MATLAB v7.3 (HDF5) file ({e}); download {MAT_URL} again") from e
    if "images" not in handle or "depths" not in handle:
        found = sorted(handle.keys())
        handle.close()
        raise FalError(f"{mat}: expected keys 'images' and 'depths', found {found or 'none'}; "
                       f"is this {MAT_NAME}?")
    images, depths = handle["images"], handle["depths"]
    shapes = [getattr(x, "shape", "a group, not an array") for x in (images, depths)]  # read before closing
    if not all(isinstance(x, h5py.Dataset) for x in (images, depths)) or len(shapes[0]) != 4 \
            or shapes[0][1] != 3 or shapes[1] != (shapes[0][0], *shapes[0][2:]):
        handle.close()
        raise FalError(f"{mat}: images {shapes[0]} and depths {shapes[1]} do not match (expected (N, 3, 640, 480) "
                       f"and (N, 640, 480), as h5py reads MATLAB's arrays); is this the labelled NYU-Depth v2 file?")
    if not np.issubdtype(depths.dtype, np.floating):
        handle.close()
        raise FalError(f"{mat}: depths are {depths.dtype}, not floating-point metres as in the labelled NYU-Depth v2 "
                       f"file; convert them to metres (float32) first")
    return handle, images, depths


def prepare_nyu(raw: Path, out: Path, size: int = 256, splits_file: Path | None = None,
                progress: Progress | None = None) -> Path:
    """Prepare NYU-Depth v2 (rgb uint8, depth float32 metres, both size x size) into `out`."""
    mat = _find_mat(Path(raw))
    splits_path = Path(splits_file) if splits_file else mat.parent / "splits.mat"
    handle, images, depths = _open_mat(mat)
    with handle:
        splits = load_splits(splits_path, images.shape[0])
        height, width = images.shape[3], images.shape[2]
        top, bottom, left, right = border_box(height, width)

        def item(index: int) -> dict[str, np.ndarray]:
            rgb = Image.fromarray(np.ascontiguousarray(np.asarray(images[index], dtype=np.uint8).T))
            depth = np.asarray(depths[index], dtype=np.float32).T[top:bottom, left:right]
            return {"rgb": crop_resize(rgb, (left, top, right, bottom), size, "bicubic"),
                    "depth": resize_array(depth, size, DEPTH_FILTER)}

        meta = {
            "size": size,
            "created_by": created_by("nyu", size=size, splits=str(splits_path)),
            "directions": DIRECTIONS,
            "default_direction": "rgb_to_depth",
            "depth_range": DEPTH_RANGE,
            "depth_unit": "metres",
            "crop": f"rows {top}:{bottom}, cols {left}:{right} of {height}x{width} (white border removed)",
            "resize_filter": {"rgb": "bicubic", "depth": DEPTH_FILTER},
            "names": "1-based frame index into nyu_depth_v2_labeled.mat, as in splits.mat",
            "eval_fields": {"depth": "depth"},  # metres, for the depth errors (Eigen crop)
        }
        fields = {"rgb": ((size, size, 3), "uint8"), "depth": ((size, size), "float32")}
        with DatasetWriter(out, "paired", "nyu", meta) as writer:
            for split, index in splits.items():
                write_split(writer, split, fields, [int(i) for i in index], item,
                            [str(int(i) + 1) for i in index], progress, f"nyu {split}")
    return out
