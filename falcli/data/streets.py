"""Built-in procedural street scenes: a download-free stand-in for Cityscapes (labels <-> photo) and NYU (RGB -> depth).

Each item is a perspective street (road, sidewalks, facades, cars, trees, poles, people) with exact labels and depth.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from falcli.data.noise import upsample_bilinear
from falcli.errors import FalError
from falcli.metrics.segmentation import colors_to_train_ids, train_ids_to_colors

SIZES = (32, 64, 128, 256)

# Cityscapes train id -> name for the classes the generator draws; the others (wall, fence, ...) never appear.
STREETS_CLASSES: dict[int, str] = {
    0: "road",
    1: "sidewalk",
    2: "building",
    5: "pole",
    6: "traffic light",
    7: "traffic sign",
    8: "vegetation",
    9: "terrain",
    10: "sky",
    11: "person",
    13: "car",
}

ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 13
MAX_DEPTH = 10.0
# Geometry is built in street-sized units; depth reports them at 1:3 so a street spans NYU's 0.5-10 m range.
DEPTH_SCALE = 0.35
CHUNK_PIXELS = 1 << 18  # items rendered together: big enough to amortise numpy calls, small enough for cache
_N_SEG = 16  # facade segments per side of the street
_N_CAR, _N_TREE, _N_POLE, _N_PERSON = 4, 4, 4, 2
_N_LAYOUT, _N_TEXTURE = 256, 128  # uniforms drawn per item; fixed so every size sees the same scene

_FACADES = np.array(
    [(178, 160, 140), (150, 140, 130), (196, 186, 164), (120, 110, 105), (168, 120, 95), (140, 90, 70),
     (200, 200, 195), (110, 120, 130), (185, 170, 120), (160, 165, 170), (95, 90, 88), (210, 190, 170)],
    np.float32,
)
_CAR_PAINT = np.array(
    [(200, 200, 205), (30, 30, 35), (140, 20, 25), (20, 50, 120), (110, 115, 120), (230, 230, 225),
     (60, 90, 60), (180, 140, 40), (70, 70, 80), (150, 160, 175)],
    np.float32,
)
_CLOTHES = np.array(
    [(30, 30, 40), (200, 40, 40), (40, 70, 150), (220, 220, 210), (90, 90, 95), (60, 110, 60), (180, 150, 90),
     (120, 40, 110)],
    np.float32,
)


def meta() -> dict:
    """The dataset description `fal prepare` writes for paired datasets, for the built-in streets."""
    return {
        "kind": "paired",
        "directions": {
            "labels_to_photo": ["label_color", "photo"],
            "photo_to_labels": ["photo", "label_color"],
            "photo_to_depth": ["photo", "depth"],
        },
        "default_direction": "labels_to_photo",
        "eval_fields": {"segmentation": "label_trainid", "depth": "depth"},
        "depth_range": [0.0, MAX_DEPTH],
    }


def trainid_to_color(ids: np.ndarray) -> np.ndarray:
    """Cityscapes colours for train ids: (...,) integer -> (..., 3) uint8; unknown ids are black."""
    return train_ids_to_colors(ids)


def color_to_trainid(rgb: np.ndarray) -> np.ndarray:
    """Nearest Cityscapes colour's train id, for decoding generated label maps: (..., 3) -> (...,) uint8."""
    return colors_to_train_ids(rgb, void=False)


