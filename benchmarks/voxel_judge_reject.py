"""Voxel judge from the shipped recipes/voxel_classifier.yaml (primitives, 32³, 150 iterations), seeds 0-2:
accuracy (= share assigned to a shape class; for real shapes: to the right one) on real val shapes, uniform
noise cubes, and salt-and-pepper perturbed val shapes; prints per seed, then a table of mean ± std and per seed.

    OMP_NUM_THREADS=1 PYTHONPATH=CHECKOUT python benchmarks/voxel_judge_reject.py CHECKOUT

(the table in docs/voxel.md: CHECKOUT = this one, and one of the code before the reject class, whose judge has
no reject output, so every input counts as assigned to a class). About 5 min per seed on a loaded 2-core CPU.
"""
import statistics, sys, tempfile
from pathlib import Path
import torch
try:
    from falcli.resolve import load_recipe
except ImportError:  # a checkout from before resolve.py (the "before the reject class" row)
    from falcli.config import load_recipe
from falcli.judges import JUDGES
from falcli.judges.base import fit, predict

judge = JUDGES["voxel-classifier"]
checkout = Path(sys.argv[1])
rows = {}
for seed in (0, 1, 2):
    recipe = load_recipe(checkout / "recipes" / "voxel_classifier.yaml", [f"seed={seed}"])
    out = Path(tempfile.mkdtemp()) / "j"
    path = fit(judge, recipe, out, torch.device("cpu"))
    payload = torch.load(path, weights_only=True)
    net = judge.make_net(recipe); net.load_state_dict(payload["net"]); net.eval()
    K = len(judge.class_names(recipe))
    real, truth = judge.load_data(recipe, "val")
    g = torch.Generator().manual_seed(100 + seed)
    shape = (200, 1, 32, 32, 32)
    cases = {
        "real val shapes (right class)": (predict(net, real, torch.device("cpu")) == truth).float().mean(),
        "uniform noise p=0.5": None, "uniform noise p~U(0,1)": None,
        "salt-and-pepper 5%": 0.05, "salt-and-pepper 20%": 0.2,
    }
    res = {}
    for name, v in cases.items():
        if name.startswith("real"):
            res[name] = float(v); continue
        if name == "uniform noise p=0.5":
            x = (torch.rand(shape, generator=g) < 0.5).to(torch.uint8)
        elif name.startswith("uniform"):
            x = (torch.rand(shape, generator=g) < torch.rand(200, 1, 1, 1, 1, generator=g)).to(torch.uint8)
        else:
            x = real ^ (torch.rand(real.shape, generator=g) < v).to(torch.uint8)
        res[name] = float((predict(net, x, torch.device("cpu")) < K).float().mean())
    for k, v in res.items():
        rows.setdefault(k, []).append(v)
    print(seed, res, flush=True)
for k, v in rows.items():
    print(f"| {k} | {statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} | {' / '.join(f'{x:.3f}' for x in v)} |")
