"""Built-in procedural shapes: a download-free stand-in for CelebA-style unconditional image generation.

Each image holds 1-3 anti-aliased coloured shapes on a textured background; the label is the largest shape's class.
"""
from __future__ import annotations

import numpy as np

from falcli.data.noise import upsample_bilinear
from falcli.errors import FalError

SIZES = (32, 64, 128)
SHAPE_CLASSES: list[str] = ["circle", "square", "triangle", "ring", "star"]
CHUNK_PIXELS = 1 << 18  # items rendered together: amortises numpy calls, stays cache-friendly
_N_UNIFORM = 64


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    ang = np.pi / 2 + np.arange(2 * points) * np.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)


# Outlines in units of the shape's scale r, sized so every class covers about pi r^2: the largest r is the largest area.
_POLYS = {
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float32) * 0.886,
    "triangle": _star(3, 1.555, -0.778)[::2].astype(np.float32),
    "star": _star(5, 1.46, 0.73).astype(np.float32),
}
_RING = (1.15, 0.6)  # outer and inner radius

_VIVID = np.array(
    [(230, 40, 40), (250, 150, 20), (245, 215, 30), (60, 180, 60), (20, 150, 140), (40, 110, 230), (120, 60, 200),
     (220, 60, 160), (250, 250, 250), (25, 25, 30), (140, 80, 40), (100, 220, 230)],
    np.float32,
)
_MUTED = np.array(
    [(200, 190, 170), (150, 160, 170), (90, 100, 110), (180, 200, 180), (210, 200, 220), (120, 110, 95),
     (60, 70, 85), (225, 215, 195), (170, 140, 130), (100, 130, 120)],
    np.float32,
)


def meta() -> dict:
    """The dataset description `fal prepare` writes for image datasets, for the built-in shapes."""
    return {"kind": "images", "classes": list(SHAPE_CLASSES)}


