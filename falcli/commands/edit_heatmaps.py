"""`fal edit-heatmaps`: EqGAN-SA's spatial editing, which the official repository announced but never released.

The same latents and heatmap codes are sampled once per requested centre, with the level-1 heatmap's centre
moved there (the sub-centres keep their offsets, so they move along). One row per centre: the level-1 heatmap,
then the samples. If G learnt to follow its heatmaps, the objects move with the centre.
"""
from __future__ import annotations

from pathlib import Path

import torch

from falcli.core.feedback import unroll
from falcli.core.pictures import save_png, tile, to_uint8
from falcli.core.runtime import pick_device
from falcli.errors import FalError
from falcli.methods import eqgan_sa
from falcli.resolve import restore


def parse_centre(text: str) -> tuple[float, float]:
    """'y,x' with both in [−1, 1] (−1 = top / left)."""
    try:
        y, x = (float(part) for part in text.split(","))
    except ValueError:
        raise FalError(f"--centre {text!r}: expected y,x, e.g. --centre=-0.5,0.5 (−1 = top/left, 1 = bottom/right)") \
            from None
    if not (-1 <= y <= 1 and -1 <= x <= 1):
        raise FalError(f"--centre {text!r}: both coordinates must be in [-1, 1]")
    return y, x


@torch.no_grad()
def edited_rows(G, D, recipe, centres: list[tuple[float, float]], count: int, seed: int, steps: int,
                width: float | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per centre: (level-1 heatmap (1, S, S) in [0, 1], the last step's samples (count, 3, S, S) in [-1, 1])."""
    device = next(G.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(count, recipe.model.latent_dim, generator=generator)
    code = eqgan_sa.fixed_code(count, generator)
    if width is not None:
        code[:, 2] = width
    rows = []
    for centre in centres:
        moved = eqgan_sa.move_centre(code, centre)
        out = unroll(G, D, torch.cat([z, moved], 1).to(device), None, steps, recipe.feedback, lambda x: x)
        level1 = eqgan_sa.render_heatmaps(moved[:1], recipe.data.image_size)[0][0]
        rows.append((level1.clamp(0, 1), out.samples[-1].cpu()))
    return rows


def edit_picture(ckpt: Path, centres: list[str], out: Path, count: int = 8, seed: int = 0,
                 steps: int | None = None, width: float | None = None, device: str = "auto") -> Path:
    """Write the editing grid of an EqGAN-SA checkpoint to a new PNG `out`."""
    if out.exists():
        raise FalError(f"{out} already exists; choose another --out (pictures are never overwritten)")
    if out.suffix.lower() != ".png":
        raise FalError(f"--out {out}: the picture is a PNG; give a path ending in .png")
    blocking = next((folder for folder in out.parents if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise FalError(f"--out {out}: {blocking} is a file, not a folder; choose another --out")
    if not centres:
        raise FalError("give at least one --centre y,x (e.g. --centre=-0.5,-0.5 --centre=0.5,0.5)")
    if count < 1 or (steps is not None and steps < 1):
        raise FalError("--count and --steps must be >= 1")
    if width is not None and not 0 < width <= 2:
        raise FalError(f"--width {width}: the level-1 width σ must be in (0, 2] (training draws 0.5 … 1)")
    points = [parse_centre(text) for text in centres]
    recipe, G, D, G_ema, _ = restore(ckpt, pick_device(device))
    if not recipe.method.eqgan_sa:  # only tasks that support EqGAN-SA (methods.check) train with it on
        raise FalError(f"{ckpt}: not an EqGAN-SA run (method.eqgan_sa is off), so its G reads no heatmaps")
    rows = edited_rows(G_ema if G_ema is not None else G, D, recipe, points, count, seed,
                       steps or recipe.feedback.sampling_steps, width)
    pictures = [[to_uint8(heat[None] * 2 - 1)[0]] + list(to_uint8(samples)) for heat, samples in rows]
    save_png(tile(pictures), out)
    return out
