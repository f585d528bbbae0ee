"""Built-in procedural voxel objects: a download-free stand-in for ShapeNet (airplane, car, vessel, chair).

Each object is a union of boxes, cylinders and ellipsoids with random proportions, in canonical pose (x front, z up).
"""
from __future__ import annotations

import numpy as np

from falcli.errors import FalError

RESOLUTIONS = (32, 64)
PRIMITIVE_CLASSES: list[str] = ["airplane", "car", "vessel", "chair"]
CHUNK_VOXELS = 1 << 22  # grids built together: amortises numpy calls without a huge float working set
_N_UNIFORM = 48


def meta(classes: list[str] | None = None) -> dict:
    """The dataset description `fal prepare` writes for voxel datasets, for the built-in primitives."""
    return {"kind": "voxels", "classes": list(_check_classes(classes))}


def _check_classes(classes: list[str] | None) -> list[str]:
    if classes is None:
        return list(PRIMITIVE_CLASSES)
    if isinstance(classes, str):
        classes = [classes]
    bad = [c for c in classes if c not in PRIMITIVE_CLASSES]
    if bad or not classes:
        raise FalError(f"unknown primitive class {', '.join(map(repr, bad)) or '(none given)'} "
                       f"(valid: {', '.join(PRIMITIVE_CLASSES)})")
    return list(classes)


