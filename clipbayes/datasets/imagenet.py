"""ImageNet and the four test-only ImageNet variants of CoOp's domain-generalisation benchmark.

ImageNet has no split file: train is ``images/train``, test (and val) ``images/val``; labels follow the sorted
``n*`` folder names and class names come from ``classnames.txt`` (CLIP's names, one ``n01440764 tench`` a line).
Inside a class folder the images keep the order the file system lists them in, as in CoOp; the few-shot sample
drawn from that order is what the few-shot cache pins down. Like CoOp, the full listing is cached in
``imagenet/preprocessed.pkl`` (``{"train": [...], "test": [...]}``), which is read instead of listing 1.28M files
when it is present and points into this data root.

ImageNet-A and ImageNet-R hold 200 of the 1,000 classes: as in CoOp their labels are 0..199 in sorted folder
order, named with ImageNet's class names; ``imagenet_labels[i]`` gives the ImageNet label of class ``i``.
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import List, Optional, Tuple

from . import cache
from .base import CoOpDataset, register
from .errors import DatasetFileMissingError, SplitFormatError
from .splits import Record, Splits, list_class_folders, to_datums


def read_classnames(path: str) -> "OrderedDict[str, str]":
    """``classnames.txt`` as an ordered mapping folder (wnid) -> class name."""
    names: "OrderedDict[str, str]" = OrderedDict()
    with open(path, "r") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            folder, _, name = line.partition(" ")
            names[folder] = name
    return names


def listed_images(folder: str) -> List[str]:
    """Non-hidden entries of ``folder`` in the file system's order (what CoOp's readers iterate over)."""
    return [name for name in os.listdir(folder) if not name.startswith(".")]


class _ImageNetFamily(CoOpDataset):
    split_name = None

    def classnames_file(self) -> "OrderedDict[str, str]":
        return read_classnames(self.require("classnames.txt"))

    def name_of(self, names, folder: str, where: str) -> str:
        if folder not in names:
            raise SplitFormatError(type(self).__name__, os.path.join(self.dataset_dir, "classnames.txt"),
                                   f"no class name for the folder {folder!r} of {where}")
        return names[folder]

    def folder_records(self, split_dir: str, folders: List[str], names) -> List[Record]:
        records = []
        for label, folder in enumerate(folders):
            class_dir = os.path.join(split_dir, folder)
            classname = self.name_of(names, folder, split_dir)
            records.extend(Record(os.path.join(class_dir, image), label, classname)
                           for image in listed_images(class_dir))
        return records


@register
class ImageNet(_ImageNetFamily):
    dataset_dir = "imagenet"
    image_subdir = "images"
    val_is_test = True

    def read_records(self) -> Tuple[Splits, str]:
        names = self.classnames_file()
        parts = {}
        for split in ("train", "val"):
            split_dir = self.require(f"images/{split}")
            parts[split] = self.folder_records(split_dir, list_class_folders(split_dir), names)
        return Splits(parts["train"], [], parts["val"]), "images/{train,val}"

    # -- CoOp's listing cache ---------------------------------------------------------------------------------
    def _listing_paths(self) -> List[str]:
        return cache.candidate_paths("preprocessed.pkl", self.dataset_dir, self.dataset_dir, "preprocessed")

    def _valid_listing(self, path: str) -> Optional[Tuple[List, List]]:
        try:
            with open(path, "rb") as handle:
                data = pickle.load(handle)
        except Exception as err:
            cache.log(f"WARNING: ignoring unreadable {path}: {err!r}")
            return None
        try:
            train, test = data["train"], data["test"]
            ends = [train[0], train[-1], test[0], test[-1]]
            inside = all(d.impath.startswith(self.image_dir + os.sep) and os.path.isfile(d.impath) for d in ends)
        except Exception:
            inside = False
        if not inside:
            cache.log(f"WARNING: ignoring {path}: it does not list the images under {self.image_dir}")
            return None
        return train, test

    def load_datums(self):
        for path in self._listing_paths():
            if os.path.isfile(path):
                listing = self._valid_listing(path)
                if listing is not None:
                    cache.log(f"Loading the ImageNet listing from {path} (delete it to list the folders again)")
                    train, test = listing
                    return train, test, test
        splits, origin = self.read_records()
        train, test = to_datums(splits.train, splits.test, dataset="ImageNet", listed_in=origin)
        content = {"train": train, "test": test}
        cache.write_first_possible(self._listing_paths(), lambda p: cache.atomic_write_pickle(content, p),
                                   "ImageNet listing")
        return train, test, test


@register
class ImageNetV2(_ImageNetFamily):
    """ImageNetV2 (matched frequency), test only: folder ``<i>`` holds class ``i`` of classnames.txt."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    test_only = True

    def read_records(self) -> Tuple[Splits, str]:
        names = self.classnames_file()
        image_dir = self.require(self.image_subdir)
        records = []
        for label, folder in enumerate(names):
            class_dir = os.path.join(image_dir, str(label))
            if not os.path.isdir(class_dir):
                raise DatasetFileMissingError("ImageNetV2", class_dir, f"folder of class {label} ({names[folder]})",
                                              self.source_of(self.image_subdir))
            records.extend(Record(os.path.join(class_dir, image), label, names[folder])
                           for image in listed_images(class_dir))
        return Splits([], [], records), self.image_subdir


class _SortedFoldersVariant(_ImageNetFamily):
    """Test-only variants stored as ``<image folder>/<wnid>/<image>``: labels follow the sorted folder names."""

    test_only = True

    def read_records(self) -> Tuple[Splits, str]:
        names = self.classnames_file()
        image_dir = self.require(self.image_subdir)
        folders = list_class_folders(image_dir)
        imagenet_order = sorted(names)
        position = {wnid: i for i, wnid in enumerate(imagenet_order)}
        self.imagenet_labels = [position.get(f, -1) for f in folders]
        return Splits([], [], self.folder_records(image_dir, folders, names)), self.image_subdir


@register
class ImageNetSketch(_SortedFoldersVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"


@register
class ImageNetA(_SortedFoldersVariant):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"


@register
class ImageNetR(_SortedFoldersVariant):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
