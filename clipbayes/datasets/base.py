"""The reading pipeline every benchmark reader shares.

``__init__`` of :class:`CoOpDataset` does, in CoOp's order:

1. read train/val/test (a ``split_zhou_<Name>.json`` file, the dataset's own annotation files, or folders);
2. take the few-shot subset of train and val (``DATASET.NUM_SHOTS`` >= 1), cached (:mod:`.fewshot`);
3. keep the base or new half of the classes (``DATASET.SUBSAMPLE_CLASSES``, :mod:`.subsample`);
4. hand the lists to Dassl's ``DatasetBase``.

A reader subclass only says where its files are and how to turn them into records.
"""
from __future__ import annotations

import os
import random
from typing import List, Optional, Tuple

from clipbayes.compat import import_dassl

import_dassl()
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase  # noqa: E402

from . import cache  # noqa: E402
from .config import option  # noqa: E402
from .errors import DatasetFileMissingError  # noqa: E402
from .fewshot import fewshot_subset  # noqa: E402
from .sources import SOURCES, DatasetSource  # noqa: E402
from .splits import Splits, read_split_json, split_to_json, to_datums  # noqa: E402
from .subsample import CHOICES as SUBSAMPLE_CHOICES, subsample_classes  # noqa: E402


def register(cls):
    """Register a reader in Dassl's ``DATASET_REGISTRY`` under its class name.

    Re-importing the same module (e.g. after ``importlib.reload``) replaces the entry; a *different* class
    already registered under the name (e.g. CoOp's own reader) is replaced with a warning.
    """
    name = cls.__name__
    if name in DATASET_REGISTRY.registered_names():
        existing = DATASET_REGISTRY.get(name)
        if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
            cache.log(f"WARNING: replacing the dataset {name!r} registered by {existing.__module__} "
                      f"with {cls.__module__}.{name}")
        DATASET_REGISTRY.register(cls, force=True)
    else:
        DATASET_REGISTRY.register(cls)
    return cls