def make_primitives(n: int, resolution: int = 32, seed: int = 0,
                    classes: list[str] | None = None) -> dict[str, np.ndarray]:
    """Generate `n` voxel objects; item i's class is classes[i % len(classes)] and its shape depends on (seed, i).

    Returns voxels (n,R,R,R) uint8 in {0,1} indexed [x, y, z] with z up, and labels (n,) int64 indexing
    PRIMITIVE_CLASSES (not the `classes` subset), so labels mean the same thing whatever subset was asked for.
    """
    if resolution not in RESOLUTIONS:
        raise FalError(f"primitives resolution {resolution} is not supported (resolution must be 32 or 64)")
    if n < 0:
        raise FalError(f"primitives n must be >= 0, got {n}")
    names = _check_classes(classes)
    labels = np.array([PRIMITIVE_CLASSES.index(names[i % len(names)]) for i in range(n)], np.int64)
    voxels = np.empty((n, resolution, resolution, resolution), np.uint8)
    chunk = max(1, CHUNK_VOXELS // resolution**3)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        u = np.array([np.random.default_rng([seed, i]).random(_N_UNIFORM) for i in range(start, stop)], np.float32)
        for cls in np.unique(labels[start:stop]):
            sel = np.nonzero(labels[start:stop] == cls)[0]
            voxels[start + sel] = _BUILDERS[PRIMITIVE_CLASSES[cls]](_Grid(u[sel], resolution))
    return {"voxels": voxels, "labels": labels}


class _Grid:
    """Voxel-centre coordinates of m grids, each in its own scaled/offset object frame, plus its uniforms.

    Coordinates are kept per axis ((m,R,1,1), (m,1,R,1), (m,1,1,R)) so primitives cost one broadcast each.
    """

    def __init__(self, u: np.ndarray, R: int):
        self.u, self.k, self.R = u, 0, R
        c = (np.arange(R, dtype=np.float32) + 0.5) / R * 2 - 1
        scale = self.U(0.78, 0.97)  # objects fill most of the grid, as in ShapeNet's normalised voxelisations
        off = [self.U(-0.03, 0.03) for _ in range(3)]
        self.x = ((c[None] - off[0][:, None]) / scale[:, None])[:, :, None, None]
        self.y = ((c[None] - off[1][:, None]) / scale[:, None])[:, None, :, None]
        self.z = ((c[None] - off[2][:, None]) / scale[:, None])[:, None, None, :]
        self.thin = (1.1 / R) / scale  # half a voxel in object units: thinner parts could fall between centres

    def U(self, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """The next per-item uniform, mapped to [lo, hi): (m,)."""
        col = self.u[:, self.k]
        self.k += 1
        return (lo + (hi - lo) * col).astype(np.float32)

    def t(self, half: np.ndarray) -> np.ndarray:
        """A half thickness made at least one voxel thick, broadcastable against the grid."""
        return np.maximum(_b(half), _b(self.thin))

    def box(self, cx, cy, cz, hx, hy, hz) -> np.ndarray:
        """Axis-aligned box with centre c and half sizes h (each (m,)): (m,R,R,R) bool."""
        return ((np.abs(self.x - _b(cx)) < self.t(hx)) & (np.abs(self.y - _b(cy)) < self.t(hy))
                & (np.abs(self.z - _b(cz)) < self.t(hz)))

    def ellipsoid(self, cx, cy, cz, rx, ry, rz) -> np.ndarray:
        """Axis-aligned ellipsoid: (m,R,R,R) bool."""
        return (((self.x - _b(cx)) / self.t(rx)) ** 2 + ((self.y - _b(cy)) / self.t(ry)) ** 2
                + ((self.z - _b(cz)) / self.t(rz)) ** 2) < 1

    def cyl_x(self, cx, cy, cz, r, half) -> np.ndarray:
        """Cylinder along x: (m,R,R,R) bool."""
        disc = ((self.y - _b(cy)) ** 2 + (self.z - _b(cz)) ** 2) < self.t(r) ** 2
        return disc & (np.abs(self.x - _b(cx)) < self.t(half))

    def cyl_y(self, cx, cy, cz, r, half) -> np.ndarray:
        """Cylinder along y (wheels): (m,R,R,R) bool."""
        disc = ((self.x - _b(cx)) ** 2 + (self.z - _b(cz)) ** 2) < self.t(r) ** 2
        return disc & (np.abs(self.y - _b(cy)) < self.t(half))

    def cyl_z(self, cx, cy, cz, r, half) -> np.ndarray:
        """Vertical cylinder (masts, legs): (m,R,R,R) bool."""
        disc = ((self.x - _b(cx)) ** 2 + (self.y - _b(cy)) ** 2) < self.t(r) ** 2
        return disc & (np.abs(self.z - _b(cz)) < self.t(half))


def _b(a) -> np.ndarray:
    """(m,) -> (m,1,1,1); scalars and already-broadcastable (m,.,.,.) arrays pass through."""
    a = np.asarray(a, np.float32)
    return a.reshape(-1, 1, 1, 1) if a.ndim == 1 else a


def _airplane(g: _Grid) -> np.ndarray:
    """Fuselage along x (nose at +x), swept wings, tailplane and fin, sometimes two engines."""
    L, rf = g.U(0.82, 1.0), g.U(0.08, 0.13)
    x, y, z = g.x, g.y, g.z
    fus = (y**2 + z**2) < g.t(rf) ** 2 * np.clip(1 - (x / _b(L)) ** 4, 0, 1)  # rounded nose and tail
    wx, span, chord = g.U(-0.2, 0.1) * L, g.U(0.7, 0.98), g.U(0.2, 0.34)
    sweep, wz, wt = g.U(0.0, 0.45), g.U(-0.6, 0.1) * rf, g.U(0.02, 0.035)
    ay = np.abs(y)
    wing = ((ay < _b(span)) & (np.abs(x - _b(wx) + _b(sweep) * ay) < _b(chord / 2) * (1 - 0.55 * ay / _b(span)))
            & (np.abs(z - _b(wz)) < g.t(wt)))
    tx, tspan = -0.86 * L, g.U(0.22, 0.36)
    tail = ((ay < _b(tspan)) & (np.abs(x - _b(tx) + _b(sweep) * ay) < g.t(0.07 * (1 - 0.4 * ay / _b(tspan))))
            & (np.abs(z - _b(0.2 * rf)) < g.t(wt)))
    fin_h, fin_l = g.U(0.22, 0.4), g.U(0.18, 0.3)
    zr = np.clip(z / _b(fin_h), 0, None)
    fin = ((np.abs(y) < g.t(wt)) & (z >= 0) & (z < _b(fin_h))
           & (x > _b(-0.95 * L) + _b(fin_l) * 0.7 * zr) & (x < _b(-0.95 * L + fin_l) + _b(fin_l) * 0.2 * zr))
    eng_on, ey, er = g.U() < 0.6, g.U(0.3, 0.5) * span, g.U(0.045, 0.07)
    eng = (g.cyl_x(wx + 0.05 - sweep * ey, ey, wz - er - 0.01, er, 0.13)
           | g.cyl_x(wx + 0.05 - sweep * ey, -ey, wz - er - 0.01, er, 0.13)) & _b(eng_on).astype(bool)
    return (fus | wing | tail | fin | eng).astype(np.uint8)


def _car(g: _Grid) -> np.ndarray:
    """Box body, tapered cabin and four wheels on a ground plane (front at +x)."""
    Lc, Wc, rw = g.U(0.78, 0.95), g.U(0.34, 0.44), g.U(0.13, 0.19)
    ground = g.U(-0.45, -0.3)
    zb = ground + 0.85 * rw  # body rides above the ground so the wheels show beneath it
    hb = g.U(0.18, 0.3)
    body = g.box(0 * Lc, 0 * Lc, zb + hb / 2, Lc, Wc, hb / 2)
    ch, cl, cx = g.U(0.14, 0.26), g.U(0.32, 0.55), g.U(-0.25, 0.05)
    ztop = zb + hb
    rel = np.clip((g.z - _b(ztop)) / _b(ch), 0, 1)
    cabin = ((np.abs(g.x - _b(cx)) < _b(cl) * (1 - 0.35 * rel)) & (np.abs(g.y) < _b(0.86 * Wc))
             & (g.z >= _b(ztop) - g.t(0)) & (g.z < _b(ztop + ch)))
    xw, ww = g.U(0.55, 0.72) * Lc, g.U(0.06, 0.09)
    wheels = np.zeros_like(body)
    for sx in (-1, 1):
        for sy in (-1, 1):
            wheels |= g.cyl_y(sx * xw, sy * (Wc - 0.5 * ww), ground + rw, rw, ww)
    return (body | cabin | wheels).astype(np.uint8)


def _vessel(g: _Grid) -> np.ndarray:
    """Hull tapering to a bow at +x with a rising keel, a deck house, and a mast (sometimes with a sail)."""
    L, W, D = g.U(0.85, 1.0), g.U(0.2, 0.32), g.U(0.18, 0.3)
    bow, zd = g.U(0.35, 0.6) * L, g.U(-0.2, -0.05)
    x, y, z = g.x, g.y, g.z
    taper = np.clip((_b(L) - x) / _b(bow), 0, 1)
    w = np.maximum(_b(W) * np.sqrt(taper), g.t(0))
    depth = _b(D) * (1 - 0.55 * np.clip((x - _b(L - bow)) / _b(bow), 0, 1))
    hull = (x > _b(-L)) & (x < _b(L)) & (z <= _b(zd)) & ((y / w) ** 2 + ((_b(zd) - z) / depth) ** 2 < 1)
    hx, hl, hh = g.U(-0.55, -0.15) * L, g.U(0.14, 0.28), g.U(0.1, 0.22)
    house = g.box(hx, 0 * L, zd + hh / 2, hl, 0.72 * W, hh / 2)
    tier = g.box(hx - 0.2 * hl, 0 * L, zd + hh + hh / 3, 0.55 * hl, 0.5 * W, hh / 3) & _b(g.U() < 0.5).astype(bool)
    mx, mh = g.U(-0.05, 0.3) * L, g.U(0.4, 0.7)
    mast = g.cyl_z(mx, 0 * L, zd + mh / 2, 0.02, mh / 2)
    sail_len = g.U(0.3, 0.55) * L
    sail = ((np.abs(y) < g.t(0.01)) & (z > _b(zd + 0.12)) & (z < _b(zd + mh))
            & (x > _b(mx)) & (x < _b(mx) + _b(sail_len) * (_b(zd + mh) - z) / _b(mh - 0.12)))
    sail &= _b(g.U() < 0.4).astype(bool)
    return (hull | house | tier | mast | sail).astype(np.uint8)


def _chair(g: _Grid) -> np.ndarray:
    """Seat on four legs with a (sometimes slatted, sometimes tilted) backrest at -x, sometimes armrests."""
    sd, sw, st = g.U(0.3, 0.45), g.U(0.3, 0.45), g.U(0.035, 0.07)
    zs, leg_h, lt = g.U(-0.25, -0.05), g.U(0.45, 0.65), g.U(0.025, 0.055)
    seat = g.box(0 * sd, 0 * sd, zs + st, sd, sw, st)
    legs = np.zeros_like(seat)
    for sx in (-1, 1):
        for sy in (-1, 1):
            legs |= g.box(sx * (sd - lt), sy * (sw - lt), zs - leg_h / 2, lt, lt, leg_h / 2)
    bh, bt, tilt = g.U(0.4, 0.75), g.U(0.025, 0.05), g.U(0.0, 0.25)
    zb0 = zs + 2 * st
    rel = np.clip((g.z - _b(zb0)) / _b(bh), 0, 1)
    back_x = _b(-sd + bt) - _b(tilt) * rel * _b(bh)
    back = ((np.abs(g.x - back_x) < g.t(bt)) & (np.abs(g.y) < _b(sw)) & (g.z >= _b(zb0)) & (g.z < _b(zb0 + bh)))
    slats = g.U() < 0.4
    n_gap = np.floor(g.U(3, 6))
    phase = (g.y / _b(2 * sw) + 0.5) * _b(n_gap)
    gap = ((phase % 1) < 0.45) & (np.abs(g.y) < _b(sw) - g.t(lt)) & (g.z < _b(zb0 + bh) - g.t(0.08))
    back &= ~(gap & _b(slats).astype(bool))
    arm_on, ah = g.U() < 0.3, g.U(0.18, 0.28)
    arms = np.zeros_like(seat)
    for sy in (-1, 1):
        arms |= g.box(0 * sd, sy * (sw - lt), zs + 2 * st + ah, sd, lt, 0.025)
        arms |= g.box(sd - lt, sy * (sw - lt), zs + 2 * st + ah / 2, lt, lt, ah / 2)
    arms &= _b(arm_on).astype(bool)
    return (seat | legs | back | arms).astype(np.uint8)


_BUILDERS = {"airplane": _airplane, "car": _car, "vessel": _vessel, "chair": _chair}
