"""benchmarks/gpu_check.py without a GPU runs nothing and exits 0; what it will run covers every registered method."""
from __future__ import annotations

import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch

from clipbayes.registry import list_methods
from support import ROOT, requires_dassl


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", osp.join(ROOT, "benchmarks", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run everything")
def test_without_cuda_it_says_so_and_runs_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "No CUDA GPU is available: nothing was run" in proc.stdout
    assert not osp.exists(tmp_path / "out")


@requires_dassl
def test_the_benchmark_has_a_configuration_of_every_trainable_method():
    """The GPU check benchmarks bench_trainers.py's configurations; a method missing there would go unmeasured."""
    benchmarked = {spec[0] for spec in load_gpu_check().bench_module().CONFIGS.values()}
    missing = [m.name for m in list_methods() if m.trainable and m.name not in benchmarked]
    assert not missing, f"add a configuration of {missing} to CONFIGS in benchmarks/bench_trainers.py"
