"""Users' own datasets, configured from a yaml alone (keys under ``DATASET.CUSTOM``, see DATASETS.md).

``ImageFolderDataset`` reads either ``<dir>/{train,val,test}/<class>/<image>`` (``val`` and ``test`` may be
missing, not both) or ``<dir>/<class>/<image>``, which is split per class with ``CUSTOM.SPLIT_RATIOS``.
``CSVDataset`` reads rows ``path,label[,split]`` (optional header; labels are class indices with a class-name
file, or class names). Both then go through the same few-shot / base-new pipeline as the benchmarks.

Every split they generate shuffles sorted file names with ``random.Random(DATASET.AUTO_SPLIT_SEED)``: it
depends on the files and that seed only, not on the run's ``--seed``.
"""
from __future__ import annotations

import csv
import hashlib
import os
import random
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from . import cache
from .base import CoOpDataset, register
from .config import option
from .errors import DatasetError, DatasetFileMissingError, SplitFormatError
from .splits import (Group, Record, Splits, hold_out_val, list_class_folders, list_images, read_lines,
                     split_groups)

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
RESERVED_FOLDERS = ("split_fewshot",)


class _CustomDataset(CoOpDataset):
    dataset_dir = ""

    def read_options(self, cfg) -> None:
        self.custom_dir = str(option(cfg, "DIR", custom=True))
        self.csv_file = str(option(cfg, "CSV", custom=True))
        self.csv_image_dir = str(option(cfg, "IMAGE_DIR", custom=True))
        self.classnames_path = str(option(cfg, "CLASSNAMES", custom=True))
        ratios = [float(r) for r in option(cfg, "SPLIT_RATIOS", custom=True)]
        if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
            raise ValueError(f"DATASET.CUSTOM.SPLIT_RATIOS must be three positive fractions summing to 1, "
                             f"got {ratios}")
        self.split_ratios = ratios
        self.val_fraction = float(option(cfg, "VAL_FRACTION", custom=True))
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"DATASET.CUSTOM.VAL_FRACTION must be in [0, 1), got {self.val_fraction}")

    def set_default_options(self) -> None:
        from .config import CUSTOM_KEYS
        self.custom_dir, self.csv_file, self.csv_image_dir, self.classnames_path = "", "", "", ""
        self.split_ratios = list(CUSTOM_KEYS["SPLIT_RATIOS"][0])
        self.val_fraction = CUSTOM_KEYS["VAL_FRACTION"][0]

    def _locate(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root or "."))
        base = os.path.join(self.root, os.path.expanduser(self.custom_dir)) if self.custom_dir else self.root
        self.dataset_dir = os.path.normpath(base)
        self.image_dir = self.dataset_dir

    def require_dataset_dir(self) -> None:
        if not os.path.isdir(self.dataset_dir):
            raise DatasetFileMissingError(type(self).__name__, self.dataset_dir, "dataset folder",
                                          hint="Set DATASET.ROOT and DATASET.CUSTOM.DIR (see DATASETS.md, "
                                               "'Your own data').")

    def fewshot_tag(self) -> str:
        return self._fingerprint

    def _rng(self) -> random.Random:
        return random.Random(self.split_seed)

    def _complete(self, parts: Dict[str, List[Record]], classnames: Sequence[str], origin: str) -> Splits:
        """Fill in a missing val/test split, check every class has training images, fingerprint the result."""
        name = type(self).__name__
        train, val, test = parts.get("train", []), parts.get("val", []), parts.get("test", [])
        if not train:
            raise DatasetError(f"{name}: no training images found in {origin}")
        if not val and not test:
            raise DatasetError(f"{name}: {origin} has training images but neither val nor test images")
        if not val:
            if self.val_fraction > 0:
                cache.log(f"{name}: no val split; holding out {self.val_fraction:.0%} of train per class "
                          f"(DATASET.CUSTOM.VAL_FRACTION, seed {self.split_seed})")
                train, val = hold_out_val(train, self._rng(), self.val_fraction, name)
            else:
                cache.log(f"{name}: no val split; using test as val (DATASET.CUSTOM.VAL_FRACTION 0)")
                val = list(test)
        if not test:
            cache.log(f"{name}: no test split; using val as test")
            test = list(val)
        in_train = {r.label for r in train}
        absent = [classnames[i] for i in range(len(classnames)) if i not in in_train]
        if absent:
            raise DatasetError(f"{name}: {len(absent)} classes have no training image in {origin}: "
                               f"{', '.join(absent[:10])}{' ...' if len(absent) > 10 else ''}")
        digest = hashlib.sha1()
        for part in (train, val, test):
            for r in part:
                digest.update(f"{os.path.relpath(r.impath, self.dataset_dir)}\t{r.label}\t{r.classname}\n"
                              .encode("utf-8"))
            digest.update(b"|")
        self._fingerprint = digest.hexdigest()[:8]
        cache.log(f"{name}: {len(classnames)} classes, {len(train)} train / {len(val)} val / {len(test)} test "
                  f"images from {origin}")
        return Splits(train, val, test)


