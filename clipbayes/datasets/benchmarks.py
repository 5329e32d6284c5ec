"""Readers of the ten fine-grained / generic benchmarks of CoOp (ImageNet and its variants: imagenet.py).

All but FGVCAircraft read CoOp's ``split_zhou_<Name>.json``; with ``DATASET.AUTO_SPLIT True`` a missing split
file is replaced by one generated from the dataset's own annotation files (see :mod:`.splits` for why it differs
from the published one). Class names and label order are those of the split file; the generators reproduce
CoOp's naming rules so that a generated split uses the same names and labels.
"""
from __future__ import annotations

import json
import os
import random
import re
from typing import Dict, List, Tuple

from .base import CoOpDataset, register
from .errors import SplitFormatError
from .splits import (Group, Record, Splits, folder_groups, hold_out_val, read_lines, split_groups)


def _loadmat(path: str, dataset: str):
    try:
        from scipy.io import loadmat
    except ImportError:  # scipy is a Dassl dependency, but say so plainly if it is absent
        raise ImportError(f"{dataset}: reading {os.path.basename(path)} needs scipy (pip install scipy)") from None
    return loadmat(path)


def _first(value):
    """The scalar inside the nested arrays scipy.io.loadmat returns for MATLAB cells and structs."""
    while hasattr(value, "shape") and getattr(value, "size", 0) >= 1 and getattr(value, "ndim", 0) > 0:
        value = value.flat[0]
    return value.item() if hasattr(value, "item") else value


