"""Score the step-t/ folders of `fal refine` outputs with the task's evaluation metrics, until refine.json carries
them itself: voxels get `fal evaluate all`'s voxel metrics (classifier accuracy, COV / MMD against the real val
shapes, precision / recall / density / coverage in the judge's feature space); translation gets L1, SSIM and the
FCN-score against the validation pairs the refined outputs were made from (fresh draws: the first N inputs).

    python benchmarks/score_refine.py REFINE_DIR [REFINE_DIR ...] [--seg-weights JUDGE.pt]

Writes REFINE_DIR/scores.json ({"rows": one dict per step, "seconds_per_1000", "method"}) and prints one line each.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from falcli.config import recipe_from_dict
from falcli.core import checkpoint


def steps_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))


def score_voxel(recipe, folder: Path, device: torch.device) -> list[dict]:
    from falcli.commands.evaluate.files import read_grids
    from falcli.judges.base import predict
    from falcli.judges.voxel_classifier import judge_for, to_judge_resolution
    from falcli.metrics.coverage import coverage_metrics
    from falcli.metrics.voxel import voxel_metrics
    from falcli.tasks.voxel.data import load_voxels
    from falcli.tasks.voxel.evaluate import _features

    net, judge_recipe, names = judge_for(recipe.data, device)
    target = names.index(recipe.data.classes[0])
    real = load_voxels(recipe.data, "val").all_grids()
    real_features = _features(net, to_judge_resolution(torch.from_numpy(real), judge_recipe), device)
    rows = []
    for step in steps_of(folder):
        grids = read_grids(step)
        inputs = to_judge_resolution(torch.from_numpy(grids), judge_recipe)
        row = {"accuracy": float((predict(net, inputs, device) == target).float().mean())}
        row.update({f"{k}_judge": v for k, v in coverage_metrics(real_features, _features(net, inputs, device)).items()})
        row.update({k: v for k, v in voxel_metrics(grids, real, device).items() if k != "protocol"})
        row["occupancy"] = float(grids.mean())
        rows.append(row)
    return rows


def score_translation(recipe, folder: Path, device: torch.device, seg_weights: Path) -> list[dict]:
    from PIL import Image

    from falcli.metrics.image import l1_per_image, ssim_per_image, to_pixels
    from falcli.metrics.segmentation import confusion, score_keys, segmentation_scores
    from falcli.tasks import TASKS
    from falcli.tasks.translation.evaluate import NUM_CLASSES, _open_segmenter, _segment

    task = TASKS["translation"]
    dataset = task.make_dataset(recipe, "val")
    segmenter = _open_segmenter(seg_weights, task.pairing(recipe), device, print)
    rows = []
    for step in steps_of(folder):
        files = sorted(step.glob("*.png"))
        raw = dataset.__getitems__(list(range(len(files))))
        batch = task.make_batch({k: v.to(device) for k, v in raw.items()}, recipe, training=False)
        images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        real = batch.real.float()
        hist = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        with torch.no_grad():
            for start in range(0, len(x), 50):
                hist += confusion(_segment(segmenter, x[start:start + 50]), batch.extras["labels"][start:start + 50])
        row = {"l1": float(l1_per_image(x, real).mean()),
               "ssim": float(np.mean(ssim_per_image(to_pixels(x), to_pixels(real), variant="ssim")))}
        scores = segmentation_scores(hist, "pix2pix")
        row.update({f"fcn/{k}": float(scores[k]) for k in score_keys("pix2pix")})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--seg-weights", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    for folder in args.folders:
        info = json.loads((folder / "refine.json").read_text())
        payload = checkpoint.load(Path(info["checkpoint"]))
        recipe = recipe_from_dict(payload["recipe"], source=info["checkpoint"])
        if recipe.task == "voxel":
            rows = score_voxel(recipe, folder, device)
        else:
            rows = score_translation(recipe, folder, device, args.seg_weights)
        for row, metrics in zip(rows, info.get("metrics") or []):
            row.update({k: metrics[k] for k in ("d_real_probability", "d_logit") if k in metrics})
        result = {"method": info.get("method", "fal"), "seconds_per_1000": info.get("seconds_per_1000"),
                  "drs": info.get("drs"), "rows": rows}
        (folder / "scores.json").write_text(json.dumps(result, indent=1) + "\n")
        print(folder, result["method"], [{k: round(v, 4) for k, v in r.items()
                                          if k in ("coverage", "mmd_iou", "fcn/class_iou", "l1")} for r in rows])


if __name__ == "__main__":
    main()
