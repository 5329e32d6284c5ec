"""Session fixtures: the tiny CLIP of the golden vectors and the golden inputs."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from support import GOLDEN, load_golden  # noqa: E402

from clipbayes.compat import import_clip  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (tests/test_cuda.py; skipped without one, run on a "
                                       "GPU machine by benchmarks/gpu_check.py)")


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
