"""What each benchmark dataset needs on disk and where each piece comes from.

This table feeds the readers' error messages and the checker (``python -m clipbayes.datasets.check``); DATASETS.md
describes the same layout for people. Download links are the ones CoOp's DATASETS.md gives; the ``split_zhou_*``
files (fixed train/val/test splits made by CoOp's authors) are only published on Google Drive.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

_GDRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"


@dataclass(frozen=True)
class Need:
    """One file or folder a dataset needs, relative to the dataset folder."""

    path: str
    is_dir: bool
    source: str
    for_auto_split: bool = False   # only read when a split is generated (DATASET.AUTO_SPLIT)


@dataclass(frozen=True)
class DatasetSource:
    name: str                      # Dassl registry name == CoOp class name
    folder: str                    # folder under the data root (CoOp's ``dataset_dir``)
    yaml: str                      # configs/datasets/<yaml>
    image_dir: str                 # image folder, relative to ``folder``
    needs: Tuple[Need, ...]        # everything the reader opens (split file included)
    size: str                      # approximate download size
    published: str                 # class count and split sizes reported by CoOp
    split_file: Optional[str] = None
    auto_split: bool = False       # can be split from its own annotation files (DATASET.AUTO_SPLIT)
    anchor: str = field(default="")

    def need(self, path: str) -> Optional[Need]:
        for item in self.needs:
            if item.path == path:
                return item
        return None

    def source_of(self, path: str) -> str:
        item = self.need(path)
        return item.source if item else ""


def _split(name: str, file_id: str) -> Need:
    return Need(f"split_zhou_{name}.json", False,
                f"CoOp's fixed split, {_GDRIVE.format(file_id)} (linked from CoOp's DATASETS.md)")


_IMAGENET_CLASSNAMES = _GDRIVE.format("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF")
_COPY_CLASSNAMES = f"a copy of imagenet/classnames.txt (originally {_IMAGENET_CLASSNAMES})"

SOURCES: Dict[str, DatasetSource] = {}


def _add(source: DatasetSource) -> None:
    SOURCES[source.name] = source


_add(DatasetSource(
    name="ImageNet", folder="imagenet", yaml="imagenet.yaml", image_dir="images",
    needs=(
        Need("images/train", True, "ILSVRC-2012 training images from https://image-net.org (1,000 folders n*)"),
        Need("images/val", True, "ILSVRC-2012 validation images from https://image-net.org, sorted into the "
                                 "same 1,000 n* folders"),
        Need("classnames.txt", False, f"{_IMAGENET_CLASSNAMES} (CLIP's class names, one 'n0xxxxxxx name' a line)"),
    ),
    size="~150 GB", published="1,000 classes; 1.28M train, test = the 50,000 validation images",
    anchor="imagenet"))

_add(DatasetSource(
    name="Caltech101", folder="caltech-101", yaml="caltech101.yaml", image_dir="101_ObjectCategories",
    split_file="split_zhou_Caltech101.json", auto_split=True,
    needs=(
        Need("101_ObjectCategories", True,
             "101_ObjectCategories.tar.gz from "
             "http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz "
             "(now hosted by the Caltech data repository, data.caltech.edu)"),
        _split("Caltech101", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
    ),
    size="~130 MB", published="100 classes; 4,128 / 1,649 / 2,465", anchor="caltech101"))

_add(DatasetSource(
    name="OxfordPets", folder="oxford_pets", yaml="oxford_pets.yaml", image_dir="images",
    split_file="split_zhou_OxfordPets.json", auto_split=True,
    needs=(
        Need("images", True, "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"),
        Need("annotations", True, "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz", True),
        _split("OxfordPets", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
    ),
    size="~800 MB", published="37 classes; 2,944 / 736 / 3,669", anchor="oxfordpets"))

_add(DatasetSource(
    name="StanfordCars", folder="stanford_cars", yaml="stanford_cars.yaml", image_dir="",
    split_file="split_zhou_StanfordCars.json", auto_split=True,
    needs=(
        Need("cars_train", True, "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz"),
        Need("cars_test", True, "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz"),
        Need("devkit", True, "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", True),
        Need("cars_test_annos_withlabels.mat", False,
             "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat", True),
        _split("StanfordCars", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
    ),
    size="~1.9 GB", published="196 classes; 6,509 / 1,635 / 8,041", anchor="stanfordcars"))

_add(DatasetSource(
    name="OxfordFlowers", folder="oxford_flowers", yaml="oxford_flowers.yaml", image_dir="jpg",
    split_file="split_zhou_OxfordFlowers.json", auto_split=True,
    needs=(
        Need("jpg", True, "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz"),
        Need("imagelabels.mat", False, "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", True),
        Need("cat_to_name.json", False, _GDRIVE.format("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"), True),
        _split("OxfordFlowers", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
    ),
    size="~330 MB", published="102 classes; 4,093 / 1,633 / 2,463", anchor="flowers102"))

_add(DatasetSource(
    name="Food101", folder="food-101", yaml="food101.yaml", image_dir="images",
    split_file="split_zhou_Food101.json", auto_split=True,
    needs=(
        Need("images", True, "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"),
        _split("Food101", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
    ),
    size="~5 GB", published="101 classes; 50,500 / 20,200 / 30,300", anchor="food101"))

_FGVC = ("data/ of https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz, "
         "renamed to fgvc_aircraft/")
_add(DatasetSource(
    name="FGVCAircraft", folder="fgvc_aircraft", yaml="fgvc_aircraft.yaml", image_dir="images",
    needs=(
        Need("images", True, _FGVC),
        Need("variants.txt", False, _FGVC),
        Need("images_variant_train.txt", False, _FGVC),
        Need("images_variant_val.txt", False, _FGVC),
        Need("images_variant_test.txt", False, _FGVC),
    ),
    size="~2.6 GB", published="100 classes; 3,334 / 3,333 / 3,333 (the official split)", anchor="fgvcaircraft"))

_SUN_PARTS = "Partitions.zip from https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"
_add(DatasetSource(
    name="SUN397", folder="sun397", yaml="sun397.yaml", image_dir="SUN397",
    split_file="split_zhou_SUN397.json", auto_split=True,
    needs=(
        Need("SUN397", True, "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz"),
        Need("ClassName.txt", False, _SUN_PARTS, True),
        Need("Training_01.txt", False, _SUN_PARTS, True),
        Need("Testing_01.txt", False, _SUN_PARTS, True),
        _split("SUN397", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
    ),
    size="~37 GB", published="397 classes; 15,880 / 3,970 / 19,850", anchor="sun397"))

_add(DatasetSource(
    name="DescribableTextures", folder="dtd", yaml="dtd.yaml", image_dir="images",
    split_file="split_zhou_DescribableTextures.json", auto_split=True,
    needs=(
        Need("images", True, "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"),
        _split("DescribableTextures", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
    ),
    size="~600 MB", published="47 classes; 2,820 / 1,128 / 1,692", anchor="dtd"))

_add(DatasetSource(
    name="EuroSAT", folder="eurosat", yaml="eurosat.yaml", image_dir="2750",
    split_file="split_zhou_EuroSAT.json", auto_split=True,
    needs=(
        Need("2750", True, "EuroSAT.zip (RGB version) from http://madm.dfki.de/files/sentinel/EuroSAT.zip; "
                           "if that link is dead, any copy of 'EuroSAT RGB' with the 10 class folders works"),
        _split("EuroSAT", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
    ),
    size="~90 MB", published="10 classes; 13,500 / 5,400 / 8,100", anchor="eurosat"))

_add(DatasetSource(
    name="UCF101", folder="ucf101", yaml="ucf101.yaml", image_dir="UCF-101-midframes",
    split_file="split_zhou_UCF101.json", auto_split=True,
    needs=(
        Need("UCF-101-midframes", True, "UCF-101-midframes.zip (middle frame of every video) from "
             + _GDRIVE.format("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O")),
        Need("ucfTrainTestlist", True, "UCF101TrainTestSplits-RecognitionTask.zip from "
                                       "https://www.crcv.ucf.edu/data/UCF101.php", True),
        _split("UCF101", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
    ),
    size="~0.3 GB (13,320 frames)", published="101 classes; 7,639 / 1,898 / 3,783", anchor="ucf101"))

_add(DatasetSource(
    name="ImageNetV2", folder="imagenetv2", yaml="imagenetv2.yaml",
    image_dir="imagenetv2-matched-frequency-format-val",
    needs=(
        Need("imagenetv2-matched-frequency-format-val", True,
             "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz "
             "(folders 0..999, see https://github.com/modestyachts/ImageNetV2)"),
        Need("classnames.txt", False, _COPY_CLASSNAMES),
    ),
    size="~1.2 GB", published="1,000 classes; 10,000 test images", anchor="imagenetv2"))

_add(DatasetSource(
    name="ImageNetSketch", folder="imagenet-sketch", yaml="imagenet_sketch.yaml", image_dir="images",
    needs=(
        Need("images", True, "https://github.com/HaohanWang/ImageNet-Sketch (1,000 folders n*)"),
        Need("classnames.txt", False, _COPY_CLASSNAMES),
    ),
    size="~8.5 GB", published="1,000 classes; 50,889 test images", anchor="imagenet-sketch"))

_add(DatasetSource(
    name="ImageNetA", folder="imagenet-adversarial", yaml="imagenet_a.yaml", image_dir="imagenet-a",
    needs=(
        Need("imagenet-a", True, "https://github.com/hendrycks/natural-adv-examples (200 folders n*)"),
        Need("classnames.txt", False, _COPY_CLASSNAMES),
    ),
    size="~0.7 GB", published="200 classes; 7,500 test images", anchor="imagenet-a"))

_add(DatasetSource(
    name="ImageNetR", folder="imagenet-rendition", yaml="imagenet_r.yaml", image_dir="imagenet-r",
    needs=(
        Need("imagenet-r", True, "https://github.com/hendrycks/imagenet-r (200 folders n*)"),
        Need("classnames.txt", False, _COPY_CLASSNAMES),
    ),
    size="~2.1 GB", published="200 classes; 30,000 test images", anchor="imagenet-r"))

BENCHMARKS: Tuple[str, ...] = tuple(SOURCES)


def lookup(name: str) -> DatasetSource:
    """Find a dataset by registry name, yaml name (``dtd`` / ``dtd.yaml``) or folder name, case-insensitively."""
    key = name.strip().lower()
    if key.endswith(".yaml"):
        key = key[: -len(".yaml")]
    for source in SOURCES.values():
        if key in (source.name.lower(), source.yaml[: -len(".yaml")], source.folder.lower()):
            return source
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