class CoOpDataset(DatasetBase):
    """Shared reader. Class attributes (set by subclasses):

    ``dataset_dir``   folder under ``DATASET.ROOT`` (on an instance: its absolute path, as in CoOp's readers)
    ``image_subdir``  image folder inside it
    ``split_name``    ``split_zhou_<Name>.json``, or None for datasets read from annotations/folders only
    ``test_only``     ImageNet variants: no training data, no few-shot sampling
    ``val_is_test``   ImageNet: its validation images serve as test and val; only train is few-shot sampled
    """

    dataset_dir = ""
    image_subdir = ""
    split_name: Optional[str] = None
    test_only = False
    val_is_test = False

    # ---- set-up -------------------------------------------------------------------------------------------
    def __init__(self, cfg):
        subsample = str(option(cfg, "SUBSAMPLE_CLASSES"))
        if subsample not in SUBSAMPLE_CHOICES:
            raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
        self.auto_split = bool(option(cfg, "AUTO_SPLIT"))
        self.split_seed = int(option(cfg, "AUTO_SPLIT_SEED"))
        self.read_options(cfg)
        self._locate(cfg.DATASET.ROOT)
        self.require_dataset_dir()

        train, val, test = self.load_datums()

        num_shots = int(cfg.DATASET.NUM_SHOTS)
        if num_shots >= 1 and not self.test_only:
            train, sampled_val = fewshot_subset(
                self, train, None if self.val_is_test else val, num_shots=num_shots, seed=int(cfg.SEED),
                dataset_dir=self.dataset_dir, use_cache=bool(option(cfg, "FEWSHOT_CACHE")),
                tag=self.fewshot_tag())
            if not self.val_is_test:
                val = sampled_val

        if val is None or self.val_is_test:
            train, test = subsample_classes(train, test, subsample=subsample)
            val = test if self.val_is_test else None
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        super().__init__(train_x=train, val=val, test=test)

    @classmethod
    def probe(cls, root: str, auto_split: bool = False):
        """An instance with paths set but nothing read (used by the checker)."""
        obj = cls.__new__(cls)
        obj.auto_split = auto_split
        obj.split_seed = 1
        obj.set_default_options()
        obj._locate(root)
        return obj

    def _locate(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir \
            else self.dataset_dir

    def read_options(self, cfg) -> None:
        """Hook for readers with their own config keys (custom datasets)."""

    def set_default_options(self) -> None:
        """Hook: option defaults for :meth:`probe`."""

    def fewshot_tag(self) -> str:
        """Suffix of the few-shot cache file name; empty for CoOp's datasets (their cache names are CoOp's)."""
        return ""

    # ---- file checks --------------------------------------------------------------------------------------
    @property
    def source(self) -> Optional[DatasetSource]:
        return SOURCES.get(type(self).__name__)

    @property
    def split_root(self) -> str:
        """The folder that paths in the split file are relative to."""
        return self.image_dir

    def source_of(self, relpath: str) -> str:
        """Where a file of this dataset comes from (the most specific entry of the sources table)."""
        src = self.source
        if src is None:
            return ""
        best = None
        for need in src.needs:
            if relpath == need.path or relpath.startswith(need.path + "/"):
                if best is None or len(need.path) > len(best.path):
                    best = need
        return best.source if best else ""

    def require(self, relpath: str, what: str = "", hint: str = "") -> str:
        """Absolute path of ``relpath`` inside the dataset folder; raises a helpful error when it is absent."""
        path = os.path.join(self.dataset_dir, relpath)
        if not os.path.exists(path):
            raise DatasetFileMissingError(type(self).__name__, path, what or "file or folder",
                                          self.source_of(relpath), hint, self.root)
        return path

    def require_dataset_dir(self) -> None:
        if not os.path.isdir(self.dataset_dir):
            anchor = f" (DATASETS.md#{self.source.anchor})" if self.source else ""
            raise DatasetFileMissingError(
                type(self).__name__, self.dataset_dir, "dataset folder",
                f"see DATASETS.md{anchor}; the folder must be named {type(self).dataset_dir!r} inside "
                f"DATASET.ROOT ({self.root})", root=self.root)

    # ---- reading ------------------------------------------------------------------------------------------
    def load_datums(self) -> Tuple[List, Optional[List], List]:
        """(train, val, test) as Datum lists; val is None for test-only datasets."""
        splits, origin = self.read_records()
        train, val, test = to_datums(*splits, dataset=type(self).__name__, listed_in=origin)
        if self.test_only:
            return test, None, test
        return train, val, test

    def read_records(self) -> Tuple[Splits, str]:
        """The split as records, and a description of where it was read from."""
        name = type(self).__name__
        split_path = os.path.join(self.dataset_dir, self.split_name)
        if os.path.isfile(split_path):
            cache.log(f"Reading split from {split_path}")
            return read_split_json(split_path, self.split_root, name), split_path
        can_generate = bool(self.source and self.source.auto_split)
        if self.auto_split and can_generate:
            return self._auto_split_records()
        hint = ""
        if can_generate:
            hint = ("Alternatively, set DATASET.AUTO_SPLIT True to generate a split from the dataset's own "
                    "annotation files. A generated split is NOT identical to CoOp's published split, so results "
                    "are not comparable with published numbers (see DATASETS.md, 'Generated splits').")
        raise DatasetFileMissingError(name, split_path, "split file", self.source_of(self.split_name), hint,
                                      self.root)

    def auto_split_filename(self) -> str:
        return f"split_auto_{type(self).__name__}_seed{self.split_seed}.json"

    def _auto_split_records(self) -> Tuple[Splits, str]:
        name = type(self).__name__
        paths = cache.candidate_paths(self.auto_split_filename(), self.dataset_dir, self.dataset_dir, "splits")
        for path in paths:
            if os.path.isfile(path):
                cache.log(f"{self.split_name} not found; using the generated split {path} (DATASET.AUTO_SPLIT; "
                          "NOT CoOp's published split)")
                return read_split_json(path, self.split_root, name), path
        cache.log(f"{self.split_name} not found in {self.dataset_dir}; generating a split from the annotation "
                  f"files (DATASET.AUTO_SPLIT, seed {self.split_seed}). It is NOT identical to CoOp's published "
                  "split: results are not comparable with published numbers.")
        splits = self.generate_split(random.Random(self.split_seed))
        content = split_to_json(splits, self.split_root)
        saved = cache.write_first_possible(paths, lambda p: cache.atomic_write_json(content, p), "generated split")
        return splits, saved or "the generated split"

    def generate_split(self, rng: random.Random) -> Splits:
        """Build train/val/test from the annotation files (datasets with ``auto_split`` in the sources table)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate a split")
