"""Image-to-image translation: pix2pix (Isola et al. 2017) with FAL's feedback in the U-Net decoder.

G maps the input image to the output; D sees (input, output) and answers with a patch map; from step 2 on,
G also reads that map, its previous output and the input, through ASTs after the chosen decoder stages.
With feedback.steps: 1 this is pix2pix: U-Net, 70×70 PatchGAN, L1 weight 100, the same code path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from falcli.config import SHIPPED_RECIPES
from falcli.errors import FalError
from falcli.core.feedback import Unrolled, make_feedback_modules
from falcli.core.pictures import heatmap, labelled, save_png, tile, to_uint8
from falcli.core.files import ImageFiles
from falcli.formats import cityscapes, nyu, pix2pix  # their declared channels size the networks before `fal prepare`
from falcli.tasks.base import Batch, EvaluatePaths, JudgeNeed
from falcli.tasks.translation import data as paired
from falcli.tasks.translation.config import DataConfig, ModelConfig, Pairing, default_placement, \
    patch_map_size, resolve_pairing, validate  # noqa: F401  (the sections are part of this module's API)
from falcli.tasks.translation.nets import PatchDiscriminator, UNetGenerator, decoder_stage_channels

PICTURE_ROWS = 8  # sample pairs shown in a picture (each as an image row and a D-map row)


def declared_channels(data: DataConfig) -> tuple[int, int]:
    """(input, target) channels of `data.direction` as `fal prepare` writes them; FalError when unknown."""
    for preparer in (cityscapes, nyu, pix2pix):
        fields = preparer.DIRECTIONS.get(data.direction)
        if fields:
            return preparer.FIELD_CHANNELS[fields[0]], preparer.FIELD_CHANNELS[fields[1]]
    raise FalError(f"data.root {data.root} is not prepared yet and data.direction {data.direction!r} is not one a "
                   f"preparer writes, so the networks' channels are unknown until `fal prepare` has run")


def _networks(recipe, input_channels: int, target_channels: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(recipe.seed)
    model = recipe.model
    stages = recipe.feedback.placement or default_placement(model.depth)
    feedback = make_feedback_modules(
        recipe.feedback, decoder_stage_channels(model.generator_channels, model.depth, stages),
        out_channels=target_channels, cond_channels=input_channels, dims=2, seed=recipe.seed)
    G = UNetGenerator(input_channels, target_channels, model.generator_channels, model.depth, model.norm,
                      model.dropout, feedback)
    D = PatchDiscriminator(input_channels + target_channels, model.discriminator_channels,
                           model.discriminator_layers, model.norm)
    return G, D


class TranslationTask:
    name = "translation"
    DataConfig = DataConfig
    ModelConfig = ModelConfig
    dims = 2
    conditional = True
    supports_methods: frozenset[str] = frozenset()
    checkpoint_metrics = ("l1", "psnr", "ssim", "lpips", "fcn", "depth")
    samples_caption = "Per pair: input | t = 1 … T | target; below each step D's map σ(D) (red = fake, blue = real)."
    array_export = None

    def validate(self, recipe) -> None:
        validate(recipe)

    def pairing(self, recipe) -> Pairing:
        return resolve_pairing(recipe.data)

    def evaluation_pool(self, recipe) -> int | None:
        return len(self.make_dataset(recipe, "val"))  # scored on the val pairs: never more than there are

    def sample_files(self, recipe) -> ImageFiles:
        """The outputs, stored as the targets are (depth: 16-bit PNG in millimetres)."""
        pairing = self.pairing(recipe)
        depth = pairing.depth_range if pairing.target_is_depth else None
        return ImageFiles(recipe.data.image_size, pairing.target_channels,
                          paired.resize_mode(pairing.target_field, pairing.meta, depth is not None), depth, "outputs")

    def condition_files(self, recipe) -> ImageFiles:
        pairing = self.pairing(recipe)
        return ImageFiles(recipe.data.image_size, pairing.input_channels,
                          paired.resize_mode(pairing.input_field, pairing.meta, False), None, "inputs")

    def make_dataset(self, recipe, split: str) -> paired.PairedDataset:
        return paired.make_pairs(recipe, self.pairing(recipe), split, extras=split != "train")

    def make_networks(self, recipe) -> tuple[nn.Module, nn.Module]:
        pairing = self.pairing(recipe)
        return _networks(recipe, pairing.input_channels, pairing.target_channels)

    def memory_probe(self, recipe) -> tuple[nn.Module, nn.Module, tuple[int, ...]]:
        """From the prepared dataset's meta.json when it is there, else from the channels the preparers write
        for data.direction (a recipe is checked before its data is prepared)."""
        data = recipe.data
        if data.dataset == "streets" or (Path(data.root) / "meta.json").is_file():
            pairing = self.pairing(recipe)
            channels = pairing.input_channels, pairing.target_channels
        else:
            channels = declared_channels(data)
        return (*_networks(recipe, *channels), (channels[0], data.image_size, data.image_size))

    def make_batch(self, raw: dict[str, torch.Tensor], recipe, training: bool) -> Batch:
        return paired.make_batch(raw, recipe, self.pairing(recipe), training)

    def fixed_batch(self, recipe, device: torch.device, count: int) -> Batch:
        """The first `count` validation pairs, unjittered (no randomness is needed)."""
        dataset = paired.make_pairs(recipe, self.pairing(recipe), "val", extras=True, count=count)
        raw = dataset.__getitems__(list(range(len(dataset))))
        return self.make_batch({k: v.to(device) for k, v in raw.items()}, recipe, training=False)

    def discriminator_input(self, sample: torch.Tensor, batch: Batch) -> torch.Tensor:
        return paired.discriminator_input(sample, batch)

    def extra_generator_losses(self, unrolled: Unrolled, batch: Batch, recipe) -> dict[str, torch.Tensor]:
        """λ·|y − x_t|₁ per step (pix2pix Eq. 3, λ = loss.l1_weight), weighted like the adversarial terms."""
        if not recipe.loss.l1_weight:
            return {}
        return {f"l1/step{t}": weight * recipe.loss.l1_weight * (batch.real - x.float()).abs().mean()
                for t, (weight, x) in enumerate(zip(recipe.feedback.weights, unrolled.samples), start=1)}

    def save_samples(self, unrolled: Unrolled, batch: Batch, path: Path) -> None:
        """Per pair two rows: input | t=1 … t=T | target, and below each step σ(D) (red fake … blue real)."""
        n = min(PICTURE_ROWS, len(batch.real))
        size = tuple(batch.real.shape[2:])
        inputs, targets = to_uint8(batch.condition[:n]), to_uint8(batch.real[:n])
        steps = [to_uint8(x[:n]) for x in unrolled.samples]
        maps = [heatmap(logits[:n], size) for logits in unrolled.logits]
        blank = np.full_like(inputs[0], 255)
        rows = []
        for i in range(n):
            rows.append([inputs[i], *(x[i] for x in steps), targets[i]])
            rows.append([blank, *(m[i] for m in maps), blank])
        columns = ["input", *(f"step {t}" for t in range(1, len(steps) + 1)), "target"]
        save_png(labelled(tile(rows), rows, column_labels=columns, colour_scale=True), path)

    def judge_needs(self, recipe) -> tuple[JudgeNeed, ...]:
        """Label map → photo on data with train-id labels: the segmenter of the FCN-score, from the shipped
        `<dataset>_segmenter.yaml` (on this run's prepared folder); none where no such recipe is shipped."""
        pairing = self.pairing(recipe)
        shipped = f"{pairing.name}_segmenter.yaml"
        if not (pairing.makes_photos and pairing.meta.get("eval_fields", {}).get("segmentation")
                and (SHIPPED_RECIPES / shipped).is_file()):
            return ()
        data = recipe.data
        where = {"data.root": str(Path(data.root).resolve())} if data.dataset == "prepared" else {}
        return (JudgeNeed("seg_weights", shipped, where),)

    def evaluate(self, G: nn.Module, D: nn.Module, recipe, device: torch.device, steps: int,
                 num_samples: int, paths: EvaluatePaths | None = None) -> list[dict[str, float]]:
        # keeps --help fast, and every command but evaluation: lpips, torchvision and scikit-image load here
        from falcli.tasks.translation.evaluate import evaluate_translation  # keeps --help fast

        paths = paths or EvaluatePaths()
        return evaluate_translation(G, D, recipe, device, steps, num_samples, lpips_weights=paths.weights,
                                    seg_weights=paths.seg_weights, note=paths.note,
                                    allow_unofficial_weights=paths.allow_unofficial_weights,
                                    class_means=paths.class_means)
