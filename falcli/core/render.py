"""Pictures of voxel grids without OpenGL: orthographic ray casting (voxel DDA) with per-face shading, plus PNG helpers.

Grids are indexed [x, y, z] with z up, as `falcli.data.primitives` and `fal prepare` write them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from falcli.errors import FalError

# Face colours by normal axis (x, y, z) and sign, so that the three visible sides of a box read apart.
_FACE_RGB = np.array(
    [[(214, 120, 92), (232, 146, 110)],  # -x, +x
     [(92, 132, 196), (118, 160, 222)],  # -y, +y
     [(150, 150, 158), (238, 236, 226)]],  # -z (bottom), +z (top)
    np.float32,
)


def render_voxels(grid: np.ndarray, size: int = 128, azimuth: float = 45.0, elevation: float = 30.0) -> np.ndarray:
    """Shaded orthographic view of a voxel grid: (X,Y,Z) bool/uint8 or float occupancy (> 0.5) -> (size,size,3) uint8.

    The camera sits at `azimuth` degrees around z (0 looks from +x, 90 from +y) and `elevation` degrees above the
    xy-plane; the view is fitted to the occupied voxels (orthographic, so only the zoom varies). Background is white.
    """
    occ = np.asarray(grid)
    if occ.ndim != 3:
        raise FalError(f"render_voxels needs a 3-D grid (X, Y, Z), got shape {occ.shape}")
    occ = occ > 0.5 if occ.dtype.kind == "f" else occ.astype(bool)
    dims = np.array(occ.shape, np.float64)
    az, el = np.radians(azimuth), np.radians(elevation)
    eye = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(right, -eye)
    d = -eye

    # frame the occupied voxels' box (the whole grid when empty) so small objects still fill the picture
    nz = [np.nonzero(occ.any(axis=tuple(j for j in range(3) if j != k)))[0] for k in range(3)]
    lo = np.array([v[0] if v.size else 0 for v in nz], np.float64)
    hi_ = np.array([v[-1] + 1 if v.size else dims[k] for k, v in enumerate(nz)], np.float64)
    centre = (lo + hi_) / 2
    unit = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], np.float64)
    corners = unit * (hi_ - lo) + lo - centre
    ext = 1.08 * max(np.abs(corners @ right).max(), np.abs(corners @ up).max(), 0.5)
    s = ((np.arange(size) + 0.5) / size * 2 - 1) * ext
    a, b = np.meshgrid(s, -s)  # b: image rows go down
    o = centre + a.reshape(-1, 1) * right + b.reshape(-1, 1) * up + eye * (2 * dims.max())

    # slab test against the grid box [0, dims]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(d != 0, 1 / np.where(d != 0, d, 1), np.inf)
        t0, t1 = (0 - o) * inv, (dims - o) * inv
    t0 = np.where(d != 0, t0, -np.inf)
    t1 = np.where(d != 0, t1, np.inf)
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    t_in, t_out = tmin.max(1), tmax.min(1)
    ray = np.nonzero(t_in < t_out)[0]
    axis = tmin[ray].argmax(1)
    t = t_in[ray]
    pos = o[ray] + (t[:, None] + 1e-6) * d
    idx = np.clip(np.floor(pos).astype(np.int64), 0, dims.astype(np.int64) - 1)
    step = np.sign(d).astype(np.int64)
    with np.errstate(divide="ignore"):
        delta = np.abs(1 / d)  # all rays are parallel: one step pattern for all
    with np.errstate(divide="ignore", invalid="ignore"):
        t_next = np.where(d != 0, t[:, None] + (idx + (step > 0) - pos) / np.where(d != 0, d, 1), np.inf)

    hit_ray, hit_axis, hit_t = [], [], []
    hi = dims.astype(np.int64)
    for _ in range(int(hi.sum()) + 2):
        if ray.size == 0:
            break
        occupied = occ[idx[:, 0], idx[:, 1], idx[:, 2]]
        if occupied.any():
            hit_ray.append(ray[occupied])
            hit_axis.append(axis[occupied])
            hit_t.append(t[occupied])
            keep = ~occupied
            ray, idx, t_next = ray[keep], idx[keep], t_next[keep]
        axis = t_next.argmin(1)
        rows = np.arange(ray.size)
        t = t_next[rows, axis]
        idx[rows, axis] += step[axis]
        t_next[rows, axis] += delta[axis]
        inside = ((idx >= 0) & (idx < hi)).all(1)
        ray, idx, t_next, axis, t = ray[inside], idx[inside], t_next[inside], axis[inside], t[inside]

    img = np.full((size * size, 3), 255.0, np.float32)
    if hit_ray:
        ray, axis, t = np.concatenate(hit_ray), np.concatenate(hit_axis), np.concatenate(hit_t)
        positive = step[axis] < 0  # the ray enters through the face whose normal points back at the camera
        normal = np.zeros((ray.size, 3))
        normal[np.arange(ray.size), axis] = np.where(positive, 1.0, -1.0)
        light = eye + 0.6 * up - 0.4 * right  # from over the viewer's left shoulder
        light /= np.linalg.norm(light)
        lambert = 0.55 + 0.45 * np.clip(normal @ light, 0, 1)
        depth_cue = 1 - 0.18 * (t - t.min()) / max(np.ptp(t), 1e-6)  # nearer surfaces slightly brighter
        col = _FACE_RGB[axis, positive.astype(int)] * (lambert * depth_cue)[:, None].astype(np.float32)
        # faint voxel edges where voxels are big enough on screen to show them
        px_per_voxel = size / (2 * ext)
        if px_per_voxel >= 6:
            p = o[ray] + t[:, None] * d
            frac = p - np.floor(p)
            other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
            f = np.take_along_axis(frac, other, 1)
            edge = (np.minimum(f, 1 - f) < 0.6 / px_per_voxel).any(1)
            col[edge] *= 0.88
        img[ray] = col
    return np.clip(img + 0.5, 0, 255).astype(np.uint8).reshape(size, size, 3)


def voxel_grid_image(grids: list[np.ndarray], ncols: int, size: int = 128, azimuth: float = 45.0,
                     elevation: float = 30.0) -> np.ndarray:
    """Tile renders of several grids, `ncols` per row, with a 2-px white gutter: (H, W, 3) uint8."""
    if ncols < 1:
        raise FalError(f"voxel_grid_image ncols must be >= 1, got {ncols}")
    gut = 2
    nrows = max(1, -(-len(grids) // ncols))
    ncols = min(ncols, max(1, len(grids)))
    out = np.full((nrows * size + (nrows - 1) * gut, ncols * size + (ncols - 1) * gut, 3), 255, np.uint8)
    for i, g in enumerate(grids):
        r, c = divmod(i, ncols)
        y, x = r * (size + gut), c * (size + gut)
        out[y : y + size, x : x + size] = render_voxels(g, size, azimuth, elevation)
    return out


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H,W,3) or (H,W) uint8 array as PNG, creating parent folders; returns the path."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise FalError(f"save_png needs uint8 pixels, got {arr.dtype} (clip to 0-255 and cast with .astype(np.uint8))")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path
