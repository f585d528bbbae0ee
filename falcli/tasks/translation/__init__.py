"""Image-to-image translation (pix2pix + FAL): task.py is the Task, nets.py the U-Net and PatchGAN, data.py the
paired data and its jitter, evaluate.py the per-step metrics (L1, PSNR, SSIM, LPIPS, FCN-score, depth)."""
from __future__ import annotations

from falcli.tasks.translation.task import DataConfig, ModelConfig, TranslationTask

__all__ = ["DataConfig", "ModelConfig", "TranslationTask", "evaluate_translation"]


def __getattr__(name: str):
    # evaluate.py imports lpips (and through it torchvision) and scikit-image; loading it only when asked for
    # keeps --help and --dry-run fast, since the task registry imports this package.
    if name == "evaluate_translation":
        from falcli.tasks.translation.evaluate import evaluate_translation

        return evaluate_translation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
