"""A FAL run that starts from a trained plain GAN: G's backbone and D (with D's Adam state) from a `feedback.steps: 1`
checkpoint, the feedback modules fresh (identity), written as a checkpoint of the FAL recipe at the plain run's
iteration, so that `fal train --resume` continues it as a FAL run (docs/image.md, "Feedback as a fine-tune stage").

    python benchmarks/shapes_graft.py PLAIN_CKPT OUT [--backbone ema|raw] [--set key=value ...]
    fal train recipes/shapes.yaml --resume OUT/checkpoints/iter-N.pt --out OUT --set (the same) ...

--backbone ema: G (and G_ema) take the plain run's G_ema, the generator its FID was measured on; raw: G takes its G.
A first look (seed 0), not a product option: it did not pay, so `fal train` has no such setting.
"""
import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from falcli.commands import train  # noqa: E402
from falcli.core import checkpoint  # noqa: E402
from falcli.resolve import load_recipe  # noqa: E402
from falcli.config import recipe_to_dict, recipe_to_yaml  # noqa: E402
from falcli.tasks import TASKS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt", help="a checkpoint of the plain GAN (feedback.steps: 1)")
    parser.add_argument("out", help="a new folder for the FAL run")
    parser.add_argument("--backbone", choices=["ema", "raw"], default="ema")
    parser.add_argument("--recipe", default="recipes/shapes.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="the FAL run's overrides, as `fal train` gets them")
    args = parser.parse_args()
    plain = checkpoint.load(Path(args.ckpt))
    recipe = load_recipe(args.recipe, args.set + [f"seed={plain['recipe']['seed']}"])
    if plain["recipe"]["model"] != recipe_to_dict(recipe)["model"]:  # else the weights below do not fit
        sys.exit(f"{args.ckpt}: its `model` differs from {args.recipe}'s; graft onto the recipe it was trained with")
    if args.backbone == "ema" and plain["G_ema"] is None:
        sys.exit(f"{args.ckpt}: trained without train.ema_decay; graft with --backbone raw")
    G, D = train.build_networks(TASKS[recipe.task], recipe, torch.device("cpu"))
    missing, unexpected = G.load_state_dict(plain["G_ema" if args.backbone == "ema" else "G"], strict=False)
    if unexpected or not all(key.startswith("feedback.") for key in missing):
        sys.exit(f"{args.ckpt}: not a plain GAN (feedback.steps: 1) of this model: missing {missing}, "
                 f"unexpected {unexpected}")
    D.load_state_dict(plain["D"])
    G_ema = copy.deepcopy(G)
    if args.backbone == "raw" and plain["G_ema"] is not None:  # G_ema keeps the plain run's average (its fresh
        G_ema.load_state_dict(plain["G_ema"], strict=False)     # feedback modules stay G's)
    opt_G, opt_D = train.make_optimizers(G, D, recipe.train, torch.device("cpu"), recipe.feedback.lr)
    opt_D.load_state_dict(plain["opt_D"])  # G's Adam starts fresh: its parameter groups are new
    out = Path(args.out)
    (out / "checkpoints").mkdir(parents=True, exist_ok=False)
    (out / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    checkpoint.set_rng_state(plain["rng"])  # saved with the checkpoint: the continued run draws as the plain one
    train._save_checkpoint(out, plain["iteration"], recipe, G, D, G_ema, opt_G, opt_D)
    print(f"{out}: a FAL run at iteration {plain['iteration']} ({len(missing)} feedback tensors fresh)")


if __name__ == "__main__":
    main()
