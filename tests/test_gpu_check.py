"""benchmarks/gpu_check.py: what it searches the GPU tests' log for, and that it never mixes two runs' results.
(Its steps themselves were run with --dry on the CPU: 3 min, too long for CI.)"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gpu_check
spec.loader.exec_module(gpu_check)

# PyTorch 2.14's texts (c10 TORCH_WARN in autograd/input_buffer.cpp and cuda/CUDAGraph.cpp), as printed
WARNINGS = {
    "accumulate_grad_stream": "UserWarning: The AccumulateGrad node's stream does not match the stream of the node "
                              "that produced the incoming gradient. This may incur unnecessary synchronization",
    "empty_graph": "UserWarning: The CUDA Graph is empty. This usually means that the graph was attempted to be "
                   "captured on wrong device or stream.",
}


def test_the_searched_texts_are_the_warnings_and_not_the_tests_that_name_them():
    assert set(gpu_check.BROKEN_CAPTURE) == set(WARNINGS)
    for key, needle in gpu_check.BROKEN_CAPTURE.items():
        assert needle in WARNINGS[key]
    for test in ("test_graphs.py", "test_benchmarks.py"):  # a failing GPU test's traceback shows its source
        source = (ROOT / "tests" / test).read_text()
        assert not any(needle in source for needle in gpu_check.BROKEN_CAPTURE.values()), test


def test_every_step_has_a_timeout_within_the_default_budget_and_the_dry_run_stays_on_the_cpu(tmp_path):
    for dry in (False, True):
        for name, command, timeout in gpu_check.steps(dry, tmp_path):
            assert 0 < timeout < 540, name
            assert ("--device" in command and command[command.index("--device") + 1] == "cpu") or \
                name == "pytest_gpu" or not dry, name
    names = [name for name, _, _ in gpu_check.steps(False, tmp_path)]
    assert names == ["pytest_gpu", "train_speed", "fid_speed"]
    speed = gpu_check.steps(False, tmp_path)[1][1]
    assert "--cuda-graph" in speed and speed[speed.index("--batch") + 1:speed.index("--batch") + 3] == ["1", "16"]


def test_a_folder_with_results_is_refused_and_kept(tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert gpu_check.main(["--out", str(tmp_path), "--only", "nothing"]) == 2
    assert (tmp_path / "summary.json").read_text() == "{}"
    assert "already holds results" in capsys.readouterr().err


def test_with_no_step_chosen_it_writes_the_environment_and_a_summary(tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "r"), "--only", "nothing"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["steps"] == {} and summary["environment"]["torch"]
    assert json.loads((tmp_path / "r" / "env.json").read_text())["cuda_available"] in (True, False)
