"""Opt-in: the official deep-prompt code, rerun from a checkout, reproduces the committed golden numbers.

    MAPLE_SRC=/path/to/multimodal-prompt-learning BP_CLIP_SRC=/path/to/BP_CLIP \\
        python -m pytest -q tests/test_official_deep_prompts.py

MAPLE_SRC (muzairkhattak/multimodal-prompt-learning @ 69bce21) covers maple, ivlp, ivlp_lang_only and vpt;
BP_CLIP_SRC (MingyuKim87/BP_CLIP @ 4aae072) covers apex. Without them these tests are reported as skipped with that
reason; a checkout at another commit is skipped too (its numbers may legitimately differ). The official code is run
by tests/official_deep_prompts.py (its runtime patches: PATCHES there); tests/test_deep_prompts.py compares our
methods with the same numbers. Only the first test needs no checkout: the case table agrees with the golden configs.

Measured here (torch 2.14.1, CPU): every tensor of every expectation set is bit for bit the committed one, and the
recipe rebuilds the committed params exactly. The tolerances leave room for other CPUs' kernels only: 1e-6 of each
tensor's largest entry in pure fp32; one fp16 rounding step (2^-11) in the sets with the official half casts, which
round each prompt copy's gradient (and run APEX's second CLIP in fp16).
"""
from __future__ import annotations

import functools
import os
import os.path as osp
import warnings

import pytest
import torch

from official_deep_prompts import CASES, NEW_CLASSNAMES, checkout_commit, official_code, recipe_params, rerun
from support import load_golden, requires_dassl

SOURCE_VARIABLES = {"maple": "MAPLE_SRC", "ivlp": "MAPLE_SRC", "ivlp_lang_only": "MAPLE_SRC", "vpt": "MAPLE_SRC",
                    "apex": "BP_CLIP_SRC"}
FP32_TOLERANCE, HALF_STEP = 1e-6, 2.0 ** -11
SETS = [(case, name) for case, spec in CASES.items() for name in spec.expectation_sets]


def official_checkout(case_name: str) -> str:
    """The checkout named by the case's environment variable; the test is skipped without one or when it is not at
    the golden commit (a warning when its commit cannot be read)."""
    case, variable = CASES[case_name], SOURCE_VARIABLES[case_name]
    src = os.environ.get(variable, "")
    if not osp.isfile(osp.join(src, case.trainer_file)):
        pytest.skip(f"set {variable} to a checkout of {case.repo} @ {case.commit[:7]} to rerun the official "
                    f"{case.trainer_class} and compare with tests/golden/{case_name}.pt")
    commit = checkout_commit(src)
    if commit is None:
        warnings.warn(f"{variable}={src} is not a git work tree: its commit cannot be checked against "
                      f"{case.commit[:7]}")
    elif commit != case.commit:
        pytest.skip(f"{variable} is at {commit[:7]}; the golden numbers come from {case.commit[:7]} "
                    f"(git -C {src} checkout {case.commit[:7]})")
    return src


@functools.lru_cache(maxsize=None)
def rerun_at_golden_params(case_name: str) -> dict:
    return rerun(official_checkout(case_name), case_name, load_golden(f"{case_name}.pt")["params"])


def relative_error(actual, expected) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def test_the_case_table_is_the_golden_configs():
    for case_name, case in CASES.items():
        config = load_golden(f"{case_name}.pt")["config"]
        assert (case.repo, case.commit) == (config["official_repo"], config["official_commit"]), case_name
        assert set(case.expectation_sets) == {k for k in load_golden(f"{case_name}.pt") if k.startswith("expected")}
        if case.is_apex:
            assert {**case.settings, "CTX_INIT": "a photo of a #."} == config["trainer_cfg"]
            assert NEW_CLASSNAMES == config["inputs"]["new_classnames"]
        else:
            assert (case.trainer_file, case.config_file) == (config["trainer_file"], config["config_file"])
            assert case.overrides() == config["overrides"], case_name


@requires_dassl
@pytest.mark.parametrize("case_name,set_name", SETS)
def test_the_official_code_reproduces_the_golden_numbers(case_name, set_name):
    expected = load_golden(f"{case_name}.pt")[set_name]
    actual = rerun_at_golden_params(case_name)[set_name]
    tolerance = HALF_STEP if CASES[case_name].expectation_sets[set_name].half_cast else FP32_TOLERANCE
    assert set(actual) == set(expected) and set(actual["grads"]) == set(expected["grads"])
    errors = {key: relative_error(actual[key], expected[key]) for key in expected if key != "grads"}
    errors.update({f"grads[{name}]": relative_error(actual["grads"][name], grad)
                   for name, grad in expected["grads"].items()})
    assert max(errors.values()) <= tolerance, errors


@requires_dassl
@pytest.mark.parametrize("case_name", sorted(CASES))
def test_the_golden_params_follow_their_recipe(case_name):
    golden = load_golden(f"{case_name}.pt")["params"]
    case = CASES[case_name]
    with official_code(official_checkout(case_name), case) as official:
        params = recipe_params(official)
    assert list(params) == list(golden)
    for name, value in golden.items():
        assert torch.equal(params[name], value), name
