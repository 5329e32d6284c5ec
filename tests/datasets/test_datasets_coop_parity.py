"""Parity with CoOp's own dataset readers, run on the miniatures.

Needs a checkout of https://github.com/KaiyangZhou/CoOp: ``COOP_SRC=/path/to/CoOp python -m pytest
tests/datasets/test_datasets_coop_parity.py``. Without ``COOP_SRC`` the tests are reported as skipped (with this
reason); everything they cover is also tested above against independent restatements of CoOp's rules.

CoOp's readers are imported from the checkout under a private package name and kept out of Dassl's registry.
For every dataset, shot count, seed and class half, both readers are built after the same seeding on two
identical miniatures; the (relative path, label, class name) lists of train/val/test, the class names and the
global random state afterwards must all be equal. Then each reads the other's few-shot cache.
"""
import contextlib
import importlib
import importlib.util
import io
import os
import random
import sys

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import make_cfg
from tests.datasets.miniature import build_miniature

from clipbayes.datasets import READERS
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase

COOP_SRC = os.environ.get("COOP_SRC", "")
pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(COOP_SRC, "datasets", "oxford_pets.py")),
    reason="set COOP_SRC to a checkout of KaiyangZhou/CoOp to compare with CoOp's readers")

# ImageNetV2 is left out: CoOp's reader hard-codes 1,000 class folders, more than a miniature has.
MODULES = ["oxford_pets", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat", "stanford_cars", "food101",
           "sun397", "caltech101", "ucf101", "imagenet", "imagenet_sketch", "imagenet_a", "imagenet_r"]


@pytest.fixture(scope="module")
def coop_readers():
    package = "coop_reference_datasets"
    spec = importlib.util.spec_from_file_location(
        package, os.path.join(COOP_SRC, "datasets", "__init__.py"),
        submodule_search_locations=[os.path.join(COOP_SRC, "datasets")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    registry = DATASET_REGISTRY._obj_map
    ours = dict(registry)
    registry.clear()
    try:
        for name in MODULES:
            importlib.import_module(f"{package}.{name}")
        theirs = dict(registry)
    finally:
        registry.clear()
        registry.update(ours)
    return theirs


def _build(cls, root, **keys):
    cfg = make_cfg(root, **keys)
    random.seed(cfg.SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        ds = cls(cfg)
    parts = [None if p is None else [(os.path.relpath(d.impath, root), d.label, d.classname) for d in p]
             for p in (ds.train_x, ds.val, ds.test)]
    return parts, ds.classnames, random.random()


@pytest.mark.parametrize("module", MODULES)
def test_same_output_as_coop(tmp_path, coop_readers, module):
    name = next(n for n, cls in coop_readers.items() if cls.__module__.endswith("." + module))
    a = build_miniature(tmp_path / "coop", name).root
    b = build_miniature(tmp_path / "ours", name).root
    halves = ("all",) if name in ("ImageNetSketch", "ImageNetA", "ImageNetR") else ("all", "base", "new")
    for shots in (-1, 1, 4):
        for seed in (1, 2):
            for half in halves:
                keys = dict(NUM_SHOTS=shots, SEED=seed, SUBSAMPLE_CLASSES=half)
                assert _build(coop_readers[name], a, **keys) == _build(READERS[name], b, **keys), (shots, seed, half)


@pytest.mark.parametrize("module", ["oxford_pets", "fgvc_aircraft", "imagenet"])
def test_caches_are_interchangeable(tmp_path, coop_readers, module, monkeypatch):
    name = next(n for n, cls in coop_readers.items() if cls.__module__.endswith("." + module))
    root = build_miniature(tmp_path / "data", name).root
    coop_made = _build(coop_readers[name], root, NUM_SHOTS=2, SEED=11)
    ours_made = _build(READERS[name], root, NUM_SHOTS=4, SEED=12)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled instead of reading the other code base's cache")

    monkeypatch.setattr(DatasetBase, "generate_fewshot_dataset", no_sampling)
    assert _build(READERS[name], root, NUM_SHOTS=2, SEED=11)[:2] == coop_made[:2]
    assert _build(coop_readers[name], root, NUM_SHOTS=4, SEED=12)[:2] == ours_made[:2]
