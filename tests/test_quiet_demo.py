"""The README's main job (``python train.py --trainer BayesianPrompt``, the embedded demo) raises no warning from
our own code: every warning of the run is recorded, whatever the filters of the Python defaults, and the test fails
on those attributed to a file of the ``clipbayes`` package or to ``train.py``; and the lines it prints are the
seed-1 lines docs/toyworld.md shows."""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys

from support import ROOT, requires_dassl

sys.path.insert(0, osp.join(ROOT, "benchmarks"))

from generated_docs import read_block  # noqa: E402

pytestmark = requires_dassl

# Runs train.py as `python train.py ARGS` does, with every warning shown (simplefilter "always": also those the
# default filters hide, e.g. DeprecationWarning outside __main__) and written as one tagged line on stderr.
RUN_RECORDING_WARNINGS = r"""
import os, runpy, sys, warnings

root = os.getcwd()
ours = (os.path.join(root, "clipbayes") + os.sep, os.path.join(root, "train.py"))

def show(message, category, filename, lineno, file=None, line=None):
    tag = "OUR-WARNING" if os.path.abspath(filename).startswith(ours) else "OTHER-WARNING"
    sys.stderr.write(f"{tag} {filename}:{lineno}: {category.__name__}: {message}\n")

warnings.showwarning = show
warnings.simplefilter("always")
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def test_main_job_raises_no_warning_from_our_code_and_prints_the_documented_lines(tmp_path):
    env = {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "PYTHONPATH": ROOT, "PYTHONWARNINGS": ""}
    proc = subprocess.run([sys.executable, "-c", RUN_RECORDING_WARNINGS, "--trainer", "BayesianPrompt",
                           "--output-dir", str(tmp_path / "demo")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Demo finished" in proc.stdout
    documented = read_block(osp.join(ROOT, "docs", "toyworld.md"), "demo_seed1")
    for printed, row in (("zero-shot CLIP", "ZeroshotCLIP"), ("BayesianPrompt", "BayesianPrompt")):
        numbers = re.search(rf"^{printed}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", proc.stdout, re.M)
        assert numbers, proc.stdout[-2000:]
        # the docs' seed-1 line (benchmarks/toy_protocols.py --write-docs) is what the shipped demo prints
        assert f"| {row} | {' | '.join(numbers.groups())} |" in documented, (numbers.groups(), documented)
    lines = proc.stderr.splitlines()
    ours = [line for line in lines if line.startswith("OUR-WARNING")]
    others = [line for line in lines if line.startswith("OTHER-WARNING")]
    context = "\n(warnings from other packages, for information:)\n" + "\n".join(others) if others else ""
    assert not ours, "warnings raised from our code:\n" + "\n".join(ours) + context
