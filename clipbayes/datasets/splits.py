"""Train/val/test splits: CoOp's ``split_zhou_*.json`` files, and splits generated from annotation files.

A split file is a JSON object ``{"train": [...], "val": [...], "test": [...]}`` whose entries are
``[relative image path, integer label, class name]``; paths are relative to the dataset's image folder (for
StanfordCars, to the dataset folder). Readers first turn a split into :class:`Record` tuples (absolute paths),
then into Dassl ``Datum`` objects with :func:`to_datums`, which reports every missing image at once.

Generated splits follow CoOp's two recipes with the same ratios:

* :func:`split_groups` - per class, shuffle and cut into fractions (CoOp's ``read_and_split_data``: 50% train,
  20% val, 30% test, each part rounded, the test part taking the remainder);
* :func:`hold_out_val` - per class, move ``round(n * 0.2)`` of a train+val list to val (CoOp's
  ``split_trainval``).

Unlike CoOp, the shuffling uses its own ``random.Random(seed)`` over file names sorted by name, so a generated
split depends only on the files and ``DATASET.AUTO_SPLIT_SEED`` (not on the run's seed, the order in which the
file system lists a folder, or the global random state, which therefore stays untouched for few-shot sampling).
A generated split is therefore NOT the published ``split_zhou`` split: CoOp drew those with the global random
state of one run on the authors' machine, which cannot be replayed.
"""
from __future__ import annotations

import json
import os
import random
import warnings
from collections import OrderedDict
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from clipbayes.compat import import_dassl

import_dassl()
from dassl.data.datasets import Datum  # noqa: E402

SPLIT_NAMES = ("train", "val", "test")

#: The file extensions treated as images when a folder is listed (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class Record(NamedTuple):
    """One labelled image before it becomes a Dassl ``Datum``: absolute path, label, class name."""

    impath: str
    label: int
    classname: str


class Splits(NamedTuple):
    train: List[Record]
    val: List[Record]
    test: List[Record]


def _bad(dataset: str, path: str, problem: str):
    from .errors import SplitFormatError
    return SplitFormatError(dataset, path, problem)


def read_split_json(path: str, image_root: str, dataset: str = "dataset") -> Splits:
    """Read a CoOp split file; paths are joined to ``image_root``; labels become ``int``."""
    try:
        with open(path, "r") as handle:
            content = json.load(handle)
    except json.JSONDecodeError as err:
        raise _bad(dataset, path, f"not valid JSON ({err})") from None
    if not isinstance(content, dict) or any(k not in content for k in SPLIT_NAMES):
        raise _bad(dataset, path, 'expected a JSON object with the keys "train", "val" and "test"')
    parts = []
    for name in SPLIT_NAMES:
        entries = content[name]
        if not isinstance(entries, list):
            raise _bad(dataset, path, f'"{name}" is not a list')
        records = []
        for index, entry in enumerate(entries):
            if (not isinstance(entry, (list, tuple)) or len(entry) != 3 or not isinstance(entry[0], str)
                    or not isinstance(entry[2], str)):
                raise _bad(dataset, path, f'"{name}"[{index}] is {entry!r}, expected [path, label, classname]')
            try:
                label = int(entry[1])
            except (TypeError, ValueError):
                raise _bad(dataset, path, f'"{name}"[{index}] has a non-integer label {entry[1]!r}') from None
            records.append(Record(os.path.join(image_root, entry[0]), label, entry[2]))
        parts.append(records)
    return Splits(*parts)


def split_to_json(splits: Splits, image_root: str) -> Dict[str, list]:
    """The JSON object of a split file, with paths made relative to ``image_root``."""
    out = {}
    for name, records in zip(SPLIT_NAMES, splits):
        out[name] = [[os.path.relpath(r.impath, image_root).replace(os.sep, "/"), int(r.label), r.classname]
                     for r in records]
    return out


def _convert(records: Sequence[Record], missing: List[str]) -> List:
    datums = []
    with warnings.catch_warnings():
        # Datum's own existence check warns once per missing file before failing; we report them together.
        warnings.simplefilter("ignore")
        for record in records:
            try:
                datums.append(Datum(impath=record.impath, label=record.label, classname=record.classname))
            except AssertionError:
                missing.append(record.impath)
    return datums


