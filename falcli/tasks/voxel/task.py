"""3D voxel generation (FAL's ShapeNet experiment): 3D-GAN (Wu et al. 2016) with spatial feedback.

G maps a 200-d latent through 3D transposed convolutions to a 32³ (or 16³, 64³) occupancy grid; D is a 3D
conv net whose output is a 4³ map of logits, the spatial verdict that is fed back. The AST is the same
dimension-generic layer as for images (falcli/nn/spatial_transform.py), built with dims=3.

Samples are occupancy probabilities in [0, 1] (3D-GAN's sigmoid output), not [-1, 1]: real grids are {0, 1},
and a shape is the sample thresholded at 0.5. D sees the grid as it is (1 channel, no rescaling).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from falcli.core.feedback import Unrolled, make_feedback_modules
from falcli.core.files import VoxelFiles
from falcli.core.pictures import heatmap, labelled, save_png, tile
from falcli.core.render import render_voxels
from falcli.core.runtime import randn_shard
from falcli.errors import FalError
from falcli.formats.binvox import write_binvox, z_up_to_y_up
from falcli.tasks.base import Batch, EvaluatePaths, JudgeNeed, latent_width
from falcli.tasks.voxel.config import validate
from falcli.tasks.voxel.data import DataConfig, VoxelDataset, check_classes, load_voxels, occupancy
from falcli.tasks.voxel.evaluate import evaluate_voxel, fixed_latents
from falcli.tasks.voxel.nets import MAP_SIZE, ModelConfig, VoxelDiscriminator, VoxelGenerator, default_placement, \
    generator_widths, num_stages

EXPORT_FORMATS = ("binvox", "npy")


# --- pictures and export ---

def steps_picture(real: torch.Tensor, unrolled: Unrolled, columns: int = 8, size: int = 96) -> np.ndarray:
    """Rows: real grids, then per step t the samples and D's map seen from above (mean over z; red = fake)."""
    def renders(grids: np.ndarray) -> list[np.ndarray]:
        return [render_voxels(g, size) for g in grids[:columns]]

    rows, labels = [renders(occupancy(real))], ["real"]
    for t, (sample, logits) in enumerate(zip(unrolled.samples, unrolled.logits), start=1):
        rows.append(renders(occupancy(sample)))
        top = logits[:columns].float().mean(dim=-1)          # (B, 1, 4, 4): x down, y across
        rows.append(list(heatmap(top, (size, size))))
        labels += [f"step {t}", f"D {t}"]
    return labelled(tile(rows), rows, row_labels=labels, colour_scale=True)


def export_samples(samples: torch.Tensor, out_dir: Path, fmt: str,
                   latents: torch.Tensor | None = None) -> list[Path]:
    """Write samples (N, 1, R, R, R) thresholded at 0.5: `binvox` = one sample-NNNNNN.binvox each, `npy` = one
    samples.npy (N, R, R, R) uint8 in fal's (x, y, z) axes, z up; .binvox files stand on y, as binvox's own. Latents, when given, go to latents.npy (for `fal refine`)."""
    if fmt not in EXPORT_FORMATS:
        raise FalError(f"export format {fmt!r}: choose {' or '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FalError(f"{out_dir} is not empty; choose another output folder")
    grids = occupancy(samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt == "npy":
        written.append(out_dir / "samples.npy")
        np.save(written[-1], grids)
    else:
        for i, grid in enumerate(grids):
            written.append(out_dir / f"sample-{i:06d}.binvox")
            write_binvox(written[-1], z_up_to_y_up(grid))  # binvox viewers expect y up
    if latents is not None:
        written.append(out_dir / "latents.npy")
        np.save(written[-1], latents.detach().float().cpu().numpy())
    return written


# --- the task ---

class VoxelTask:
    name = "voxel"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 3
    conditional = False
    supports_methods: frozenset[str] = frozenset()
    checkpoint_metrics = ("voxel-accuracy",)
    samples_caption = ("First row: real data; then for each step t its samples and, below, D's map σ(D) "
                       "(red = fake, blue = real).")
    array_export = staticmethod(occupancy)  # `fal sample --voxels npy`: (N, R, R, R) uint8, z up

    def validate(self, recipe) -> None:
        validate(recipe)

    def make_dataset(self, recipe, split: str) -> torch.utils.data.Dataset:
        return VoxelDataset(load_voxels(recipe.data, split))

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(recipe.seed)
        resolution = recipe.data.resolution
        widths = generator_widths(recipe.model, resolution)
        stages = recipe.feedback.placement or default_placement(resolution)
        feedback = make_feedback_modules(recipe.feedback, {s: widths[s] for s in stages},
                                         out_channels=1, cond_channels=0, dims=3, seed=recipe.seed,
                                         latent_dim=recipe.model.latent_dim)
        return VoxelGenerator(recipe.model, resolution, feedback), VoxelDiscriminator(recipe.model, resolution)

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        return (*self.make_networks(recipe), (latent_width(recipe),))

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        real = raw["voxels"].unsqueeze(1).float()             # (B, 1, R, R, R) in {0, 1}
        z = randn_shard(len(real), recipe.model.latent_dim, device=real.device)
        return Batch(real=real, gen_input=z, extras={"labels": raw["labels"]})

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        val = load_voxels(recipe.data, "val")
        real = torch.from_numpy(val.grids(np.arange(count) % len(val))).unsqueeze(1).float()
        return Batch(real=real.to(device), gen_input=fixed_latents(recipe, count).to(device))

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sample

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        return {}

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        save_png(steps_picture(batch.real, unrolled), path)

    def evaluation_pool(self, recipe) -> int | None:
        return None

    def sample_files(self, recipe) -> VoxelFiles:
        return VoxelFiles(recipe.data.resolution)

    def condition_files(self, recipe) -> None:
        return None

    def judge_needs(self, recipe) -> tuple[JudgeNeed, ...]:
        """The voxel classifier, trained on this run's data source at its resolution, every class of it."""
        data = recipe.data
        check_classes(data)  # before a judge is trained for nothing
        where = {"data.root": str(Path(data.root).resolve())} if data.source == "prepared" else {}
        return (JudgeNeed("judge", "voxel_classifier.yaml", {"data.source": data.source, **where,
                                                             "data.resolution": data.resolution,
                                                             "data.classes": None}),)

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        return evaluate_voxel(G, D, recipe, device, steps, num_samples,
                              judge_path=None if paths is None else paths.judge)