@register
class OxfordPets(CoOpDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_name = "split_zhou_OxfordPets.json"

    def read_annotation_list(self, filename: str) -> List[Record]:
        """``annotations/<filename>`` rows ``<image> <class id> <species> <breed id>``; the class name is the image
        name without its trailing number, lower-cased (``Abyssinian_100`` -> ``abyssinian``)."""
        path = self.require(f"annotations/{filename}")
        records = []
        for line in read_lines(path):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2:
                raise SplitFormatError("OxfordPets", path, f"unexpected line {line!r}")
            image, class_id = fields[0], int(fields[1])
            breed = "_".join(image.split("_")[:-1]).lower()
            records.append(Record(os.path.join(self.image_dir, image + ".jpg"), class_id - 1, breed))
        return records

    def generate_split(self, rng: random.Random) -> Splits:
        train, val = hold_out_val(self.read_annotation_list("trainval.txt"), rng, 0.2, "OxfordPets")
        return Splits(train, val, self.read_annotation_list("test.txt"))


@register
class StanfordCars(CoOpDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""  # split paths are relative to the dataset folder: cars_train/00001.jpg
    split_name = "split_zhou_StanfordCars.json"

    def read_mat(self, image_folder: str, anno_relpath: str) -> List[Record]:
        """Annotations of ``image_folder`` from a Stanford Cars ``.mat`` file; the model year moves to the front
        of the class name (``AM General Hummer SUV 2000`` -> ``2000 AM General Hummer SUV``)."""
        meta = _loadmat(self.require("devkit/cars_meta.mat"), "StanfordCars")["class_names"][0]
        names = []
        for entry in meta:
            words = str(_first(entry)).split(" ")
            names.append(" ".join([words[-1]] + words[:-1]))
        records = []
        for entry in _loadmat(self.require(anno_relpath), "StanfordCars")["annotations"][0]:
            label = int(_first(entry["class"])) - 1
            fname = str(_first(entry["fname"]))
            records.append(Record(os.path.join(self.dataset_dir, image_folder, fname), label, names[label]))
        return records

    def generate_split(self, rng: random.Random) -> Splits:
        trainval = self.read_mat("cars_train", "devkit/cars_train_annos.mat")
        train, val = hold_out_val(trainval, rng, 0.2, "StanfordCars")
        return Splits(train, val, self.read_mat("cars_test", "cars_test_annos_withlabels.mat"))


@register
class OxfordFlowers(CoOpDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_name = "split_zhou_OxfordFlowers.json"

    def generate_split(self, rng: random.Random) -> Splits:
        """``imagelabels.mat`` gives the 1-based class of ``image_00001.jpg``, ...; ``cat_to_name.json`` its
        name. Classes are visited in the order of their first image; 50% / 20% / 30% per class."""
        labels = _loadmat(self.require("imagelabels.mat"), "OxfordFlowers")["labels"].ravel()
        with open(self.require("cat_to_name.json"), "r") as handle:
            names: Dict[str, str] = json.load(handle)
        by_class: Dict[int, List[str]] = {}
        for index, label in enumerate(labels):
            path = os.path.join(self.image_dir, f"image_{index + 1:05d}.jpg")
            by_class.setdefault(int(label), []).append(path)
        groups = [Group(label - 1, names[str(label)], paths) for label, paths in by_class.items()]
        return split_groups(groups, rng, 0.5, 0.2, "OxfordFlowers")


class _FolderSplitDataset(CoOpDataset):
    """Datasets whose split is generated from ``<image folder>/<class>/<image>`` (50% / 20% / 30%)."""

    ignored_folders: Tuple[str, ...] = ()
    renamed: Dict[str, str] = {}

    def generate_split(self, rng: random.Random) -> Splits:
        groups = folder_groups(self.require(self.image_subdir), self.ignored_folders, self.renamed)
        return split_groups(groups, rng, 0.5, 0.2, type(self).__name__)


@register
class Food101(_FolderSplitDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_name = "split_zhou_Food101.json"


@register
class DescribableTextures(_FolderSplitDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_name = "split_zhou_DescribableTextures.json"


@register
class Caltech101(_FolderSplitDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_name = "split_zhou_Caltech101.json"
    ignored_folders = ("BACKGROUND_Google", "Faces_easy")
    renamed = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@register
class EuroSAT(_FolderSplitDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_name = "split_zhou_EuroSAT.json"
    renamed = {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    }


@register
class SUN397(CoOpDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_name = "split_zhou_SUN397.json"

    @staticmethod
    def readable_name(category: str) -> str:
        """``a/apartment_building/outdoor`` -> ``outdoor apartment_building`` (letter dropped, order reversed)."""
        return " ".join(reversed(category.split("/")[1:]))

    def read_partition(self, filename: str, label_of: Dict[str, int]) -> List[Record]:
        path = self.require(filename)
        records = []
        for line in read_lines(path):
            relpath = line.lstrip("/")
            category = os.path.dirname(relpath)
            if category not in label_of:
                raise SplitFormatError("SUN397", path, f"category {category!r} is not in ClassName.txt")
            records.append(Record(os.path.join(self.image_dir, relpath), label_of[category],
                                  self.readable_name(category)))
        return records

    def generate_split(self, rng: random.Random) -> Splits:
        """Labels follow ``ClassName.txt``; train+val from ``Training_01.txt`` (20% held out as val), test from
        ``Testing_01.txt`` (partition 1 of the official ten)."""
        categories = [line.lstrip("/") for line in read_lines(self.require("ClassName.txt"))]
        label_of = {c: i for i, c in enumerate(categories)}
        train, val = hold_out_val(self.read_partition("Training_01.txt", label_of), rng, 0.2, "SUN397")
        return Splits(train, val, self.read_partition("Testing_01.txt", label_of))


@register
class UCF101(CoOpDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_name = "split_zhou_UCF101.json"

    @staticmethod
    def readable_name(action: str) -> str:
        """``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``: the folder name of the action in UCF-101-midframes."""
        return "_".join(re.findall(r"[A-Z][^A-Z]*", action))

    def read_list(self, filename: str, label_of: Dict[str, int]) -> List[Record]:
        """``ucfTrainTestlist/<filename>`` rows ``Action/v_Action_gXX_cYY.avi [label]``; the frame is the .jpg of
        the same name in the renamed action folder."""
        path = self.require(f"ucfTrainTestlist/{filename}")
        records = []
        for line in read_lines(path):
            action, video = line.split(" ")[0].split("/")
            if action not in label_of:
                raise SplitFormatError("UCF101", path, f"action {action!r} is not in classInd.txt")
            folder = self.readable_name(action)
            frame = os.path.splitext(video)[0] + ".jpg"
            records.append(Record(os.path.join(self.image_dir, folder, frame), label_of[action], folder))
        return records

    def generate_split(self, rng: random.Random) -> Splits:
        """Labels from ``classInd.txt`` (1-based); train+val from trainlist01 (20% held out), test testlist01."""
        label_of = {}
        for line in read_lines(self.require("ucfTrainTestlist/classInd.txt")):
            number, action = line.split(" ")
            label_of[action] = int(number) - 1
        train, val = hold_out_val(self.read_list("trainlist01.txt", label_of), rng, 0.2, "UCF101")
        return Splits(train, val, self.read_list("testlist01.txt", label_of))


@register
class FGVCAircraft(CoOpDataset):
    """The official split of FGVC-Aircraft 2013b at the *variant* level; there is no split_zhou file."""

    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_name = None

    def read_records(self) -> Tuple[Splits, str]:
        variants = read_lines(self.require("variants.txt"))
        label_of = {name: i for i, name in enumerate(variants)}
        parts = []
        for split in ("train", "val", "test"):
            path = self.require(f"images_variant_{split}.txt")
            records = []
            for line in read_lines(path):
                image, _, variant = line.partition(" ")
                if variant not in label_of:
                    raise SplitFormatError("FGVCAircraft", path, f"variant {variant!r} is not in variants.txt")
                records.append(Record(os.path.join(self.image_dir, image + ".jpg"), label_of[variant], variant))
            parts.append(records)
        return Splits(*parts), "images_variant_{train,val,test}.txt"
