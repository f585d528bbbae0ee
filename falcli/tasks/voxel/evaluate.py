"""The voxel task's evaluation: the paper's classifier accuracy per feedback step, plus coverage and MMD."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from falcli.core.feedback import unroll
from falcli.errors import FalError
from falcli.judges.base import load, predict
from falcli.judges.voxel_classifier import JUDGE, to_judge_resolution
from falcli.metrics.coverage import DC_K, RealBalls
from falcli.metrics.voxel import voxel_metrics
from falcli.tasks.voxel.data import check_classes, class_names, load_voxels, occupancy


def fixed_latents(recipe, count: int) -> torch.Tensor:
    """The same latents every time (own RNG): the first `count` of one stream, so previews and evaluation agree."""
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    return torch.randn(count, recipe.model.latent_dim, generator=generator)


@torch.no_grad()
def generate(G: nn.Module, D: nn.Module, recipe, z: torch.Tensor, steps: int,
             chunk: int = 64) -> tuple[list[np.ndarray], list[float]]:
    """Shapes of every step for latents z, (N, R, R, R) uint8 each, and D's mean σ per step; in chunks."""
    shapes: list[list[np.ndarray]] = [[] for _ in range(steps)]
    scores = [0.0] * steps
    for start in range(0, len(z), chunk):
        out = unroll(G, D, z[start:start + chunk], None, steps, recipe.feedback, lambda x: x)
        for t in range(steps):
            shapes[t].append(occupancy(out.samples[t]))
            scores[t] += float(torch.sigmoid(out.logits[t].float()).mean()) * len(out.logits[t])
    return [np.concatenate(s) for s in shapes], [s / len(z) for s in scores]


def evaluate_voxel(G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int, num_samples: int,
                   judge_path: Path | None = None) -> list[dict[str, float]]:
    """Per step t = 1..steps: the voxel classifier's accuracy on generated shapes (FAL Table 4) and per class,
    its accuracy on held-out real shapes for reference, coverage and MMD (1 − IoU) against the real val set,
    occupancy and D's mean σ.

    accuracy = share of generated shapes the judge assigns to a class the GAN was trained on (with one class,
    as in the paper, that class); shapes it puts in its reject class (noise) count for none (`predicted/reject`).
    `judge_path` is a voxel-classifier judge.pt (`fal evaluate` passes --judge, or the one it trained for the
    run's data: falcli/judges/provision.py).
    """
    data = recipe.data
    check_classes(data)
    if judge_path is None:
        raise FalError("voxel evaluation needs a voxel classifier: `fal evaluate` trains one for the run's data on "
                       "first use, or pass --judge JUDGE.pt")
    net, judge_recipe, _ = load(judge_path, device, JUDGE)
    judge_names = JUDGE.class_names(judge_recipe)
    trained = list(data.classes) if data.classes else class_names(data)
    missing = [c for c in trained if c not in judge_names]
    if missing:
        raise FalError(f"the voxel classifier knows {', '.join(judge_names)} but not {missing[0]!r}; pass a "
                       f"judge trained on the same data (fal train recipes/voxel_classifier.yaml --set data.root=…)")
    targets = torch.tensor([judge_names.index(c) for c in trained])

    # Real held-out shapes: the judge's reference accuracy and the set for coverage / MMD.
    val = load_voxels(data, "val")
    real = val.all_grids()
    source_names = val.names
    real_truth = torch.tensor([judge_names.index(source_names[k]) for k in val.selected_labels()])
    real_inputs = to_judge_resolution(torch.from_numpy(real), judge_recipe)
    real_pred = predict(net, real_inputs, device)
    real_features = _features(net, real_inputs, device)
    reference = {"real_accuracy": float((real_pred == real_truth).float().mean())}
    for c in trained:
        mine = real_truth == judge_names.index(c)
        reference[f"real_accuracy/{c}"] = float((real_pred[mine] == real_truth[mine]).float().mean())

    z = fixed_latents(recipe, num_samples).to(device)
    shapes, d_scores = generate(G, D, recipe, z, steps)
    results = []
    balls = RealBalls(real_features) if len(real_features) > DC_K else None  # the real side once for every step
    for grids, d_score in zip(shapes, d_scores):
        inputs = to_judge_resolution(torch.from_numpy(grids), judge_recipe)
        pred = predict(net, inputs, device)
        row = {"accuracy": float(torch.isin(pred, targets).float().mean())}
        if balls is not None and len(grids) > DC_K:  # k-NN balls need more points than the largest k (5)
            # quality and coverage in the judge's feature space, as for images (falcli/metrics/coverage.py)
            scores = balls.score(_features(net, inputs, device))
            row.update({f"{k}_judge": v for k, v in scores.items()})
        for k, name in enumerate(JUDGE.output_names(judge_recipe)):
            row[f"predicted/{name}"] = float((pred == k).float().mean())
        row.update(reference)
        row.update({k: v for k, v in voxel_metrics(grids, real, device).items() if k != "protocol"})
        row["occupancy"] = float(grids.mean())
        row["d_real_probability"] = d_score
        results.append(row)
    return results


@torch.no_grad()
def _features(net: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """The voxel judge's penultimate features of (N, 1, R, R, R) grids, (N, F) float64 on the CPU."""
    net.eval()
    return torch.cat([net.features(inputs[i:i + batch_size].to(device)).double().cpu()
                      for i in range(0, len(inputs), batch_size)])