def make_shapes(n: int, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate `n` shape images; item i depends only on (seed, i), so a larger n extends a smaller one.

    Returns images (n,S,S,3) uint8 and labels (n,) int64, the index in SHAPE_CLASSES of the largest shape.
    """
    if size not in SIZES:
        raise FalError(f"shapes size {size} is not supported (use one of {', '.join(map(str, SIZES))})")
    if n < 0:
        raise FalError(f"shapes n must be >= 0, got {n}")
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    chunk = max(1, CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        images[start:stop], labels[start:stop] = _render(seed, range(start, stop), size)
    return {"images": images, "labels": labels}


def _polygon_sdf(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance (negative inside) from points to a closed polygon, in the points' units."""
    d = (px - verts[0, 0]) ** 2 + (py - verts[0, 1]) ** 2
    inside = np.zeros(px.shape, bool)
    for i in range(len(verts)):
        (xi, yi), (xj, yj) = verts[i], verts[i - 1]
        ex, ey, wx, wy = xj - xi, yj - yi, px - xi, py - yi
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        d = np.minimum(d, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        # winding-parity test (edges crossing the point's row on one side) decides the sign
        c1, c2, c3 = py >= yi, py < yj, ex * wy > ey * wx
        inside ^= (c1 & c2 & c3) | ~(c1 | c2 | c3)
    return np.where(inside, -1, 1) * np.sqrt(d)


def _shape_sdf(kind: int, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Signed distance in units of r for class index `kind`, at shape-local coordinates (already divided by r)."""
    name = SHAPE_CLASSES[kind]
    if name == "circle":
        return np.sqrt(lx * lx + ly * ly) - 1
    if name == "ring":
        mid, half = (_RING[0] + _RING[1]) / 2, (_RING[0] - _RING[1]) / 2
        return np.abs(np.sqrt(lx * lx + ly * ly) - mid) - half
    return _polygon_sdf(lx, ly, _POLYS[name])


def _render(seed: int, idx: range, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one chunk of items: (images uint8 (m,S,S,3), labels int64 (m,))."""
    uni, coarse, fine = [], [], []
    for i in idx:
        rng = np.random.default_rng([seed, i])
        uni.append(rng.random(_N_UNIFORM))
        coarse.append(rng.standard_normal((8, 8), dtype=np.float32))
        fine.append(rng.standard_normal((S, S), dtype=np.float32))
    u, coarse, fine = np.array(uni, np.float32), np.array(coarse), np.array(fine)
    n = len(u)
    col = iter(range(_N_UNIFORM))

    def U(lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        return lo + (hi - lo) * u[:, next(col)]

    # background: gradient, stripes or blotchy noise between two muted colours
    c0 = _MUTED[(U() * len(_MUTED)).astype(int)] * U(0.85, 1.15)[:, None]
    c1 = np.clip(c0 * U(0.6, 0.95)[:, None] + U(-30, 30)[:, None] * np.array([1, 0.5, -0.5], np.float32), 0, 255)
    bg_kind = (U() * 3).astype(int)
    ang, freq = U(0, np.pi), U(2.0, 6.0)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    e = (slice(None), None, None)
    proj = (xx * np.cos(ang)[e] + yy * np.sin(ang)[e] - 0.5 * (np.cos(ang) + np.sin(ang))[e]) + 0.5
    t_grad = np.clip(proj, 0, 1)
    t_stripe = 0.5 + 0.5 * np.sin(2 * np.pi * freq[e] * proj)
    t_noise = np.clip(0.5 + 0.35 * upsample_bilinear(coarse, S), 0, 1)
    t = np.where(bg_kind[e] == 0, t_grad, np.where(bg_kind[e] == 1, t_stripe, t_noise))
    img = c0[:, None, None] * (1 - t[..., None]) + c1[:, None, None] * t[..., None]

    # shapes: slot 0 is the main (largest) shape; slots 1-2 are optional smaller ones
    n_shapes = 1 + (U() * 3).astype(int)
    kinds = np.stack([(U() * len(SHAPE_CLASSES)).astype(int) for _ in range(3)], 1)
    r = np.stack([U(0.15, 0.23), U(0.35, 0.7), U(0.35, 0.7)], 1) * S
    r[:, 1:] *= r[:, :1] / S
    cx = np.stack([U(0.35, 0.65), U(0.12, 0.88), U(0.12, 0.88)], 1) * S
    cy = np.stack([U(0.35, 0.65), U(0.12, 0.88), U(0.12, 0.88)], 1) * S
    rot = np.stack([U(0, 2 * np.pi) for _ in range(3)], 1)
    front = np.stack([np.ones(n, bool), U() < 0.3, U() < 0.3], 1)  # most small shapes sit behind the main one
    outline = U() < 0.5
    # a vivid colour far from the background, chosen at random among those that contrast
    far = ((_VIVID[None] - (c0 + c1)[:, None] / 2) ** 2).sum(-1) > 110**2
    colors = np.stack([_VIVID[(np.stack([U() for _ in range(len(_VIVID))], 1) + far).argmax(1)] for _ in range(3)], 1)

    px, py = np.arange(S, dtype=np.float32) + 0.5, np.arange(S, dtype=np.float32) + 0.5
    present = n_shapes[:, None] > np.arange(3)
    passes = [(1, ~front[:, 1]), (2, ~front[:, 2]), (0, front[:, 0]), (1, front[:, 1]), (2, front[:, 2])]
    for k, when in passes:
        for kind in range(len(SHAPE_CLASSES)):
            sel = np.nonzero(present[:, k] & when & (kinds[:, k] == kind))[0]
            if sel.size == 0:
                continue
            rs = r[sel, k][:, None, None]
            dx, dy = px[None, None, :] - cx[sel, k][:, None, None], py[None, :, None] - cy[sel, k][:, None, None]
            c, s = np.cos(rot[sel, k])[:, None, None], np.sin(rot[sel, k])[:, None, None]
            lx, ly = (c * dx + s * dy) / rs, (-s * dx + c * dy) / rs
            sd = _shape_sdf(kind, lx, ly) * rs  # pixels
            alpha = np.clip(0.5 - sd, 0, 1)[..., None]  # analytic coverage of each pixel
            shade = 1 + 0.18 * np.clip(-(dx + dy) / (2 * rs), -1, 1)  # light from the top left
            fill = colors[sel, k][:, None, None] * shade[..., None]
            edge = np.clip(sd + 1.8, 0, 1)[..., None] * outline[sel][:, None, None, None]
            fill = fill * (1 - 0.45 * edge)
            img[sel] = img[sel] * (1 - alpha) + fill * alpha
    img += 3.0 * fine[..., None]
    labels = kinds[:, 0].astype(np.int64)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), labels