def to_datums(*parts: Sequence[Record], dataset: str, listed_in: str):
    """Dassl ``Datum`` lists of one or more record lists (a list, or a tuple of lists for several parts).

    Raises :class:`MissingImagesError` naming every image, over all parts, that is not a file.
    """
    missing: List[str] = []
    converted = [_convert(part, missing) for part in parts]
    if missing:
        from .errors import MissingImagesError
        raise MissingImagesError(dataset, missing, sum(len(p) for p in parts), listed_in)
    return converted[0] if len(parts) == 1 else tuple(converted)


def list_images(folder: str) -> List[str]:
    """Image file names directly inside ``folder`` (hidden files skipped), sorted by name."""
    return sorted(
        entry.name for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".")
        and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS)


def list_class_folders(folder: str, ignored: Iterable[str] = ()) -> List[str]:
    """Sub-folder names of ``folder`` (hidden and ``ignored`` ones skipped), sorted like Python sorts strings."""
    skip = set(ignored)
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_dir() and not entry.name.startswith(".") and entry.name not in skip)


class Group(NamedTuple):
    """All images of one class, in the order they are shuffled from."""

    label: int
    classname: str
    impaths: List[str]


def folder_groups(image_dir: str, ignored: Iterable[str] = (),
                  rename: Optional[Dict[str, str]] = None) -> List[Group]:
    """One group per class folder: labels follow the sorted folder names; ``rename`` maps folder -> class name."""
    rename = rename or {}
    groups = []
    for label, folder in enumerate(list_class_folders(image_dir, ignored)):
        class_dir = os.path.join(image_dir, folder)
        groups.append(Group(label, rename.get(folder, folder),
                            [os.path.join(class_dir, name) for name in list_images(class_dir)]))
    return groups


def split_groups(groups: Sequence[Group], rng: random.Random, p_train: float = 0.5, p_val: float = 0.2,
                 dataset: str = "dataset") -> Splits:
    """Cut every class into train/val/test fractions after shuffling it with ``rng``.

    Sizes per class: ``round(n * p_train)`` train, ``round(n * p_val)`` val, the rest test; each must be >= 1.
    """
    train, val, test = [], [], []
    for group in groups:
        paths = list(group.impaths)
        rng.shuffle(paths)
        n_train, n_val = round(len(paths) * p_train), round(len(paths) * p_val)
        n_test = len(paths) - n_train - n_val
        if min(n_train, n_val, n_test) < 1:
            from .errors import DatasetError
            raise DatasetError(
                f"{dataset}: class {group.classname!r} has {len(paths)} images, too few to split into "
                f"{p_train:.0%} train / {p_val:.0%} val / {1 - p_train - p_val:.0%} test with at least one "
                "image in each part")
        for subset, chunk in ((train, paths[:n_train]), (val, paths[n_train:n_train + n_val]),
                              (test, paths[n_train + n_val:])):
            subset.extend(Record(p, group.label, group.classname) for p in chunk)
    return Splits(train, val, test)


def hold_out_val(trainval: Sequence[Record], rng: random.Random, p_val: float = 0.2,
                 dataset: str = "dataset") -> Tuple[List[Record], List[Record]]:
    """Move ``round(n * p_val)`` randomly chosen images of every class (n = its count) from train to val.

    Classes are visited in the order their first image appears; at least one val image per class is required.
    """
    by_label: "OrderedDict[int, List[Record]]" = OrderedDict()
    for record in trainval:
        by_label.setdefault(record.label, []).append(record)
    train, val = [], []
    for label, records in by_label.items():
        n_val = round(len(records) * p_val)
        if n_val < 1:
            from .errors import DatasetError
            raise DatasetError(f"{dataset}: class {records[0].classname!r} has {len(records)} train+val images, "
                               f"too few to hold out {p_val:.0%} for validation")
        order = list(range(len(records)))
        rng.shuffle(order)
        val.extend(records[i] for i in order[:n_val])
        train.extend(records[i] for i in order[n_val:])
    return train, val


def read_lines(path: str) -> List[str]:
    """Non-empty, stripped lines of a text file."""
    with open(path, "r") as handle:
        return [line.strip() for line in handle if line.strip()]

