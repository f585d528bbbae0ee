"""Image decoding (PIL) with user-facing errors, plus center-crop and resize helpers.

Resizing uses PIL, which antialiases when shrinking (the filter's support grows with the scale factor), so
"bicubic" here is antialiased bicubic, as in the torchvision/PIL pipelines the published numbers used.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from falcli.errors import FalError
from falcli.formats.archive import read_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

# Named filters; label maps must only ever use "nearest" (interpolating ids or colours invents classes).
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,  # area average
}

Box = tuple[int, int, int, int]

# Pixels of one image, checked from the header before decoding: 50 MP is 150 MB decoded as RGB, well above
# the datasets' 2048x1024 (Cityscapes), and refuses a 12000x12000 PNG (432 MB) before it is inflated.
MAX_IMAGE_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL's own guard (it warns, then refuses at twice this) as a backstop


def decode_image(data: bytes | Path, name: str | None = None, mode: str | None = "RGB") -> Image.Image:
    """Decode fully (so truncation shows up now) and convert to `mode` (None keeps the file's own mode)."""
    label = name or str(data if isinstance(data, Path) else "image")
    if isinstance(data, (str, Path)):
        if not Path(data).exists():
            raise FalError(f"{label}: no such image file")
        data = read_file(Path(data), label=label)  # bounded, and never opens a FIFO or a device
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the check below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:  # the header only: nothing decoded yet
            raise _too_many_pixels(label, width, height)
        image.load()
    except Image.DecompressionBombError:
        raise FalError(f"{label}: over the cap of {MAX_IMAGE_PIXELS // 10**6} megapixels per image; shrink it or "
                       f"leave it out") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError) as e:
        reason = "not an image format PIL can read" if isinstance(e, UnidentifiedImageError) else e
        raise FalError(f"{label}: corrupt or unreadable image ({reason}); re-download or delete it") from e
    if image.mode in ("I;16", "I;16B", "I;16L", "I") and mode is not None:
        # 16-bit PNGs: PIL's convert clips at 255 (a white image); scale the 0..65535 range instead.
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
    if mode is not None and image.mode != mode:
        image = image.convert(mode)
    return image


def _too_many_pixels(label: str, width: int, height: int) -> FalError:
    return FalError(f"{label}: {width}x{height} pixels, over the cap of {MAX_IMAGE_PIXELS // 10**6} megapixels "
                    f"per image; shrink it or leave it out")


def to_array(image: Image.Image) -> np.ndarray:
    """The image as a uint8 array, (H, W, 3) for RGB and (H, W) for single-channel images."""
    return np.asarray(image, dtype=np.uint8)


def center_box(width: int, height: int, crop_w: int, crop_h: int, name: str = "image") -> Box:
    """(left, top, right, bottom) of the `crop_w`x`crop_h` box centred in a `width`x`height` image."""
    if crop_w > width or crop_h > height:
        raise FalError(f"{name}: {width}x{height} is smaller than the {crop_w}x{crop_h} crop")
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def square_box(width: int, height: int) -> Box:
    """The largest centred square (side = the shorter side)."""
    side = min(width, height)
    return center_box(width, height, side, side)


def resize(image: Image.Image, size: int | tuple[int, int], filter: str) -> Image.Image:
    """Resize to `size` (an int means size x size; a tuple is (width, height)) with a named filter."""
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; use one of {sorted(FILTERS)}")
    target = (size, size) if isinstance(size, int) else size
    if image.size == target:
        return image
    return image.resize(target, FILTERS[filter])


def resize_array(array: np.ndarray, size: int, filter: str) -> np.ndarray:
    """Resize a 2-D uint8 or float32 array to size x size (float goes through PIL mode "F", no rounding)."""
    if array.ndim != 2:
        raise ValueError("resize_array takes a 2-D array")
    dtype = np.float32 if array.dtype.kind == "f" else np.uint8
    image = Image.fromarray(np.ascontiguousarray(array, dtype=dtype))
    return np.asarray(resize(image, size, filter), dtype=dtype)


def crop_resize(image: Image.Image, box: Box, size: int, filter: str) -> np.ndarray:
    """Crop `box` then resize to size x size; returns a uint8 array."""
    return to_array(resize(image.crop(box), size, filter))