@register
class ImageFolderDataset(_CustomDataset):
    """``<dir>/{train,val,test}/<class>/*`` or ``<dir>/<class>/*``; ``CUSTOM.CLASSNAMES`` may rename folders
    (lines ``<folder> <class name>``). Labels follow the sorted folder names."""

    def folder_names(self, folders: Sequence[str]) -> List[str]:
        if not self.classnames_path:
            return list(folders)
        path = os.path.join(self.dataset_dir, self.classnames_path)
        if not os.path.isfile(path):
            raise DatasetFileMissingError(type(self).__name__, path, "class-name file (DATASET.CUSTOM.CLASSNAMES)")
        renamed = {}
        for line in read_lines(path):
            folder, _, name = line.partition(" ")
            renamed[folder] = name.strip() or folder
        unknown = [f for f in folders if f not in renamed]
        if unknown:
            cache.log(f"ImageFolderDataset: {len(unknown)} folders are not in {path} and keep their folder name: "
                      f"{', '.join(unknown[:5])}")
        return [renamed.get(f, f) for f in folders]

    def read_records(self) -> Tuple[Splits, str]:
        subdirs = list_class_folders(self.dataset_dir, RESERVED_FOLDERS)
        split_dirs: "OrderedDict[str, str]" = OrderedDict()
        for folder in subdirs:
            split = SPLIT_ALIASES.get(folder.lower())
            if split and split not in split_dirs:
                split_dirs[split] = os.path.join(self.dataset_dir, folder)
        if "train" in split_dirs:
            folders = sorted({c for d in split_dirs.values() for c in list_class_folders(d)})
            names = self.folder_names(folders)
            parts = {}
            for split, split_dir in split_dirs.items():
                present = set(list_class_folders(split_dir))
                parts[split] = [Record(os.path.join(split_dir, folder, image), label, names[label])
                                for label, folder in enumerate(folders) if folder in present
                                for image in list_images(os.path.join(split_dir, folder))]
            return self._complete(parts, names, self.dataset_dir), self.dataset_dir
        if not subdirs:
            raise DatasetError(f"ImageFolderDataset: {self.dataset_dir} has no class folders (expected "
                               "<dir>/<class>/<image> or <dir>/train/<class>/<image>)")
        names = self.folder_names(subdirs)
        groups = [Group(label, names[label], [os.path.join(self.dataset_dir, folder, image) for image in
                                              list_images(os.path.join(self.dataset_dir, folder))])
                  for label, folder in enumerate(subdirs)]
        p_train, p_val, _ = self.split_ratios
        cache.log(f"ImageFolderDataset: no train/val/test folders in {self.dataset_dir}; splitting every class "
                  f"{p_train:.0%} / {p_val:.0%} / {1 - p_train - p_val:.0%} (seed {self.split_seed})")
        splits = split_groups(groups, self._rng(), p_train, p_val, "ImageFolderDataset")
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        return self._complete(parts, names, self.dataset_dir), self.dataset_dir


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


