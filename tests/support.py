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


def load_golden(name: str) -> dict:
    return torch.load(osp.join(GOLDEN, name), map_location="cpu", weights_only=False)
