"""The paper's ShapeNet metric: a small 3D CNN classifier trained on real voxels; a GAN's score is how often it
assigns the generated shapes to the class the GAN was trained on (FAL poster, ShapeNet table).

`fal train recipes/voxel_classifier.yaml` trains it (on the built-in primitives, or a prepared dataset with
`--set data.source=prepared`); `fal evaluate` finds one trained on the GAN's data, or trains it once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from falcli.config import SHIPPED_RECIPES
from falcli.errors import FalError
from falcli.judges.classifier import ConvClassifier, ModelConfig
from falcli.tasks.voxel.data import DataConfig, class_names, load_voxels

SHIPPED_RECIPE = SHIPPED_RECIPES / "voxel_classifier.yaml"
RUNS = Path("runs")


class VoxelClassifier(nn.Module):
    """The image judge's dims-generic ConvClassifier with dims=3, reading occupancy as it is stored.

    (B, 1, R, R, R) uint8 {0, 1} or float in [0, 1] → logits (B, K). The data stay uint8 in memory (a float
    copy of ShapeNet at 64³ would not fit); each batch is mapped to [-1, 1] here.
    """

    def __init__(self, classes: int, model: ModelConfig):
        super().__init__()
        self.net = ConvClassifier(1, classes, 3, model.channels, model.depth, model.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() * 2 - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's penultimate activations (B, F): the space for precision/recall/coverage."""
        return self.net.features(x.float() * 2 - 1)


class VoxelClassifierJudge:
    name = "voxel-classifier"
    DataConfig = DataConfig             # the voxel task's own data section: primitives or a prepared folder
    ModelConfig = ModelConfig           # the image judge's: channels, depth (stride-2 stages), features

    def class_names(self, recipe) -> list[str]:
        """The judge's output classes, in logit order: data.classes, or every class of its data."""
        return list(recipe.data.classes) if recipe.data.classes else class_names(recipe.data)

    def make_net(self, recipe) -> nn.Module:
        return VoxelClassifier(len(self.class_names(recipe)), recipe.model)

    def load_data(self, recipe, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (N, 1, R, R, R) uint8 (the net converts) and targets (N,) indexing `class_names`."""
        voxels = load_voxels(recipe.data, split)
        names = self.class_names(recipe)
        remap = torch.tensor([names.index(n) if n in names else -1 for n in voxels.names])
        targets = remap[torch.from_numpy(voxels.selected_labels())]
        return torch.from_numpy(voxels.all_grids()).unsqueeze(1), targets


JUDGE = VoxelClassifierJudge()


# --- finding (or training once) the judge for a GAN's data ---

def default_judge_dir(data: DataConfig) -> Path:
    """runs/voxel_classifier-<source>-<R>: where a judge for this data source and resolution is trained once.

    A prepared source is named by its folder and a hash of its full path: two folders of one name (two copies
    of `shapenet`, say) are different data and get different judges.
    """
    if data.source == "primitives":
        source = "primitives"
    else:
        where = hashlib.sha1(str(Path(data.root).resolve()).encode("utf-8")).hexdigest()[:8]
        source = f"{Path(data.root).name}-{where}"
    return RUNS / f"voxel_classifier-{source}-{data.resolution}"


def fits(judge_data: DataConfig, data: DataConfig) -> bool:
    """A judge fits a GAN's data when it saw the same source at the same or a coarser (dividing) resolution."""
    same = judge_data.source == data.source and (
        data.source == "primitives" or Path(judge_data.root).resolve() == Path(data.root).resolve())
    return same and data.resolution % judge_data.resolution == 0


def judge_for(data: DataConfig, device: torch.device, judge_path: Path | None = None, say=print):
    """(net, judge recipe, class names) for evaluating a GAN trained on `data`.

    `judge_path` if given; else runs/voxel_classifier/judge.pt (the shipped recipe's own run) when it fits the
    data; else default_judge_dir(data)/judge.pt, trained there once from the shipped recipe.
    """
    from falcli.judges.base import load

    candidates = [Path(judge_path)] if judge_path is not None else [
        RUNS / "voxel_classifier" / "judge.pt", default_judge_dir(data) / "judge.pt"]
    for path in candidates:
        if judge_path is not None or path.is_file():
            net, recipe, _ = load(path, device, expect=JUDGE.name)
            if judge_path is not None or fits(recipe.data, data):
                return net, recipe, JUDGE.class_names(recipe)
    path = train_default_judge(data, device, say)
    net, recipe, _ = load(path, device, expect=JUDGE.name)
    return net, recipe, JUDGE.class_names(recipe)


def train_default_judge(data: DataConfig, device: torch.device, say=print) -> Path:
    """Train the shipped recipe on `data`'s source and resolution (every class) into default_judge_dir(data)."""
    from falcli.resolve import recipe_from_dict
    from falcli.judges.run import run_judge

    out = default_judge_dir(data)
    if out.exists() and any(out.iterdir()):
        raise FalError(f"{out} holds no judge.pt (an interrupted training?); delete that folder and evaluate "
                       f"again to retrain the voxel classifier")
    if not SHIPPED_RECIPE.is_file():
        raise FalError(f"no voxel classifier for this data; train one with `fal train recipes/voxel_classifier.yaml "
                       f"--out {out}` (with the GAN's data.source, data.root and data.resolution)")
    raw = yaml.safe_load(SHIPPED_RECIPE.read_text())
    raw["name"] = out.name
    raw["data"] = {**(raw.get("data") or {}), "source": data.source, "root": str(data.root),
                   "resolution": data.resolution, "classes": None}
    recipe = recipe_from_dict(raw, source=str(SHIPPED_RECIPE))
    say(f"training the voxel classifier once ({SHIPPED_RECIPE.name}, {data.source} at {data.resolution}³) "
        f"into {out}; later evaluations reuse it")
    return run_judge(recipe, out, str(device))


def to_judge_resolution(grids: torch.Tensor, judge_recipe) -> torch.Tensor:
    """(N, R, R, R) {0, 1} grids → (N, 1, r, r, r) at the judge's resolution r, max-pooled as `fal prepare` does."""
    size, target = grids.shape[-1], judge_recipe.data.resolution
    if size == target:
        return grids.unsqueeze(1)
    if size & (size - 1):
        raise FalError(f"the samples are {size}³ grids; voxel grids are scored at a power of two (16, 32, 64, …), "
                       f"as `fal prepare` and `fal sample` write them")
    if size < target or size % target:
        raise FalError(f"the voxel classifier works at {target}³ but the samples are {size}³; pass a judge "
                       f"trained with data.resolution={size}")
    return F.max_pool3d(grids.unsqueeze(1).float(), size // target).to(torch.uint8)
