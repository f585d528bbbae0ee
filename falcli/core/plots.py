"""Figures drawn with matplotlib (Agg backend, so they work on machines without a display)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402

from falcli.core.feedback import Unrolled  # noqa: E402


REAL_COLOUR = "#7f7f7f"  # every panel and the legend: one colour for the real data


def _scatter_real(ax, real: torch.Tensor) -> None:
    ax.scatter(real[:, 0], real[:, 1], s=2, c=REAL_COLOUR, label="real")


def _arrow_magnification(runs) -> float:
    """A factor (1, 2, 5, 10, …) that draws the median move of the samples that get arrows (those D called fake
    at the previous step) at least 0.1 units long — but no more than draws nine in ten of them within one unit.

    A correction that keeps samples on their mode moves them by a few hundredths: drawn to scale, the arrows
    would be invisible. Only the drawn moves count: magnifying by the median of all samples (most of which sit
    on a mode and hardly move) made the long moves overshoot their mode on the page. The latent step moves most
    samples very little and a few between modes a long way: the cap keeps those few on the page (a mode is
    1.5 units from the next on the ring). The legend states the factor.
    """
    moves = []
    for u, _ in runs.values():
        for t in range(1, len(u.samples)):
            flagged = u.logits[t - 1].detach().float().reshape(-1) < 0
            step = (u.samples[t] - u.samples[t - 1]).detach().float().norm(dim=-1).reshape(-1)
            moves.append(step[flagged.cpu()] if flagged.shape == step.shape else step)
    moves = [m for m in moves if m.numel()]
    if not moves:
        return 1.0
    moves = torch.cat(moves)
    median, long = float(moves.median()), float(moves.quantile(0.9))
    factors = (1, 2, 5, 10, 20, 50, 100)
    wanted = next((f for f in factors if median * f >= 0.1), factors[-1])
    return float(max([f for f in factors if f <= wanted and long * f <= 1.0], default=1))


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
    [-extent, extent]², drawn as the decision surface σ(D) and, on every sample panel, as its σ(D) = 0.5
    contour (the border of what D calls real).
    """
    from matplotlib.lines import Line2D

    real = real.detach().float().cpu()
    steps = max(len(u.samples) for u, _ in runs.values())
    magnify = _arrow_magnification(runs)
    fig, axes = plt.subplots(len(runs), steps + 1, figsize=(3.2 * (steps + 1), 3.3 * len(runs) + 0.5),
                             squeeze=False)
    for row, (label, (unrolled, _)) in enumerate(runs.items()):
        surface = torch.sigmoid(grid_logits[label].float()).numpy()
        box = (-extent, extent, -extent, extent)
        ax = axes[row][0]
        image = ax.imshow(surface, origin="lower", extent=box, cmap="RdBu", vmin=0, vmax=1)
        _scatter_real(ax, real)
        ax.set_title(f"{label}: real data and σ(D)", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        for t in range(steps):
            ax = axes[row][t + 1]
            ax.set_xlim(-extent, extent), ax.set_ylim(-extent, extent), ax.set_aspect("equal")
            if t >= len(unrolled.samples):  # the plain GAN has one step: say so instead of an empty frame
                ax.set_xticks([]), ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                ax.text(0.5, 0.5, f"{label}: no feedback,\none step only", ha="center", va="center",
                        transform=ax.transAxes, fontsize=10, color="#777777")
                continue
            ax.contour(surface, levels=[0.5], origin="lower", extent=box, colors="#555555", linewidths=0.7,
                       linestyles="dashed")
            _scatter_real(ax, real)
            sample = unrolled.samples[t].detach().float().cpu()
            if t == 0:
                ax.scatter(sample[:, 0], sample[:, 1], s=3, c="#1f77b4")
                ax.set_title(f"{label}: t = 1", fontsize=10)
                continue
            previous = unrolled.samples[t - 1].detach().float().cpu()
            flagged = unrolled.logits[t - 1].detach().float().cpu().reshape(-1) < 0  # D said "fake" at t-1
            ax.scatter(sample[~flagged, 0], sample[~flagged, 1], s=3, c="#1f77b4")
            ax.scatter(sample[flagged, 0], sample[flagged, 1], s=5, c="#d62728")
            moved = previous[flagged][:150]  # a readable number of arrows
            delta = (sample[flagged] - previous[flagged])[:150]
            ax.quiver(moved[:, 0], moved[:, 1], delta[:, 0], delta[:, 1], angles="xy", scale_units="xy",
                      scale=1 / magnify, width=0.005, headwidth=4, headlength=4, minlength=0.5,
                      color="#8b0000", alpha=0.8, zorder=3)
            ax.set_title(f"{label}: t = {t + 1}  ({flagged.float().mean():.0%} called fake at t = {t})",
                         fontsize=10)
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=REAL_COLOUR, label="real data"),
               Line2D([], [], ls="", marker="o", ms=4, color="#1f77b4", label="sample"),
               Line2D([], [], ls="", marker="o", ms=4, color="#d62728", label="sample D called fake at t−1"),
               Line2D([], [], color="#8b0000", alpha=0.8, label="its move from t−1 to t" +
                      (f" (drawn ×{magnify:g})" if magnify > 1 else "")),
               Line2D([], [], color="#555555", ls="dashed", lw=0.8, label="σ(D) = 0.5 (D's final border)")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
