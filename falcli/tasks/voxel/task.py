"""3D voxel generation (FAL's ShapeNet experiment): 3D-GAN (Wu et al. 2016) with spatial feedback.

G maps a 200-d latent through 3D transposed convolutions to a 32³ (or 16³, 64³) occupancy grid; D is a 3D
conv net whose output is a 4³ map of logits, the spatial verdict that is fed back. The AST is the same
dimension-generic layer as for images (falcli/nn/spatial_transform.py), built with dims=3.

Samples are occupancy probabilities in [0, 1] (3D-GAN's sigmoid output), not [-1, 1]: real grids are {0, 1},
and a shape is the sample thresholded at 0.5. D sees the grid as it is (1 channel, no rescaling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from falcli.errors import FalError
from falcli.core.feedback import Unrolled, make_feedback_modules, unroll
from falcli.nn.dims import conv_nd, conv_transpose_nd, norm_nd
from falcli.core.runtime import randn_shard
from falcli.tasks.base import Batch

RESOLUTIONS = (16, 32, 64)
PRIMITIVES_SEEDS = {"train": 0, "val": 1}  # fixed: every run and the judge see the same built-in shapes
MAP_SIZE = 4                            # D's map and G's first stage are 4³ at every resolution
EXPORT_FORMATS = ("binvox", "npy")


@dataclass(frozen=True)
class DataConfig:
    """Where voxels come from; shared by the voxel task and the voxel-classifier judge."""

    source: Literal["prepared", "primitives"] = "primitives"  # a `fal prepare shapenet` folder, or built-in shapes
    root: Path = Path("data/shapenet")  # the prepared folder (source: prepared)
    classes: tuple[str, ...] | None = None  # classes to train on (the paper: one GAN per class); None = all
    resolution: int = 32                # grid size R: 16, 32 or 64; finer data are max-pooled down to it
    primitives_train: int = 2000        # source: primitives — shapes generated for the train split
    primitives_val: int = 200           # source: primitives — shapes of the val split (the metrics' reference)

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise FalError(f"data.resolution must be 16, 32 or 64 (got {self.resolution})")
        if self.classes is not None and not self.classes:
            raise FalError("data.classes is empty; name at least one class, or remove the key for all classes")
        if self.primitives_train < 1 or self.primitives_val < 1:
            raise FalError("data.primitives_train and data.primitives_val must be >= 1")
        if self.source == "primitives" and self.classes is not None:
            from falcli.data.primitives import PRIMITIVE_CLASSES

            unknown = [c for c in self.classes if c not in PRIMITIVE_CLASSES]
            if unknown:
                raise FalError(f"data.classes: {unknown[0]!r} is not a built-in primitives class (valid: "
                               f"{', '.join(PRIMITIVE_CLASSES)}); or use data.source: prepared")


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = 200               # size of z (3D-GAN: 200)
    base_channels: int = 32             # G's last hidden width and D's first; doubles per stage (64 at 64³ = 3D-GAN)
    discriminator_norm: Literal["batch", "instance", "none"] = "instance"  # after every D conv but the first

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.base_channels < 1:
            raise FalError("model.latent_dim and model.base_channels must be >= 1")


def num_stages(resolution: int) -> int:
    """Hidden stages of G (and conv stages of D): 4³ → … → R/2, i.e. 3 at 32³."""
    return int(math.log2(resolution // MAP_SIZE))


def generator_widths(model: ModelConfig, resolution: int) -> list[int]:
    """Channels of G's stages 0..n-1 (resolutions 4³, 8³, … R/2); e.g. 64³, base 64 → [512, 256, 128, 64]."""
    n = num_stages(resolution)
    return [model.base_channels * 2 ** (n - 1 - stage) for stage in range(n)]


def default_placement(resolution: int) -> tuple[int, ...]:
    """The stages at ¼ and ½ of the output resolution (methods.md §0)."""
    n = num_stages(resolution)
    return (n - 2, n - 1)


# --- data ---

