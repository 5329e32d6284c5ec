"""Shared fixtures of the dataset tests (helpers live in tests/datasets/helpers.py)."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Every test gets its own per-user cache folder (never the real ~/.cache)."""
    folder = tmp_path / "user_cache"
    monkeypatch.setenv("CLIPBAYES_CACHE", str(folder))
    return folder

