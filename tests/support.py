"""Helpers shared by the test modules (import them from here, not from conftest: tests/datasets has its own
conftest, and two modules named ``conftest`` cannot both be imported by name)."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from clipbayes.compat import dassl_available  # noqa: E402

GOLDEN = osp.join(ROOT, "tests", "golden")

requires_dassl = pytest.mark.skipif(
    not dassl_available(),
    reason="Dassl.pytorch is not installed (see README 'Set-up'); the trainer and train.py tests need it")


def model_cfg(chunk_size: int = 0, backbone: str | None = None, dataset: str | None = None):
    """The keys a method's model builder reads outside its own node, as a yacs node: MODEL.CLIP's text-pass
    settings, and MODEL.BACKBONE.NAME and DATASET.NAME (with no PROMPT_TEMPLATE) when they are given."""
    from yacs.config import CfgNode as CN
    cfg = CN()
    cfg.MODEL = CN()
    cfg.MODEL.CLIP = CN({"TEXT_CHUNK_SIZE": chunk_size, "TEXT_CHECKPOINTING": False, "PREFIX_SHARING": True})
    if backbone is not None:
        cfg.MODEL.BACKBONE = CN({"NAME": backbone})
    if dataset is not None:
        cfg.DATASET = CN({"NAME": dataset, "PROMPT_TEMPLATE": ""})
    return cfg


def method_node(keys, **values):
    """A method's config node: the defaults declared in ``keys`` (its Key table), then ``values``."""
    from clipbayes.config import default_node
    node = default_node(keys)
    node.update(values)
    return node


def assert_gradients_reach_exactly_the_learner(model) -> None:
    """After a backward pass: the parameters that require grad are exactly ``model.learner``'s, each with a
    finite, non-zero gradient; every other parameter has none."""
    learned = {name for name, p in model.named_parameters() if p.requires_grad}
    assert learned == {f"learner.{name}" for name, _ in model.learner.named_parameters()}
    for name, param in model.named_parameters():
        if name in learned:
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def load_golden(name: str) -> dict:
    return torch.load(osp.join(GOLDEN, name), map_location="cpu", weights_only=False)


class ScriptSandbox:
    """A copy of scripts/ and configs/ with a recording ``python`` (``stub``, a bash script) on PATH, run from
    outside the copy. ``run(script, *args)`` runs ``scripts/<method_dir>/<script>``; ``calls()`` lists the
    recorded python calls. ``cleared``: environment variables of the scripts removed from the test's environment."""

    def __init__(self, tmp_path, method_dir: str, stub: str, cleared: tuple = ()):
        import os
        import shutil

        self.method_dir = method_dir
        self.repo = tmp_path / "repo"
        shutil.copytree(osp.join(ROOT, "scripts"), self.repo / "scripts")
        shutil.copytree(osp.join(ROOT, "configs"), self.repo / "configs")
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "python").write_text(stub)
        (tmp_path / "bin" / "python").chmod(0o755)
        (tmp_path / "data").mkdir()
        self.log = tmp_path / "calls.txt"
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if k not in cleared}
        self.env.update(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", DATA=str(tmp_path / "data"),
                        STUB_LOG=str(self.log))

    def run(self, script, *args):
        import subprocess

        done = subprocess.run(["bash", str(self.repo / "scripts" / self.method_dir / script), *args],
                              cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr

    def calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []
