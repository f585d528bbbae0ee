"""The toy figure's arrow magnification (falcli/core/plots.py): long enough to see, short enough to stay on the page."""
from __future__ import annotations

import torch

from falcli.core.feedback import Unrolled
from falcli.core.plots import _arrow_magnification


def _runs(moves: list[float]) -> dict:
    """One model, two steps: every sample called fake at t = 1 and moved along x by the given lengths."""
    before = torch.zeros(len(moves), 2)
    after = before + torch.tensor([[m, 0.0] for m in moves])
    fake = -torch.ones(len(moves), 1)
    return {"FAL": (Unrolled([before, after], [fake, fake]), None)}


def test_small_moves_are_magnified_until_the_median_is_visible():
    assert _arrow_magnification(_runs([0.03] * 10)) == 5.0      # 0.03 × 5 = 0.15 ≥ 0.1
    assert _arrow_magnification(_runs([0.2] * 10)) == 1.0


def test_a_few_long_moves_cap_the_magnification():
    """Median 0.007 alone would ask for ×20; the longest tenth (0.087) then runs 1.7 units off: ×10 keeps it in."""
    moves = [0.007] * 8 + [0.087] * 2
    assert _arrow_magnification(_runs(moves)) == 10.0


def test_moves_of_samples_d_called_real_do_not_count():
    runs = _runs([0.5, 0.03])
    out, _ = runs["FAL"]
    out.logits[0][0] = 1.0  # D called the long mover real: only the 0.03 move is drawn
    assert _arrow_magnification(runs) == 5.0
