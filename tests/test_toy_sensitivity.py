"""benchmarks/toy_sensitivity.py: every trained method is swept, the same shared axes for all; the choice is made on
validation only; each axis's rule value is what the budget rule gives the method; each point moves the
configuration off the rule's; the runs' folders are path-safe and distinct."""
from __future__ import annotations

import os.path as osp
import sys

import pytest

from support import ROOT, requires_dassl

sys.path.insert(0, osp.join(ROOT, "benchmarks"))

toy_sensitivity = pytest.importorskip("toy_sensitivity")


def _results(test_hm, val_hm):
    points = [toy_sensitivity.DEFAULT, ("X", "a"), ("X", "b")]
    return {p: {1: dict(base=t, new=t, hm=t, val_hm=h), 2: dict(base=t, new=t, hm=t, val_hm=h)}
            for p, t, h in zip(points, test_hm, val_hm)}


def test_the_point_chosen_is_the_best_on_validation_whatever_test_says():
    assert toy_sensitivity.chosen_point(_results([90, 10, 50], [40, 60, 55])) == ("X", "a")
    assert toy_sensitivity.chosen_point(_results([10, 90, 90], [60, 60, 60])) == toy_sensitivity.DEFAULT  # tie


@requires_dassl
def test_every_trained_method_has_a_sweep():
    from clipbayes.registry import list_methods
    assert set(toy_sensitivity.METHOD_AXES) == {m.name for m in list_methods() if m.trainable}


def _rule_cfg(method, extra=()):
    from clipbayes.cli import build_parser, setup_cfg
    from clipbayes.toyworld import protocol
    argv = ["--trainer", method, *protocol.trainer_options(method), "DATASET.NAME", "ToyWorld", *extra]
    return setup_cfg(build_parser().parse_args(argv))


def _value(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


@requires_dassl
@pytest.mark.parametrize("method", list(toy_sensitivity.METHOD_AXES))
def test_each_axis_holds_the_rules_value_and_every_other_point_moves_off_it(method):
    rule = _rule_cfg(method)
    for axis in toy_sensitivity.axes_of(method):
        assert axis.default in axis.values, axis.name
        for value, options in axis.values.items():
            moved = _rule_cfg(method, options)
            changed = [key for key in options[::2] if _value(moved, key) != _value(rule, key)]
            if value == axis.default:  # the rule's point: its options change nothing
                assert not changed, (axis.name, value, changed)
            else:
                assert changed, (axis.name, value)


@requires_dassl
def test_the_rules_point_is_the_toy_tables_run_and_other_points_get_their_own_folders():
    for method in toy_sensitivity.METHOD_AXES:
        tasks = toy_sensitivity.tasks_of(method, toy_sensitivity.axes_of(method), [1, 2])
        rule = tasks[(toy_sensitivity.DEFAULT, 1)]
        assert rule.options == () and rule.label is None and rule.with_validation
        labels = {task.label for (point, seed), task in tasks.items() if point != toy_sensitivity.DEFAULT}
        assert len(labels) == len(tasks) // 2 - 1
        assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789._") for name in labels)


def test_plot_and_table_of_a_sweep(tmp_path):
    """One panel per axis, the rule's point at each axis's default; the table names the chosen point."""
    axes = toy_sensitivity.axes_of("LogitPrior")
    tasks = toy_sensitivity.tasks_of("LogitPrior", axes, [1, 2])
    results = {}
    for i, (point, seed) in enumerate(tasks):
        acc = 60.0 + i % 7
        results.setdefault(point, {})[seed] = dict(base=acc, new=acc - 1, hm=acc - 0.5, val_hm=acc + seed)
    path = tmp_path / "sensitivity_LogitPrior.png"
    toy_sensitivity.plot("LogitPrior", axes, results, str(path))
    assert path.stat().st_size > 10_000
    text = toy_sensitivity.table([("LogitPrior", results)])
    chosen = toy_sensitivity.chosen_point(results)
    assert "| LogitPrior | " in text and toy_sensitivity.describe(chosen) in text
    assert text.splitlines()[-1].endswith(f"| {len(results)} |")
