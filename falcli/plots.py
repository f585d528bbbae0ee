"""Figures drawn with matplotlib (Agg backend, so they work on machines without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402

from falcli.feedback import Unrolled  # noqa: E402


def _scatter_real(ax, real: torch.Tensor) -> None:
    ax.scatter(real[:, 0], real[:, 1], s=2, c="#bbbbbb", label="real")


def toy_steps_figure(real: torch.Tensor, unrolled: Unrolled, path: Path) -> None:
    """One panel per feedback step: real points in grey, that step's samples in blue."""
    real = real.detach().float().cpu()
    steps = len(unrolled.samples)
    fig, axes = plt.subplots(1, steps, figsize=(3.2 * steps, 3.2), squeeze=False)
    for t, (ax, sample) in enumerate(zip(axes[0], unrolled.samples), start=1):
        sample = sample.detach().float().cpu()
        _scatter_real(ax, real)
        ax.scatter(sample[:, 0], sample[:, 1], s=2, c="#1f77b4")
        ax.set_title(f"t = {t}")
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def toy_poster_figure(real: torch.Tensor, runs: dict[str, tuple[Unrolled, object]], grid_logits,
                      extent: float, path: Path) -> None:
    """The paper-poster view: real data and D's decision surface; for each model, samples at t = 1..T with
    arrows from each sample's previous position; samples D called fake at the previous step in red.

    runs: label → (unrolled samples and logits, unused); grid_logits: label → (G×G) D logits over the square
    [-extent, extent]², drawn as the decision surface σ(D).
    """
    real = real.detach().float().cpu()
    steps = max(len(u.samples) for u, _ in runs.values())
    fig, axes = plt.subplots(len(runs), steps + 1, figsize=(3.1 * (steps + 1), 3.1 * len(runs)), squeeze=False)
    for row, (label, (unrolled, _)) in enumerate(runs.items()):
        ax = axes[row][0]
        surface = torch.sigmoid(grid_logits[label].float()).numpy()
        image = ax.imshow(surface, origin="lower", extent=(-extent, extent, -extent, extent), cmap="RdBu",
                          vmin=0, vmax=1)
        ax.scatter(real[:, 0], real[:, 1], s=1, c="k")
        ax.set_title(f"{label}: real data and σ(D)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        for t in range(steps):
            ax = axes[row][t + 1]
            ax.set_xlim(-extent, extent), ax.set_ylim(-extent, extent), ax.set_aspect("equal")
            if t >= len(unrolled.samples):
                ax.axis("off")
                continue
            _scatter_real(ax, real)
            sample = unrolled.samples[t].detach().float().cpu()
            if t == 0:
                ax.scatter(sample[:, 0], sample[:, 1], s=3, c="#1f77b4")
            else:
                previous = unrolled.samples[t - 1].detach().float().cpu()
                flagged = (unrolled.logits[t - 1].detach().float().cpu().squeeze(1) < 0)  # D said "fake"
                ax.scatter(sample[~flagged, 0], sample[~flagged, 1], s=3, c="#1f77b4", label="D: real")
                ax.scatter(sample[flagged, 0], sample[flagged, 1], s=5, c="#d62728", label="D: fake at t-1")
                moved = previous[flagged][:150]  # a readable number of arrows
                delta = (sample[flagged] - previous[flagged])[:150]
                ax.quiver(moved[:, 0], moved[:, 1], delta[:, 0], delta[:, 1], angles="xy", scale_units="xy",
                          scale=1, width=0.004, color="#d62728", alpha=0.6)
                ax.legend(loc="lower right", fontsize=6, markerscale=2)
            ax.set_title(f"{label}: t = {t + 1}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
