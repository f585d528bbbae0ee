"""What `fal refine` writes besides refine.json: every step's samples and D's maps, and the grid (toy: scatter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from falcli.commands.refine.common import GRID_ROWS, TILE, Collected
from falcli.core.files import Files, PointFiles, VoxelFiles
from falcli.core.feedback import Unrolled
from falcli.core.pictures import heatmap, labelled, save_png, tile, to_uint8
from falcli.core.plots import toy_steps_figure
from falcli.core.render import render_voxels
from falcli.methods import refinement
from falcli.tasks.toy import sample_mixture
from falcli.tasks.voxel import occupancy

TITLE_HEIGHT = 14                       # pixels of the line above the grid


def write_steps(out: Unrolled, names: list[str], files: Files, folder: Path, collected: Collected) -> None:
    """Each step's samples into step-t/, D's map of each into heatmaps/step-t/; scores summed per step."""
    for t, (x, logits) in enumerate(zip(out.samples, out.logits), start=1):
        collected.scores[t - 1] += float(torch.sigmoid(logits.float()).flatten(1).mean(1).sum())
        if collected.logits:
            collected.logits[t - 1] += float(refinement.score(logits).sum())
        if len(collected.samples) < t:
            collected.samples.append([])
        collected.samples[t - 1].append(x.detach().cpu())
        if isinstance(files, PointFiles):  # all points of a step go into one file, at the end
            continue
        files.write(x, names, folder / f"step-{t}")
        for name, picture in zip(names, _heatmaps(logits, x)):
            save_png(picture, folder / "heatmaps" / f"step-{t}" / f"{name}.png")


def _heatmaps(logits: torch.Tensor, x: torch.Tensor, size: int | None = None) -> np.ndarray:
    """D's map as (b, H, W, 3) pictures: images at their size; voxel maps seen from above (mean over z)."""

    if logits.dim() == 5:
        return heatmap(logits.float().mean(dim=-1), (size or x.shape[-1],) * 2)
    return heatmap(logits, (size or x.shape[-2], size or x.shape[-1]))


def collect(out: Unrolled, condition: torch.Tensor | None, reconstruction: torch.Tensor | None,
            collected: Collected) -> None:
    if condition is not None:
        collected.all_conditions.append(condition.cpu())
    if not collected.wants_rows():
        return
    keep = GRID_ROWS - collected.shown_rows()
    collected.shown.append(Unrolled([x[:keep].cpu() for x in out.samples], [m[:keep].cpu() for m in out.logits]))
    if condition is not None:
        collected.conditions.append(condition[:keep].cpu())
    if reconstruction is not None:
        collected.reconstructions.append(reconstruction[:keep].cpu())


def write_figure(recipe, files: Files, collected: Collected, folder: Path, title: str) -> str:
    """Toy: every step's points (step-t/points.npy) and a scatter figure; others: the grid picture, its columns
    labelled, `title` above it and D's colour scale below."""
    if isinstance(files, PointFiles):
        steps = collected.steps()
        for t, points in enumerate(steps, start=1):
            files.write(points, [], folder / f"step-{t}")
        real = sample_mixture(recipe.data, 2000, torch.Generator().manual_seed(recipe.seed + 1))
        toy_steps_figure(real, Unrolled(steps, []), folder / "scatter.png")
        return "scatter.png"
    rows = grid_rows(files, collected)
    picture = labelled(tile(rows), rows, column_labels=grid_columns(collected), colour_scale=True)
    save_png(titled(picture, title), folder / "grid.png")
    return "grid.png"


def grid_columns(collected: Collected) -> list[str]:
    """The grid's column labels, in grid_rows' order."""
    steps = len(collected.shown[0].samples)
    return ((["input"] if collected.conditions else []) + (["G(z*)"] if collected.reconstructions else [])
            + [f"t={t}" for t in range(1, steps + 1)] + [f"D t={t}" for t in range(1, steps + 1)])


def titled(picture: np.ndarray, title: str) -> np.ndarray:
    """`picture` with one line of text above it."""
    canvas = Image.new("RGB", (max(picture.shape[1], 6 * len(title) + 4), picture.shape[0] + TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(picture), (0, TITLE_HEIGHT))
    ImageDraw.Draw(canvas).text((2, 1), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def grid_rows(files: Files, collected: Collected) -> list[list[np.ndarray]]:
    """One row per sample: input (translation) | G(z*) (after inversion) | t = 1..T | D's map at t = 1..T."""

    def pictures(x: torch.Tensor) -> list[np.ndarray]:
        if isinstance(files, VoxelFiles):

            return [render_voxels(g, TILE) for g in occupancy(x)]
        return list(to_uint8(x))

    steps = len(collected.shown[0].samples)
    samples = [torch.cat([u.samples[t] for u in collected.shown]) for t in range(steps)]
    maps = [torch.cat([u.logits[t] for u in collected.shown]) for t in range(steps)]
    columns: list[list[np.ndarray]] = []
    if collected.conditions:
        columns.append(list(to_uint8(torch.cat(collected.conditions))))
    if collected.reconstructions:
        columns.append(pictures(torch.cat(collected.reconstructions)))
    columns += [pictures(x) for x in samples]
    size = TILE if isinstance(files, VoxelFiles) else None
    columns += [list(_heatmaps(m, x, size)) for m, x in zip(maps, samples)]
    return [list(row) for row in zip(*columns)]