@register
class CSVDataset(_CustomDataset):
    """Rows ``path,label[,split]`` (a header row naming ``path``, ``label``, ``split`` is optional).

    ``label`` is either an integer class index (then ``CUSTOM.CLASSNAMES`` is required: one class name a line,
    line ``i`` naming class ``i``) or a class name (labels then follow the class-name file if given, else the
    sorted names). ``split`` is train / val / test; without it every class is split with ``SPLIT_RATIOS``.
    """

    def read_records(self) -> Tuple[Splits, str]:
        name = "CSVDataset"
        if not self.csv_file:
            raise DatasetError("CSVDataset: set DATASET.CUSTOM.CSV to the CSV file (see DATASETS.md)")
        csv_path = os.path.join(self.dataset_dir, os.path.expanduser(self.csv_file))
        if not os.path.isfile(csv_path):
            raise DatasetFileMissingError(name, csv_path, "CSV file (DATASET.CUSTOM.CSV)")
        image_root = (os.path.join(self.dataset_dir, os.path.expanduser(self.csv_image_dir))
                      if self.csv_image_dir else os.path.dirname(csv_path))
        with open(csv_path, "r", newline="") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1)
                    if row and any(cell.strip() for cell in row)]
        if not rows:
            raise SplitFormatError(name, csv_path, "the file has no rows")
        columns = {"path": 0, "label": 1, "split": 2 if len(rows[0][1]) >= 3 else None}
        first = [cell.strip().lower() for cell in rows[0][1]]
        has_header = "path" in first and "label" in first
        if has_header:
            columns = {"path": first.index("path"), "label": first.index("label"),
                       "split": first.index("split") if "split" in first else None}
            rows = rows[1:]

        listed = self.read_classnames_list()
        entries = []  # (row number, path, label text, split)
        for number, row in rows:
            try:
                path, label = row[columns["path"]].strip(), row[columns["label"]].strip()
                split = row[columns["split"]].strip().lower() if columns["split"] is not None else ""
            except IndexError:
                raise SplitFormatError(name, csv_path, f"row {number} has too few columns: {row!r}") from None
            if columns["split"] is not None:
                if split not in SPLIT_ALIASES:
                    raise SplitFormatError(name, csv_path, f"row {number}: split {split!r} is not train/val/test")
                split = SPLIT_ALIASES[split]
            entries.append((number, path, label, split))

        numeric = all(_is_int(e[2]) for e in entries)
        if numeric:
            if listed is None:
                raise DatasetError("CSVDataset: integer labels need a class-name file (DATASET.CUSTOM.CLASSNAMES, "
                                   "one name a line, line i naming class i)")
            classnames = listed
            labels = [int(e[2]) for e in entries]
            bad = [e for e, y in zip(entries, labels) if not 0 <= y < len(classnames)]
            if bad:
                raise SplitFormatError(name, csv_path, f"row {bad[0][0]}: label {bad[0][2]} is not in 0.."
                                       f"{len(classnames) - 1} (the class-name file has {len(classnames)} lines)")
        else:
            classnames = listed if listed is not None else sorted({e[2] for e in entries})
            index = {c: i for i, c in enumerate(classnames)}
            unknown = [e for e in entries if e[2] not in index]
            if unknown:
                raise SplitFormatError(name, csv_path, f"row {unknown[0][0]}: class {unknown[0][2]!r} is not in "
                                       "the class-name file")
            labels = [index[e[2]] for e in entries]

        records = [(e[3], Record(os.path.normpath(os.path.join(image_root, e[1])), y, classnames[y]))
                   for e, y in zip(entries, labels)]
        if columns["split"] is not None:
            parts: Dict[str, List[Record]] = {"train": [], "val": [], "test": []}
            for split, record in records:
                parts[split].append(record)
            return self._complete(parts, classnames, csv_path), csv_path
        by_label: Dict[int, List[str]] = {}
        for _, record in records:
            by_label.setdefault(record.label, []).append(record.impath)
        groups = [Group(y, classnames[y], sorted(by_label[y])) for y in sorted(by_label)]
        p_train, p_val, _ = self.split_ratios
        cache.log(f"CSVDataset: no split column in {csv_path}; splitting every class {p_train:.0%} / {p_val:.0%} / "
                  f"{1 - p_train - p_val:.0%} (seed {self.split_seed})")
        splits = split_groups(groups, self._rng(), p_train, p_val, name)
        return self._complete({"train": splits.train, "val": splits.val, "test": splits.test}, classnames,
                              csv_path), csv_path

    def read_classnames_list(self) -> Optional[List[str]]:
        if not self.classnames_path:
            return None
        path = os.path.join(self.dataset_dir, self.classnames_path)
        if not os.path.isfile(path):
            raise DatasetFileMissingError("CSVDataset", path, "class-name file (DATASET.CUSTOM.CLASSNAMES)")
        return read_lines(path)
