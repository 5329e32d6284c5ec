"""Shared fixtures: golden vectors, tiny CLIP models, and a skip marker for tests that need Dassl."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from clipbayes.compat import dassl_available, import_clip  # noqa: E402

GOLDEN = osp.join(ROOT, "tests", "golden")

requires_dassl = pytest.mark.skipif(
    not dassl_available(),
    reason="Dassl.pytorch is not installed (see README 'Set-up'); the trainer and train.py tests need it")


def load_golden(name: str) -> dict:
    return torch.load(osp.join(GOLDEN, name), map_location="cpu", weights_only=False)


@pytest.fixture(scope="session")
def golden_clip():
    """The tiny ViT CLIP the golden vectors were computed with, in fp32 eval mode."""
    clip = import_clip()
    state = torch.load(osp.join(GOLDEN, "tiny_clip_vit.pt"), map_location="cpu", weights_only=True)
    model = clip.model.build_model(dict(state)).float().eval()
    return model.requires_grad_(False)


@pytest.fixture(scope="session")
def golden_inputs() -> dict:
    return load_golden("inputs.pt")
