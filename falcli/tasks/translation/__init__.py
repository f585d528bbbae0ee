"""Image-to-image translation (pix2pix + FAL): config.py the recipe's sections and checks (torch-free), source.py
where the pairs come from (torch-free), task.py the Task, nets.py the U-Net and PatchGAN, data.py the paired
data and its jitter, evaluate.py the per-step metrics (L1, PSNR, SSIM, LPIPS, FCN-score, depth)."""
from __future__ import annotations

from falcli.tasks.translation.config import DataConfig, ModelConfig

__all__ = ["DataConfig", "ModelConfig", "TranslationTask", "evaluate_translation"]


def __getattr__(name: str):
    # task.py and evaluate.py import torch, lpips (and through it torchvision) and scikit-image; importing this
    # package (the recipe sections, for --dry-run) must not.
    if name == "TranslationTask":
        from falcli.tasks.translation.task import TranslationTask  # keeps --help fast

        return TranslationTask
    if name == "evaluate_translation":
        from falcli.tasks.translation.evaluate import evaluate_translation  # keeps --help fast

        return evaluate_translation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
