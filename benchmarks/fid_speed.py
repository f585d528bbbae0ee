"""`fal evaluate fid` against pytorch-fid's own pipeline: the same images, the same network, one run.

    python benchmarks/fid_speed.py                          # CPU-sized: 100 shapes per side, 64², --dims 64
    python benchmarks/fid_speed.py --n 10000 --dims 2048    # the GPU comparison (CUDA is used when present)

Both sides read the same two folders of PNGs and the same Inception weights: --weights PATH, or by default a
random FID-Inception state dict written to a temporary file (random weights give a value that is NOT
comparable with published FIDs, but the two pipelines must still agree on it). pytorch-fid builds its own
`InceptionV3` and loads that state dict through its usual `load_state_dict_from_url` (patched to read the
file instead of downloading). Prints both wall times (model loading and reading the images included), both
values and the speed-up. `--trace-dims D` also times the trace term alone on D-dim statistics: scipy's sqrtm
(pytorch-fid) against the eigenvalue trace (fal).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfi

from falcli.console import print_error
from falcli.data.shapes import make_shapes
from falcli.errors import FalError
from falcli.commands.evaluate.fid import fid_command
from falcli.metrics import fid
from falcli.core.runtime import pick_device


def write_folder(folder: Path, count: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    for i, image in enumerate(make_shapes(count, size, seed)["images"]):
        Image.fromarray(image).save(folder / f"{i:06d}.png")
    return folder


def time_trace(dims: int) -> tuple[float, float, float, float]:
    """(fal seconds, fal value, pytorch-fid seconds, pytorch-fid value) of the Fréchet distance alone."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(dims + 64, dims))
    mu1, sigma1 = fid.statistics(features)
    mu2, sigma2 = fid.statistics(features + 0.3 * rng.normal(size=features.shape))
    start = time.perf_counter()
    ours = fid.frechet_distance(mu1, sigma1, mu2, sigma2)
    middle = time.perf_counter()
    theirs = fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    return middle - start, ours, time.perf_counter() - middle, float(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="images per side")
    parser.add_argument("--size", type=int, default=64, choices=(32, 64, 128), help="image side in pixels")
    parser.add_argument("--dims", type=int, default=64, choices=(64, 192, 768, 2048))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=50, help="for both pipelines (pytorch-fid's default)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decoding processes")
    parser.add_argument("--weights", type=Path, default=None, help="Inception state dict (default: random)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--trace-dims", type=int, default=0, help="also time the trace term alone at D dims")
    parser.add_argument("--order", choices=("fal-first", "pytorch-fid-first"), default="pytorch-fid-first")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (a new file)")
    args = parser.parse_args()
    if args.json is not None and args.json.exists():
        raise FalError(f"--json {args.json}: already exists; pass another path")
    pick_device(args.device)  # --device cuda without a GPU: one line, before anything is written
    if args.n <= args.dims:
        raise FalError(f"--n {args.n}: FID over {args.dims}-dim features needs more than {args.dims} images per side")
    if args.weights is not None and not args.weights.is_file():
        raise FalError(f"--weights {args.weights}: no such file")
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="The `disp` argument")  # scipy >= 1.16 on pytorch-fid's sqrtm

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = write_folder(tmp / "a", args.n, args.size, seed=1)
        b = write_folder(tmp / "b", args.n, args.size, seed=2)
        weights = args.weights
        if weights is None:
            torch.manual_seed(0)
            weights = tmp / "random_inception.pth"
            torch.save(fid._fid_inception_v3(None).state_dict(), weights)
        pfi.load_state_dict_from_url = lambda *_, **__: torch.load(weights, map_location="cpu", weights_only=True)

        def run_fal() -> tuple[float, float]:
            start = time.perf_counter()
            result = fid_command(a, b, dims=args.dims, weights=weights, allow_unofficial=True, device=args.device,
                                 batch_size=args.batch_size, workers=args.workers)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start, result["rows"][0]["fid"]

        def run_pytorch_fid() -> tuple[float, float]:
            start = time.perf_counter()
            value = fid_score.calculate_fid_given_paths([str(a), str(b)], args.batch_size, args.device, args.dims,
                                                        num_workers=args.workers)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start, float(value)

        runs = [("fal", run_fal), ("pytorch-fid", run_pytorch_fid)]
        if args.order == "pytorch-fid-first":
            runs.reverse()
        results = {name: fn() for name, fn in runs}

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.n} images per side, {args.size}², dims {args.dims}, batch {args.batch_size}, "
          f"{args.workers} workers, {device}, weights {'random' if args.weights is None else args.weights}")
    for name in ("pytorch-fid", "fal"):
        seconds, value = results[name]
        print(f"  {name:12s} {seconds:8.2f} s   FID {value:.6f}")
    (fal_s, fal_v), (ref_s, ref_v) = results["fal"], results["pytorch-fid"]
    print(f"  speed-up {ref_s / fal_s:.2f}×, |difference| {abs(fal_v - ref_v):.2e} "
          f"(relative {abs(fal_v - ref_v) / max(abs(ref_v), 1e-12):.1e})")
    figures = {"n": args.n, "size": args.size, "dims": args.dims, "batch_size": args.batch_size,
               "workers": args.workers, "device": device, "torch": str(torch.__version__),
               "weights": "random" if args.weights is None else str(args.weights), "order": args.order,
               "fal": {"seconds": fal_s, "fid": fal_v}, "pytorch_fid": {"seconds": ref_s, "fid": ref_v},
               "speedup": ref_s / fal_s, "abs_difference": abs(fal_v - ref_v)}
    if args.trace_dims:
        ours_s, ours_v, sqrtm_s, sqrtm_v = time_trace(args.trace_dims)
        print(f"  trace term alone at {args.trace_dims} dims: sqrtm {sqrtm_s:.2f} s, eigenvalues {ours_s:.2f} s "
              f"({sqrtm_s / ours_s:.1f}×), values {sqrtm_v:.6f} / {ours_v:.6f}")
        figures["trace"] = {"dims": args.trace_dims, "fal_seconds": ours_s, "fal": ours_v,
                            "sqrtm_seconds": sqrtm_s, "sqrtm": sqrtm_v}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except FalError as error:
        print_error(str(error))
        sys.exit(2)