def make_streets(n: int, size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate `n` street scenes; item i depends only on (seed, i), so a larger n extends a smaller one.

    Returns label_trainid (n,S,S) uint8, label_color (n,S,S,3) uint8, photo (n,S,S,3) uint8 and
    depth (n,S,S) float32 metres in (0.5, 10] (sky and anything farther than 10 m read 10).
    """
    if size not in SIZES:
        raise FalError(f"streets size {size} is not supported (use one of {', '.join(map(str, SIZES))})")
    if n < 0:
        raise FalError(f"streets n must be >= 0, got {n}")
    out = {
        "label_trainid": np.empty((n, size, size), np.uint8),
        "label_color": np.empty((n, size, size, 3), np.uint8),
        "photo": np.empty((n, size, size, 3), np.uint8),
        "depth": np.empty((n, size, size), np.float32),
    }
    chunk = max(1, CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        idx = range(start, min(n, start + chunk))
        lab, photo, depth = _render(_draw(seed, idx, size), size)
        sl = slice(idx.start, idx.stop)
        out["label_trainid"][sl] = lab
        out["label_color"][sl] = train_ids_to_colors(lab)
        out["photo"][sl] = photo
        out["depth"][sl] = depth
    return out


class _Cols:
    """Hands out consecutive columns of an (n, k) matrix of per-item uniforms."""

    def __init__(self, u: np.ndarray):
        self.u, self.k = u, 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0, m: int | None = None) -> np.ndarray:
        w = 1 if m is None else m
        if self.k + w > self.u.shape[1]:
            raise RuntimeError("per-item uniform budget exhausted; raise _N_LAYOUT/_N_TEXTURE")
        col = self.u[:, self.k : self.k + w] if m is not None else self.u[:, self.k]
        self.k += w
        return (lo + (hi - lo) * col).astype(np.float32)


def _draw(seed: int, idx: range, size: int) -> dict:
    """Per-item random draws: layout uniforms, texture uniforms, and noise fields, each from rng([seed, i])."""
    lay, tex, fine, coarse = [], [], [], []
    for i in idx:
        rng = np.random.default_rng([seed, i])
        lay.append(rng.random(_N_LAYOUT))
        tex.append(rng.random(_N_TEXTURE))
        coarse.append(rng.standard_normal((3, 16, 16), dtype=np.float32))
        fine.append(rng.standard_normal((size, size), dtype=np.float32))
    return {"lay": np.array(lay), "tex": np.array(tex), "fine": np.array(fine), "coarse": np.array(coarse)}


class _Canvas:
    """Z-buffered canvas: each primitive writes label, depth and colour where it is nearer than what is there."""

    def __init__(self, n: int, size: int):
        self.z = np.full((n, size, size), np.inf, np.float32)
        self.lab = np.full((n, size, size), SKY, np.uint8)
        self.rgb = np.zeros((n, size, size, 3), np.float32)

    def paint(self, mask: np.ndarray, z: np.ndarray, label: int, color: Callable[..., np.ndarray],
              items: np.ndarray | None = None) -> None:
        """Draw a primitive over the items `items` (all when None).

        mask (m,S,S) bool and z (m,S,S) or (m,1,1) are indexed by position j in `items`;
        color(b, j, y, x) -> (k, 3) gives the colours of the written pixels, b being the item index in the chunk.
        """
        zf = np.broadcast_to(z, mask.shape)
        zb = self.z if items is None else self.z[items]
        j, y, x = np.nonzero(mask & (zf < zb))
        if j.size == 0:
            return
        b = j if items is None else items[j]
        self.z[b, y, x] = zf[j, y, x]
        self.lab[b, y, x] = label
        self.rgb[b, y, x] = color(b, j, y, x)


def _hash(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Cheap deterministic pseudo-random value in [0, 1) per integer triple (window lighting, leaf tint)."""
    h = np.sin(a * 12.9898 + b * 78.233 + c * 37.719) * 43758.5453
    return (h - np.floor(h)).astype(np.float32)


def _render(d: dict, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one chunk of items: (labels uint8, photo uint8, depth float32)."""
    L, T = _Cols(d["lay"]), _Cols(d["tex"])
    n = d["lay"].shape[0]
    e = (slice(None), None, None)  # (n,) -> (n,1,1) for broadcasting against pixels

    # --- layout (labels and depth depend only on these) ---
    hor, vp, cam = L(0.32, 0.52), L(0.40, 0.60), L(1.1, 1.5)
    xr, rh = L(-1.2, 1.2), L(2.8, 4.0)
    sw_l, sw_r = L(1.6, 3.0), L(1.6, 3.0)
    ter_l = np.where(L() < 0.3, L(0.6, 1.6), 0).astype(np.float32)
    ter_r = np.where(L() < 0.3, L(0.6, 1.6), 0).astype(np.float32)
    walk_l, walk_r = xr - rh - sw_l, xr + rh + sw_r  # outer sidewalk edges
    fac_x = np.stack([walk_l - ter_l, walk_r + ter_r], 1)  # facade planes, (n, 2)
    seg_len = L(4.0, 14.0, 2 * _N_SEG).reshape(n, 2, _N_SEG)
    seg_len[:, :, 0] += L(0.0, 6.0, 2).reshape(n, 2)
    bounds = np.cumsum(seg_len, -1)
    bounds[:, :, -1] = np.inf
    seg_kind_u = L(m=2 * _N_SEG).reshape(n, 2, _N_SEG)
    seg_kind = np.where(seg_kind_u < 0.8, 0, np.where(seg_kind_u < 0.93, 1, 2))  # building / hedge / gap
    tall, low = L(3.5, 16.0, 2 * _N_SEG), L(1.5, 4.5, 2 * _N_SEG)
    seg_h = np.where(seg_kind == 0, tall.reshape(n, 2, _N_SEG), low.reshape(n, 2, _N_SEG))
    seg_h = np.where(seg_kind == 2, 0, seg_h).astype(np.float32)
    hedge_ph = L(0, 2 * np.pi, 2)

    # --- texture / appearance (only the photo depends on these) ---
    bright = T(0.78, 1.12)
    sun = np.where(T() < 0.5, 1.0, -1.0).astype(np.float32)  # which facade side is sunlit
    sky_mode = T()
    zen = np.where((sky_mode < 0.6)[:, None], np.stack([T(40, 90), T(100, 150), T(170, 225)], 1),
                   np.stack([T(130, 175)] * 3, 1) + T(-8, 8, 3))
    hzc = np.where((sky_mode < 0.6)[:, None], np.stack([T(170, 215), T(195, 225), T(215, 240)], 1),
                   np.stack([T(185, 225)] * 3, 1) + T(-6, 6, 3))
    dusk = T() < 0.15
    hzc = np.where(dusk[:, None], hzc * np.array([1.15, 0.92, 0.75], np.float32), hzc)
    clouds = T(0.0, 1.0) * (sky_mode < 0.6)
    fog_d = T(45.0, 120.0)
    road_c = T(70, 115)[:, None] + T(-6, 6, 3)
    mark_c = np.where((T() < 0.75)[:, None], np.float32([235, 235, 230]), np.float32([230, 190, 60]))  # white/yellow
    dash_p, dash_on = T(4.0, 9.0), T() < 0.85
    walk_c = np.stack([T(150, 200), T(130, 175), T(135, 185)], 1)
    tile = T(0.6, 1.4)
    fac_c = _FACADES[(T(m=2 * _N_SEG) * len(_FACADES)).astype(int)].reshape(n, 2, _N_SEG, 3)
    fac_c = fac_c * T(0.85, 1.15, 2 * _N_SEG).reshape(n, 2, _N_SEG, 1)
    floor_h, win_w = T(2.7, 3.6), T(1.6, 3.2)
    win_c = np.stack([T(35, 70), T(45, 80), T(55, 95)], 1)
    win_frac, win_row = T(0.35, 0.65), T(0.45, 0.7)
    veg_c = np.stack([T(50, 100), T(85, 135), T(20, 55)], 1)
    ter_c = np.stack([T(110, 150), T(130, 170), T(60, 90)], 1)
    car_c = _CAR_PAINT[(T(m=_N_CAR) * len(_CAR_PAINT)).astype(int)]
    shirt_c = _CLOTHES[(T(m=_N_PERSON) * len(_CLOTHES)).astype(int)]
    pants_c = _CLOTHES[(T(m=_N_PERSON) * len(_CLOTHES)).astype(int)]
    skin_c = np.stack([T(150, 235, _N_PERSON), T(105, 180, _N_PERSON), T(80, 150, _N_PERSON)], -1)
    sign_c = np.where((T(m=_N_POLE) < 0.5)[..., None], np.float32([40, 80, 170]), np.float32([230, 230, 230]))
    salt = T(0, 100)

    nz = d["coarse"]
    n_mid = upsample_bilinear(nz[:, 0, :8, :8], S) + 0.5 * upsample_bilinear(nz[:, 1], S)  # blotches of a few pixels
    n_cloud = upsample_bilinear(nz[:, 2, :6, :6], S) + 0.5 * upsample_bilinear(nz[:, 2, 6:, 6:], S)
    fine = d["fine"]

    # --- pixel geometry: u right, v down, both in image widths; focal length 1 ---
    u = ((np.arange(S, dtype=np.float32) + 0.5) / S)[None, None, :]
    v = ((np.arange(S, dtype=np.float32) + 0.5) / S)[None, :, None]
    below = v - hor[e]
    with np.errstate(divide="ignore"):
        zg = np.where(below > 0, cam[e] / np.where(below > 0, below, 1), np.inf).astype(np.float32)
    xg = (u - vp[e]) * np.where(np.isfinite(zg), zg, 0)
    px = 0.6 / S  # half a pixel in image widths: thin things stay at least one pixel wide
    cv = _Canvas(n, S)

    def fog(z: np.ndarray, b: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        f = (1 - np.exp(-z / fog_d[b]))[:, None]
        return rgb * (1 - f) + hzc[b] * f

    # sky: zenith-to-horizon gradient with soft clouds
    def sky(b, y, x):
        t = np.clip((hor[b] - v[0, y, 0]) / hor[b], 0, 1) ** 0.6
        rgb = hzc[b] * (1 - t[:, None]) + zen[b] * t[:, None]
        c = np.clip((n_cloud[b, y, x] - 0.9 + clouds[b]) * 1.5, 0, 1) * (clouds[b] > 0.05)
        return rgb * (1 - c[:, None]) + np.array([236, 238, 242], np.float32) * c[:, None]

    # cars are laid out first because the road colour draws their shadows
    car_on = L(m=_N_CAR) < np.array([0.9, 0.7, 0.45, 0.25], np.float32)
    lane = (L(m=_N_CAR) * 4).astype(int)  # 0/1 driving lanes, 2/3 parked at either curb
    lane_off = np.stack([-rh / 2, rh / 2, -rh + 1.1, rh - 1.1], 1)
    car_x = xr[:, None] + np.take_along_axis(lane_off, lane, 1) + L(-0.3, 0.3, _N_CAR)
    car_z = L(4.0, 30.0, _N_CAR)
    car_w, car_h = L(1.6, 1.9, _N_CAR), L(1.3, 1.65, _N_CAR)
    car_front = lane % 2 == 0  # left lanes come towards the camera (head lights), right lanes show tail lights

    # ground: road, sidewalks and terrain strips by lateral position
    gz = np.broadcast_to(zg, (n, S, S))
    ground = np.isfinite(gz)
    road = ground & (np.abs(xg - xr[e]) < rh[e])
    walk = ground & ~road & (xg >= walk_l[e]) & (xg <= walk_r[e])
    terr = ground & ~road & ~walk

    def road_col(b, j, y, x):
        z, xx = gz[b, y, x], xg[b, y, x] - xr[b]
        rgb = road_c[b] * (1.08 - 0.22 * np.clip(z / 25, 0, 1))[:, None]  # perspective darkening
        rgb = rgb * (1 + 0.05 * n_mid[b, y, x])[:, None]
        hw = np.maximum(0.09, px * z)
        centre = (np.abs(xx) < hw) & (((z / dash_p[b]) % 1 < 0.5) | ~dash_on[b])
        edge = np.abs(np.abs(xx) - (rh[b] - 0.3)) < hw
        m = centre | edge
        rgb[m] = mark_c[b[m]] * 0.9
        for k in range(_N_CAR):  # soft contact shadow just in front of each car
            sh = (car_on[b, k] & (np.abs(xg[b, y, x] - car_x[b, k]) < car_w[b, k] / 2)
                  & (z > car_z[b, k] - 0.5) & (z < car_z[b, k]))
            rgb[sh] *= 0.45
        return fog(z, b, rgb)

    def walk_col(b, j, y, x):
        z, xx = gz[b, y, x], xg[b, y, x]
        rgb = walk_c[b] * (1 + 0.04 * n_mid[b, y, x])[:, None]
        fade = np.clip(1 - z / 12, 0, 1)  # tile joints blur away with distance instead of aliasing
        joint = ((xx / tile[b]) % 1 < 0.08) | ((z / tile[b]) % 1 < 0.08)
        rgb = rgb * (1 - 0.18 * joint * fade)[:, None]
        curb = (np.abs(np.abs(xx - xr[b]) - rh[b]) < np.maximum(0.12, px * z))
        rgb[curb] = rgb[curb] * 1.15 + 15
        return fog(z, b, rgb)

    def terr_col(b, j, y, x):
        rgb = ter_c[b] * (1 + 0.12 * n_mid[b, y, x])[:, None]
        return fog(gz[b, y, x], b, rgb)

    cv.paint(road, gz, ROAD, road_col)
    cv.paint(walk, gz, SIDEWALK, walk_col)
    cv.paint(terr, gz, TERRAIN, terr_col)

    # facades: vertical planes x = fac_x on each side, split into segments along z
    for side in range(2):
        xs = fac_x[:, side][e]
        du = u - vp[e]
        ok = (du < 0) if side == 0 else (du > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            zf = np.where(ok, xs / np.where(ok, du, 1), np.inf).astype(np.float32)
        zf = np.ascontiguousarray(np.broadcast_to(zf, (n, S, S)))
        yf = cam[e] - (v - hor[e]) * zf
        seg = (zf[..., None] > bounds[:, side][:, None, None, :]).sum(-1).clip(0, _N_SEG - 1)
        h = np.take_along_axis(seg_h[:, side], seg.reshape(n, -1), 1).reshape(n, S, S)
        kind = np.take_along_axis(seg_kind[:, side], seg.reshape(n, -1), 1).reshape(n, S, S)
        with np.errstate(invalid="ignore"):  # sin(inf) off the facade; masked out by `ok` below
            top = h + (kind == 1) * (0.35 * np.sin(zf * 1.9 + hedge_ph[:, side][e]) + 0.2 * np.sin(zf * 4.3))
        m = ok & (zf > 0.3) & (yf >= 0) & (yf <= top) & (kind != 2)
        lit = 1.0 + 0.12 * sun * (1 if side == 0 else -1)

        def facade(b, j, y, x, side=side, zf=zf, yf=yf, seg=seg, h=h, lit=lit):
            z, yy, s = zf[b, y, x], yf[b, y, x], seg[b, y, x]
            rgb = fac_c[b, side, s] * (1 + 0.05 * n_mid[b, y, x])[:, None]
            rgb *= (0.92 + 0.08 * np.clip(yy / 12, 0, 1))[:, None]
            gf = yy < floor_h[b]  # ground floor: darker shop band
            fz = z / win_w[b] + s * 0.37
            fy = yy / floor_h[b]
            win = (~gf) & ((fz % 1) < win_frac[b]) & ((fy % 1) > 1 - win_row[b]) & (yy < h[b, y, x] - 0.6)
            shade = 0.7 + 0.6 * _hash(np.floor(fz), np.floor(fy), salt[b])
            wc = win_c[b] * shade[:, None]
            detail = np.clip(1.2 - z / 40, 0, 1)[:, None]  # distant windows blend into the wall colour
            rgb = np.where(win[:, None], wc * detail + rgb * 0.75 * (1 - detail), rgb)
            rgb = np.where(gf[:, None], rgb * 0.7, rgb)
            edge = ((bounds[b, side, np.maximum(s - 1, 0)] - z) > -0.25) & (s > 0)
            cornice = yy > h[b, y, x] - 0.35
            rgb = np.where((edge | cornice)[:, None], rgb * 0.72, rgb)
            return fog(z, b, rgb * lit[b][:, None])

        def hedge(b, j, y, x, zf=zf):
            t = n_mid[b, y, x] + 0.6 * fine[b, y, x]
            rgb = veg_c[b] * (1 + 0.22 * t)[:, None]
            return fog(zf[b, y, x], b, rgb)

        cv.paint(m & (kind == 0), zf, BUILDING, facade)
        cv.paint(m & (kind == 1), zf, VEG, hedge)

    # billboard objects stand upright at their ground contact depth z; each slot is drawn only for the items
    # that have it (index ia; j indexes within ia), with (a, yy) = metres across / above the ground contact
    def slot(on: np.ndarray, xc: np.ndarray, zc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ia = np.nonzero(on)[0]
        a = (u - vp[ia][e]) * zc[ia][e] - xc[ia][e]
        yy = cam[ia][e] - (v - hor[ia][e]) * zc[ia][e]
        a, yy = np.broadcast_arrays(a, yy)
        return ia, a, yy

    for k in range(_N_CAR):
        ia, a, yy = slot(car_on[:, k], car_x[:, k], car_z[:, k])
        w, hc, zc = car_w[ia, k][e] / 2, car_h[ia, k][e], car_z[ia, k][e]
        inset = 0.12 + 0.2 * np.clip((yy - 0.55 * hc) / (0.45 * hc), 0, 1)
        pxm = px * zc
        cabin = (yy >= 0.55 * hc) & (yy <= hc) & (np.abs(a) < w * (1 - inset) + pxm)
        body = (yy >= 0.2) & (yy < 0.6 * hc) & (np.abs(a) < w + pxm)
        wheel = (yy >= 0) & (yy < 0.38) & (np.abs(a) < w - 0.02) & (np.abs(a) > w - 0.42)

        def car(b, j, y, x, a=a, yy=yy, k=k):
            aa, hh, ww, hk = a[j, y, x], yy[j, y, x], car_w[b, k] / 2, car_h[b, k]
            rgb = car_c[b, k] * (0.8 + 0.35 * np.clip(hh / hk, 0, 1))[:, None]
            slope = 1.02 - 0.25 * (hh / hk - 0.6) / 0.4  # windows follow the tapering cabin
            glass = (hh > 0.62 * hk) & (hh < 0.95 * hk) & (np.abs(aa) < ww * 0.72 * slope)
            g = np.array([45, 55, 68], np.float32) + 40 * np.clip((hh / hk - 0.62) / 0.33, 0, 1)[:, None]
            rgb = np.where(glass[:, None], g, rgb)
            lamp = (hh > 0.4 * hk) & (hh < 0.5 * hk) & (np.abs(aa) > ww - 0.35) & (np.abs(aa) < ww - 0.05)
            lamp_c = np.where(car_front[b, k][:, None], np.float32([240, 235, 200]), np.float32([200, 25, 20]))
            rgb = np.where(lamp[:, None], lamp_c, rgb)
            plate = (hh > 0.26 * hk) & (hh < 0.36 * hk) & (np.abs(aa) < 0.26)
            rgb = np.where(plate[:, None], np.array([225, 225, 220], np.float32), rgb)
            dark = (hh < 0.2) | ((hh < 0.27) & (np.abs(aa) < ww))
            rgb = np.where(dark[:, None], np.array([25, 25, 28], np.float32), rgb)
            return fog(car_z[b, k], b, rgb * (1 + 0.03 * fine[b, y, x])[:, None])

        cv.paint(cabin | body | wheel, zc, CAR, car, ia)

    # trees on the sidewalk or terrain: trunk plus a lumpy crown
    tree_on = L(m=_N_TREE) < np.array([0.75, 0.6, 0.45, 0.3], np.float32)
    tree_side = L(m=_N_TREE) < 0.5
    tree_x = np.where(tree_side, walk_l[:, None] + L(0.3, 0.9, _N_TREE), walk_r[:, None] - L(0.3, 0.9, _N_TREE))
    tree_z, trunk_h, crown_r = L(3.0, 35.0, _N_TREE), L(1.4, 2.6, _N_TREE), L(1.0, 2.1, _N_TREE)
    lump = L(0, 2 * np.pi, 2 * _N_TREE).reshape(n, 2, _N_TREE)
    for k in range(_N_TREE):
        ia, a, yy = slot(tree_on[:, k], tree_x[:, k], tree_z[:, k])
        r, zt = crown_r[ia, k][e], tree_z[ia, k][e]
        cy = trunk_h[ia, k][e] + 0.75 * r
        ang = np.arctan2(yy - cy, a)
        l0, l1 = lump[ia, 0, k][e], lump[ia, 1, k][e]
        rr = r * (1 + 0.07 * np.sin(5 * ang + l0) + 0.07 * np.sin(3 * ang + l1) + 0.04 * np.sin(9 * ang + l0 - l1))
        crown = (a / 0.9) ** 2 + (yy - cy) ** 2 < rr**2
        trunk = (np.abs(a) < np.maximum(0.13, px * zt)) & (yy >= 0) & (yy < cy)

        def tree(b, j, y, x, a=a, yy=yy, crown=crown, k=k):
            t = n_mid[b, y, x] + 0.7 * fine[b, y, x]
            r = crown_r[b, k]
            hh = (yy[j, y, x] - trunk_h[b, k]) / r - 0.75
            lightness = 0.85 + 0.25 * np.clip(hh + 0.3 * a[j, y, x] * sun[b] / r, -1, 1)
            rgb = veg_c[b] * ((1 + 0.28 * t) * lightness)[:, None]
            bark = np.array([80, 62, 48], np.float32) * (1 + 0.05 * fine[b, y, x])[:, None]
            rgb = np.where(crown[j, y, x][:, None], rgb, bark)
            return fog(tree_z[b, k], b, rgb)

        cv.paint(crown | trunk, zt, VEG, tree, ia)

    # poles at the curb, some carrying a traffic sign or a traffic light
    pole_on = L(m=_N_POLE) < np.array([0.8, 0.6, 0.4, 0.25], np.float32)
    pole_side = L(m=_N_POLE) < 0.5
    pole_x = np.where(pole_side, (xr - rh)[:, None] - L(0.25, 0.5, _N_POLE), (xr + rh)[:, None] + L(0.25, 0.5, _N_POLE))
    pole_z, pole_h = L(3.0, 40.0, _N_POLE), L(3.5, 6.0, _N_POLE)
    attach = (L(m=_N_POLE) * 3).astype(int)  # 0 bare, 1 sign, 2 traffic light
    round_sign = L(m=_N_POLE) < 0.5
    for k in range(_N_POLE):
        ia, a, yy = slot(pole_on[:, k], pole_x[:, k], pole_z[:, k])
        zp, hp = pole_z[ia, k][e], pole_h[ia, k][e]
        hw = np.maximum(0.08, px * zp)
        pole = (np.abs(a) < hw) & (yy >= 0) & (yy < hp)
        sy = hp - 0.45
        disc, rect = a**2 + (yy - sy) ** 2 < 0.36**2, (np.abs(a) < 0.32) & (np.abs(yy - sy) < 0.38)
        plate = np.where(round_sign[ia, k][e], disc, rect)
        sign = (attach[ia, k][e] == 1) & plate
        light = (attach[ia, k][e] == 2) & (np.abs(a) < np.maximum(0.2, px * zp)) & (yy > hp - 1.0) & (yy < hp + 0.05)

        def pole_col(b, j, y, x, a=a, k=k):
            hw = np.maximum(0.08, px * pole_z[b, k])
            shade = 0.75 + 0.5 * np.clip(0.5 + a[j, y, x] / (2 * hw) * sun[b], 0, 1)  # round pole, lit from one side
            return fog(pole_z[b, k], b, (150 * shade * (1 + 0.04 * fine[b, y, x]))[:, None].repeat(3, 1))

        def sign_col(b, j, y, x, a=a, yy=yy, k=k):
            rim = np.maximum(np.abs(a[j, y, x]), np.abs(yy[j, y, x] - pole_h[b, k] + 0.45)) > 0.26
            rgb = np.where((rim & round_sign[b, k])[:, None], np.array([210, 40, 40], np.float32), sign_c[b, k])
            return fog(pole_z[b, k], b, rgb)

        def light_col(b, j, y, x, yy=yy, k=k):
            lamp = np.clip(((pole_h[b, k] - yy[j, y, x]) * 3).astype(int), 0, 2)
            on = lamp == (salt[b] * 7).astype(int) % 3
            lit = np.array([[220, 40, 30], [240, 180, 30], [40, 220, 90]], np.float32)[lamp]
            rgb = np.where(on[:, None], lit, np.array([35, 35, 30], np.float32))
            return fog(pole_z[b, k], b, rgb)

        cv.paint(pole, zp, POLE, pole_col, ia)
        cv.paint(sign, zp - 0.05, SIGN, sign_col, ia)  # mounted just in front of the pole
        cv.paint(light, zp - 0.05, LIGHT, light_col, ia)

    # people walking on the sidewalks
    pers_on = L(m=_N_PERSON) < np.array([0.55, 0.25], np.float32)
    pers_side = L(m=_N_PERSON) < 0.5
    pers_x = np.where(pers_side, (xr - rh)[:, None] - L(0.5, 1.4, _N_PERSON),
                      (xr + rh)[:, None] + L(0.5, 1.4, _N_PERSON))
    pers_z, pers_h, stride = L(3.0, 20.0, _N_PERSON), L(1.55, 1.9, _N_PERSON), L(0.0, 0.25, _N_PERSON)
    for k in range(_N_PERSON):
        ia, a, yy = slot(pers_on[:, k], pers_x[:, k], pers_z[:, k])
        zp, hp, st = pers_z[ia, k][e], pers_h[ia, k][e], stride[ia, k][e]
        pxm = px * zp
        head = a**2 + (yy - (hp - 0.12)) ** 2 < np.maximum(0.12, pxm) ** 2
        torso = (np.abs(a) < 0.21) & (yy > 0.82) & (yy < hp - 0.22)
        arms = (np.abs(np.abs(a) - 0.25) < np.maximum(0.05, pxm)) & (yy > 0.78) & (yy < hp - 0.3)
        spread = 0.09 + st * np.clip((0.88 - yy) / 0.88, 0, 1)
        legs = (np.abs(np.abs(a) - spread) < np.maximum(0.075, pxm)) & (yy >= 0) & (yy <= 0.88)

        def person(b, j, y, x, yy=yy, k=k):
            hh, hp = yy[j, y, x], pers_h[b, k]
            rgb = np.where((hh > 0.86)[:, None], shirt_c[b, k], pants_c[b, k])
            rgb = np.where((hh > hp - 0.24)[:, None], skin_c[b, k], rgb)
            rgb = np.where((hh > hp - 0.1)[:, None], np.array([40, 30, 25], np.float32), rgb)  # hair
            return fog(pers_z[b, k], b, rgb * (1 + 0.04 * fine[b, y, x])[:, None])

        cv.paint(head | torso | arms | legs, zp, PERSON, person, ia)

    b, y, x = np.nonzero(np.isinf(cv.z))  # whatever nothing covered is sky
    cv.rgb[b, y, x] = sky(b, y, x)

    # global exposure and sensor noise; both are texture, so labels stay exact
    rgb = cv.rgb * bright[:, None, None, None] + (2.5 * fine)[..., None]
    photo = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    # the nearest visible point (bottom image row) is >= 1.6 units away, so depth stays above 0.5
    depth = np.minimum(cv.z * DEPTH_SCALE, MAX_DEPTH).astype(np.float32)
    return cv.lab, photo, depth