@dataclass
class VoxelSet:
    voxels: np.ndarray                  # (N, R0, R0, R0) uint8 {0, 1}, axes (x, y, z); may be a read-only memmap
    labels: np.ndarray                  # (N,) int64 indices into `names`
    index: np.ndarray                   # (M,) rows of the selected classes
    names: list[str]                    # every class name of the source, in label order
    resolution: int                     # R after pooling (R0 is a power-of-two multiple of it)

    def __len__(self) -> int:
        return len(self.index)

    def grids(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Selected items `rows` (positions in `index`) as (k, R, R, R) uint8, max-pooled to the resolution."""
        from falcli.formats.binvox import downsample

        rows = self.index[np.asarray(rows, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # memmaps read fastest in file order
        grids = np.empty((len(rows), *self.voxels.shape[1:]), np.uint8)
        grids[order] = self.voxels[rows[order]]
        if grids.shape[1] != self.resolution:
            grids = np.stack([downsample(g, self.resolution) for g in grids]).astype(np.uint8)
        return grids

    def all_grids(self) -> np.ndarray:
        return self.grids(np.arange(len(self)))

    def selected_labels(self) -> np.ndarray:
        return self.labels[self.index]


def class_names(data: DataConfig) -> list[str]:
    """Every class of the data source, in label order (the built-in list, or the prepared meta's)."""
    if data.source == "primitives":
        from falcli.data.primitives import PRIMITIVE_CLASSES

        return list(PRIMITIVE_CLASSES)
    return list(_prepared_meta(data.root)["classes"])


def load_voxels(data: DataConfig, split: str) -> VoxelSet:
    """The `split` voxels of the selected classes: generated primitives, or a prepared dataset (memmapped)."""
    if data.source == "primitives":
        from falcli.data.primitives import make_primitives

        if split not in PRIMITIVES_SEEDS:
            raise FalError(f"the built-in primitives have no {split!r} split (use train or val)")
        count = data.primitives_train if split == "train" else data.primitives_val
        raw = make_primitives(count, max(32, data.resolution), PRIMITIVES_SEEDS[split],
                              list(data.classes) if data.classes else None)
        return VoxelSet(raw["voxels"], raw["labels"], np.arange(count), class_names(data), data.resolution)

    from falcli.formats.store import load_split

    check_classes(data)
    meta = _prepared_meta(data.root)
    stored = meta["fields"]["voxels"]["shape"][0]
    if stored < data.resolution or stored % data.resolution:
        raise FalError(f"data.resolution {data.resolution}: {data.root} holds {stored}³ grids; prepare it with "
                       f"`fal prepare shapenet --size {data.resolution}` or lower data.resolution")
    if split not in meta["splits"]:
        raise FalError(f"{data.root}: no {split!r} split (it has {', '.join(meta['splits'])}); prepare it "
                       f"again with more models per class")
    arrays = load_split(data.root, split)
    names = list(meta["classes"])
    wanted = list(data.classes) if data.classes else names
    labels = np.asarray(arrays["labels"])
    for name in wanted:
        if not (labels == names.index(name)).any():
            raise FalError(f"data.classes: {data.root} has no {name!r} voxels in its {split} split; prepare "
                           f"more {name} models or remove {name} from data.classes")
    index = np.nonzero(np.isin(labels, [names.index(name) for name in wanted]))[0]
    return VoxelSet(arrays["voxels"], labels, index, names, data.resolution)


def _prepared_meta(root: Path) -> dict:
    """meta.json of a prepared voxel dataset, with the hint to make one when it is missing or another kind."""
    from falcli.formats.store import read_meta

    if not (Path(root) / "meta.json").is_file():
        raise FalError(f"data.root {root}: no prepared dataset there; make it with `fal prepare shapenet "
                       f"--raw PATH --out {root} --classes airplane,car,vessel`")
    meta = read_meta(root)
    if meta["kind"] != "voxels" or "voxels" not in meta["fields"] or "labels" not in meta["fields"]:
        raise FalError(f"data.root {root}: a {meta['kind']!r} dataset, not voxels; point data.root at the "
                       f"output of `fal prepare shapenet`")
    return meta


def check_classes(data: DataConfig) -> None:
    """FalError when data.classes names a class the source does not have (before any data is read)."""
    if data.classes is None or data.source == "primitives":
        return  # primitives classes are checked in DataConfig
    names = class_names(data)
    unknown = [c for c in data.classes if c not in names]
    if unknown:
        raise FalError(f"data.classes: {unknown[0]!r} is not in {data.root} (it has {', '.join(names)}); "
                       f"prepare it with `fal prepare shapenet --classes {','.join([*names, unknown[0]])}`")


class VoxelDataset(torch.utils.data.Dataset):
    """Items {voxels (R, R, R) uint8, labels ()}; `__getitems__` stacks a batch in one read."""

    def __init__(self, voxels: VoxelSet):
        self.set = voxels

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64)
        return {"voxels": torch.from_numpy(self.set.grids(rows)),
                "labels": torch.from_numpy(self.set.selected_labels()[rows].copy())}


# --- networks ---

def batch_norm(channels: int) -> nn.Module:
    """3D-GAN's BN, always with the statistics of the batch it normalises, in training and at sampling alike.

    With feedback, features differ from step to step; running averages would mix the steps, and in eval mode
    they broke step 1 (measured on airplanes at 200 iterations: MMD 0.81 with running averages, 0.36 with
    batch statistics). Batch statistics normalise every pass by its own batch, as in training.
    """
    return norm_nd(3, "batch", channels, running_stats=False)


class VoxelGenerator(nn.Module):
    """3D-GAN generator: z (B, Z) → 4³ → one stride-2 transposed conv per stage (BN, ReLU) → (B, 1, R, R, R),
    sigmoid occupancy in [0, 1]. With feedback, an AST modulates a stage's normalised features before its ReLU.
    """

    def __init__(self, model: ModelConfig, resolution: int, feedback: nn.Module | None):
        super().__init__()
        widths = generator_widths(model, resolution)
        first = nn.Sequential(conv_transpose_nd(3, model.latent_dim, widths[0], MAP_SIZE, bias=False),
                              batch_norm(widths[0]))  # (B, Z, 1, 1, 1) → (B, C0, 4, 4, 4)
        self.stages = nn.ModuleList([first] + [
            nn.Sequential(conv_transpose_nd(3, a, b, 4, stride=2, padding=1, bias=False), batch_norm(b))
            for a, b in zip(widths[:-1], widths[1:])
        ])
        self.out = conv_transpose_nd(3, widths[-1], 1, 4, stride=2, padding=1)
        self.feedback = feedback

    output_activation = "sigmoid"       # `pre_activation=True` returns the logits (residual feedback)

    def forward(self, z: torch.Tensor, feedback: torch.Tensor | None = None,
                pre_activation: bool = False) -> torch.Tensor:
        encoded = self.feedback.encode(feedback) if feedback is not None and self.feedback is not None else None
        h = z.view(*z.shape, 1, 1, 1)
        for stage, block in enumerate(self.stages):
            h = block(h)                                     # (B, C_s, 4·2^s, 4·2^s, 4·2^s)
            if self.feedback is not None:
                h = self.feedback.apply(stage, h, encoded)
            h = torch.relu(h)
        out = self.out(h)
        return out if pre_activation else torch.sigmoid(out)  # (B, 1, R, R, R) occupancy


class VoxelDiscriminator(nn.Module):
    """3D-GAN discriminator without its last (global) layer: stride-2 conv3d stages down to a 4³ logits map.

    (B, 1, R, R, R) → (B, 1, 4, 4, 4). No global pooling: each logit judges one region, and that map is fed back.
    """

    def __init__(self, model: ModelConfig, resolution: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for stage in range(num_stages(resolution)):
            out = model.base_channels * 2 ** stage
            layers.append(conv_nd(3, width, out, 4, stride=2, padding=1))
            if stage > 0:  # no norm on the input layer (DCGAN)
                layers.append(norm_nd(3, model.discriminator_norm, out, running_stats=False))
            layers.append(nn.LeakyReLU(0.2))
            width = out
        layers.append(conv_nd(3, width, 1, 3))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- pictures and export ---

def occupancy(samples: torch.Tensor) -> np.ndarray:
    """(N, 1, R, R, R) or (N, R, R, R) probabilities → (N, R, R, R) uint8 {0, 1} shapes (threshold 0.5)."""
    samples = samples.detach()
    if samples.dim() == 5:
        samples = samples[:, 0]
    return (samples > 0.5).to(torch.uint8).cpu().numpy()


def steps_picture(real: torch.Tensor, unrolled: Unrolled, columns: int = 8, size: int = 96) -> np.ndarray:
    """Rows: real grids, then per step t the samples and D's map seen from above (mean over z; red = fake)."""
    from falcli.core.pictures import heatmap, tile
    from falcli.core.render import render_voxels

    def renders(grids: np.ndarray) -> list[np.ndarray]:
        return [render_voxels(g, size) for g in grids[:columns]]

    rows = [renders(occupancy(real))]
    for sample, logits in zip(unrolled.samples, unrolled.logits):
        rows.append(renders(occupancy(sample)))
        top = logits[:columns].float().mean(dim=-1)          # (B, 1, 4, 4): x down, y across
        rows.append(list(heatmap(top, (size, size))))
    return tile(rows)


def export_samples(samples: torch.Tensor, out_dir: Path, fmt: str,
                   latents: torch.Tensor | None = None) -> list[Path]:
    """Write samples (N, 1, R, R, R) thresholded at 0.5: `binvox` = one sample-NNNNNN.binvox each, `npy` = one
    samples.npy (N, R, R, R) uint8 in fal's (x, y, z) axes, z up; .binvox files stand on y, as binvox's own. Latents, when given, go to latents.npy (for `fal refine`)."""
    from falcli.formats.binvox import write_binvox, z_up_to_y_up

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


# --- evaluation (the paper's classifier accuracy, plus coverage and MMD) ---

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
    as in the paper, that class). The judge is `judge_path`, or found/trained by `judges.voxel_classifier`.
    """
    from falcli.judges.base import predict
    from falcli.judges.voxel_classifier import judge_for, to_judge_resolution
    from falcli.metrics.voxel import voxel_metrics

    data = recipe.data
    check_classes(data)  # before a judge is trained for nothing
    net, judge_recipe, judge_names = judge_for(data, device, judge_path)
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
    real_pred = predict(net, to_judge_resolution(torch.from_numpy(real), judge_recipe), device)
    reference = {"real_accuracy": float((real_pred == real_truth).float().mean())}
    for c in trained:
        mine = real_truth == judge_names.index(c)
        reference[f"real_accuracy/{c}"] = float((real_pred[mine] == real_truth[mine]).float().mean())

    z = fixed_latents(recipe, num_samples).to(device)
    shapes, d_scores = generate(G, D, recipe, z, steps)
    results = []
    for grids, d_score in zip(shapes, d_scores):
        pred = predict(net, to_judge_resolution(torch.from_numpy(grids), judge_recipe), device)
        row = {"accuracy": float(torch.isin(pred, targets).float().mean())}
        for k, name in enumerate(judge_names):
            row[f"predicted/{name}"] = float((pred == k).float().mean())
        row.update(reference)
        row.update({k: v for k, v in voxel_metrics(grids, real, device).items() if k != "protocol"})
        row["occupancy"] = float(grids.mean())
        row["d_score"] = d_score
        results.append(row)
    return results


# --- the task ---

class VoxelTask:
    name = "voxel"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 3

    def validate(self, recipe) -> None:
        if recipe.loss.l1_weight:
            raise FalError("loss.l1_weight: the voxel task has no targets to compare with; remove the key")
        placement = recipe.feedback.placement
        n = num_stages(recipe.data.resolution)
        if placement is not None and any(not 0 <= s < n for s in placement):
            raise FalError(f"feedback.placement: voxel stages at {recipe.data.resolution}³ are 0..{n - 1} "
                           f"(resolutions {', '.join(f'{MAP_SIZE * 2 ** s}³' for s in range(n))})")

    def make_dataset(self, recipe, split: str) -> torch.utils.data.Dataset:
        return VoxelDataset(load_voxels(recipe.data, split))

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(recipe.seed)
        resolution = recipe.data.resolution
        widths = generator_widths(recipe.model, resolution)
        stages = recipe.feedback.placement or default_placement(resolution)
        feedback = make_feedback_modules(recipe.feedback, {s: widths[s] for s in stages},
                                         out_channels=1, cond_channels=0, dims=3, seed=recipe.seed)
        return VoxelGenerator(recipe.model, resolution, feedback), VoxelDiscriminator(recipe.model, resolution)

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
        from falcli.core.pictures import save_png

        save_png(steps_picture(batch.real, unrolled), path)

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int) -> list[dict[str, float]]:
        return evaluate_voxel(G, D, recipe, device, steps, num_samples)

