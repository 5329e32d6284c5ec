"""benchmarks/toy_sensitivity.py: the choice is made on validation only, each grid's default is one of its values
and is a key of its method, and the runs' folders are path-safe."""
from __future__ import annotations

import os.path as osp
import sys

import pytest

from support import ROOT, requires_dassl

sys.path.insert(0, osp.join(ROOT, "benchmarks"))

toy_sensitivity = pytest.importorskip("toy_sensitivity")


def _results(values, test_hm, val_hm):
    return {v: {1: dict(base=t, new=t, hm=t, val_hm=h), 2: dict(base=t, new=t, hm=t, val_hm=h)}
            for v, t, h in zip(values, test_hm, val_hm)}


def test_the_value_chosen_is_the_best_on_validation_whatever_test_says():
    grid = toy_sensitivity.Grid("TRAINER.X.KEY", ("a", "b", "c"), "a")
    assert toy_sensitivity.chosen_value(grid, _results(grid.values, [90, 10, 50], [40, 60, 55])) == "b"
    assert toy_sensitivity.chosen_value(grid, _results(grid.values, [10, 90, 90], [60, 60, 60])) == "a"  # tie


@requires_dassl
@pytest.mark.parametrize("method", list(toy_sensitivity.GRIDS))
def test_each_grid_is_a_key_of_its_method_with_its_default_among_the_values(method):
    from clipbayes.registry import get_method
    grid = toy_sensitivity.GRIDS[method]
    node, key = grid.key.split(".")[1:]
    spec = get_method(method)
    assert spec.node == node and key in spec.keys
    assert grid.default in grid.values
    assert str(spec.keys[key].default).replace(" ", "") == grid.default.replace(" ", "")


def test_grid_points_get_path_safe_distinct_folders():
    grid = toy_sensitivity.GRIDS["BayesianPrompt"]
    labels = [toy_sensitivity.label(grid, v) for v in grid.values]
    assert len(set(labels)) == len(labels)
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._") for name in labels)
