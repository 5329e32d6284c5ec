"""Regression: every folder of Python modules under clipbayes/ is a package that setup.py installs."""
import os
import os.path as osp

from setuptools import find_packages

from support import ROOT


def test_every_module_folder_is_installed():
    installed = set(find_packages(ROOT, include=["clipbayes", "clipbayes.*"]))
    for folder, _, files in os.walk(osp.join(ROOT, "clipbayes")):
        if "__pycache__" in folder or not any(f.endswith(".py") for f in files):
            continue
        package = osp.relpath(folder, ROOT).replace(os.sep, ".")
        assert package in installed, f"{package} has no __init__.py and would be missing from the installed package"
