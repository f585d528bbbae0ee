"""The task's own metrics of every refined step — quality and coverage, as `fal evaluate` reports them for a
checkpoint — computed by the task's evaluation itself (Task.evaluate), not by a copy of it.

Task.evaluate draws its samples from a generator. Here the generator is a Replay: each of its passes hands back
the next refined step of the next chunk, in the order the evaluation asks for them, so the evaluation scores
exactly the samples `fal refine` wrote, with every metric the task reports (FID, precision/recall/density/coverage,
voxel accuracy, L1, FCN scores, …) and against the task's own references. The evaluation's own inputs are
ignored, except a conditional task's: its targets belong to its inputs, so the refined samples must come from the
same inputs in the same order (fresh draws and `fal sample` folders do) — checked, else skipped with one line.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from falcli.errors import FalError
from falcli.judges import provision
from falcli.tasks.base import EvaluatePaths

Note = Callable[[str], None]
CONDITION_TOLERANCE = 2 / 255 + 1e-6    # inputs read back from 8-bit PNGs differ from the dataset's by ≤ 1 level


class NotTheEvaluationInputs(Exception):
    """The evaluation asked for samples of other inputs (or more samples) than were refined."""


class Replay(nn.Module):
    """Stands in for G inside Task.evaluate: pass k of a chunk returns step k's refined samples of that chunk."""

    output_activation = "identity"      # only read by residual feedback, which the replayed recipe turns off

    def __init__(self, steps: list[torch.Tensor], conditions: torch.Tensor | None):
        super().__init__()
        self.steps, self.conditions = steps, conditions
        self.offset = self.step = 0

    def forward(self, gen_input: torch.Tensor, feedback: torch.Tensor | None = None,
                pre_activation: bool = False) -> torch.Tensor:
        rows = slice(self.offset, self.offset + len(gen_input))
        if rows.stop > len(self.steps[0]):
            raise NotTheEvaluationInputs(f"the evaluation asks for more than the {len(self.steps[0])} samples")
        if self.step == 0 and self.conditions is not None and not torch.allclose(
                self.conditions[rows].float(), gen_input.detach().float().cpu(), atol=CONDITION_TOLERANCE, rtol=0):
            raise NotTheEvaluationInputs("these samples' inputs are not the validation inputs the evaluation "
                                         "compares with its targets (refine fresh draws or a `fal sample` folder "
                                         "for them)")
        x = self.steps[self.step][rows].to(gen_input.device)
        self.step += 1
        if self.step == len(self.steps):
            self.step, self.offset = 0, rows.stop
        return x

    def consumed(self) -> bool:
        return self.offset == len(self.steps[0]) and self.step == 0


def task_metrics(task, recipe, D: nn.Module, steps: list[torch.Tensor], conditions: torch.Tensor | None,
                 device: torch.device, note: Note) -> list[dict[str, float]]:
    """Task.evaluate's rows (one per step) for the refined samples `steps` [(N, C, *S) each, on the CPU]; [] and
    one line to `note` when the task cannot score them (a judge that is not there, other inputs)."""
    try:  # `fal refine` never trains a judge: it scores with the ones in the cache, else says what is missing
        paths, missing = provision.cached(EvaluatePaths(note=note), task.judge_needs(recipe))
    except FalError as error:
        note(f"task metrics skipped: {error}")
        return []
    for line in missing:  # the task then skips what needs that judge (or refuses, caught below), with its note
        note(f"judge missing: {line}")
    replay = Replay(steps, conditions)
    replayed = replace(recipe, feedback=replace(recipe.feedback, output="direct"))  # one pass of G per step
    try:
        rows = task.evaluate(replay, D, replayed, device, len(steps), len(steps[0]), paths)
    except NotTheEvaluationInputs as reason:
        note(f"task metrics skipped: {reason}")
        return []
    except FalError as error:
        note(f"task metrics skipped: {error}")
        return []
    if not replay.consumed():  # e.g. a translation split smaller than the samples: the evaluation stops early
        note(f"task metrics skipped: the task's evaluation scores {replay.offset} of the {len(steps[0])} samples")
        return []
    return rows
