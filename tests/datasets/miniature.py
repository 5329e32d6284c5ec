"""Miniature on-disk copies of CoOp's benchmark datasets, for tests.

``build_miniature(root, name)`` writes, under ``root``, the folder of one dataset with its real layout, real file
and folder names and real annotation formats (split_zhou JSON, Oxford-Pets lists, Stanford-Cars and Flowers
``.mat`` files, SUN397 partitions, UCF101 train/test lists, FGVC variant lists, ImageNet ``classnames.txt``),
holding a few real classes with a handful of 8x8 images each. It returns a :class:`MiniatureInfo` that states,
independently of the readers, what a correct reader must produce: class names in label order and the exact
(image, label, class name) entries of every split.

Usable from any test::

    from tests.datasets.miniature import build_miniature, MINIATURES
    info = build_miniature(tmp_path, "OxfordPets")
    # train.py --root tmp_path --dataset-config-file info.yaml_path ...

Nothing here imports clipbayes: the expected values are written out by hand from the datasets' documentation.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

Entry = Tuple[str, int, str]  # absolute image path, label, class name


@dataclass
class MiniatureInfo:
    name: str                            # Dassl registry name
    folder: str                          # dataset folder under the root
    root: str                            # the data root (DATASET.ROOT)
    yaml: str                            # configs/datasets/<yaml>
    classnames: List[str]                # class names in label order
    splits: Dict[str, List[Entry]]       # "train" / "val" / "test" -> expected entries (split-file order)
    split_file: Optional[str] = None     # split_zhou_<Name>.json, when the dataset has one
    test_only: bool = False
    all_images: List[str] = field(default_factory=list)   # every image written for the dataset
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def dataset_dir(self) -> str:
        return os.path.join(self.root, self.folder)

    @property
    def yaml_path(self) -> str:
        return os.path.join(REPO_ROOT, "configs", "datasets", self.yaml)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def sizes(self) -> Dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


# ------------------------------------------------------------------------------------------------ images
def write_image(path: str, color: Tuple[int, int, int], fmt: str = "JPEG") -> None:
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, fmt)


def corrupt_image(path: str) -> None:
    """Overwrite an image with bytes no image decoder accepts."""
    with open(path, "wb") as handle:
        handle.write(b"this is not an image")


def _color(label: int, index: int) -> Tuple[int, int, int]:
    return ((37 * label + 11) % 256, (53 * index + 101) % 256, (17 * label + 29 * index) % 256)


class _Writer:
    """Collects expected entries while writing images."""

    def __init__(self, root: str, folder: str):
        self.root = root
        self.dir = os.path.join(root, folder)
        self.images: List[str] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def image(self, relpath: str, label: int, index: int) -> str:
        path = self.path(*relpath.split("/"))
        write_image(path, _color(label, index))
        self.images.append(path)
        return path

    def text(self, relpath: str, lines: Sequence[str]) -> None:
        path = self.path(*relpath.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("".join(line + "\n" for line in lines))

    def json(self, relpath: str, obj) -> None:
        path = self.path(*relpath.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            json.dump(obj, handle, indent=4)


def _cut(items: Sequence, sizes: Sequence[int]) -> List[List]:
    out, start = [], 0
    for size in sizes:
        out.append(list(items[start:start + size]))
        start += size
    return out


def _write_split_json(w: _Writer, filename: str, splits: Dict[str, List[Entry]], rel_to: str,
                      seed: int) -> None:
    """Write a split_zhou file; entries of each split are shuffled so classes are interleaved (as in CoOp's)."""
    rng = random.Random(seed)
    content = {}
    for name in ("train", "val", "test"):
        entries = list(splits[name])
        rng.shuffle(entries)
        splits[name] = entries
        content[name] = [[os.path.relpath(p, rel_to).replace(os.sep, "/"), y, c] for p, y, c in entries]
    w.json(filename, content)


# ------------------------------------------------------------------------------- split_zhou datasets
# Per class: 4 train, 2 val, 2 test images in the split file.
SPLIT_SIZES = (4, 2, 2)


def _folder_dataset(root, name, folder, image_subdir, split_file, classes, image_name, with_split, seed,
                    extra_dirs=()):
    """Datasets stored as <image dir>/<class folder>/<image>: Caltech101, Food101, DTD, EuroSAT.

    ``classes``: (folder name, class name) in label order (= sorted folder order); ``extra_dirs``: folders the
    reader must ignore (written with images too).
    """
    w = _Writer(root, folder)
    image_dir = w.path(image_subdir)
    splits = {"train": [], "val": [], "test": []}
    for label, (cfolder, cname) in enumerate(classes):
        paths = [w.image(f"{image_subdir}/{cfolder}/{image_name(cfolder, i)}", label, i)
                 for i in range(sum(SPLIT_SIZES))]
        for part, chunk in zip(("train", "val", "test"), _cut(paths, SPLIT_SIZES)):
            splits[part].extend((p, label, cname) for p in chunk)
    for index, cfolder in enumerate(extra_dirs):
        for i in range(3):
            w.image(f"{image_subdir}/{cfolder}/{image_name(cfolder, i)}", 90 + index, i)
    if with_split:
        _write_split_json(w, split_file, splits, image_dir, seed)
    return w, splits


def _caltech(root, with_split, seed):
    classes = [("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike"), ("accordion", "accordion"),
               ("airplanes", "airplane"), ("anchor", "anchor"), ("ant", "ant")]
    w, splits = _folder_dataset(root, "Caltech101", "caltech-101", "101_ObjectCategories",
                                "split_zhou_Caltech101.json", classes, lambda c, i: f"image_{i + 1:04d}.jpg",
                                with_split, seed, extra_dirs=("BACKGROUND_Google", "Faces_easy"))
    return w, splits, [c for _, c in classes], "caltech101.yaml", {}


def _food(root, with_split, seed):
    classes = [(c, c) for c in ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare")]
    w, splits = _folder_dataset(root, "Food101", "food-101", "images", "split_zhou_Food101.json", classes,
                                lambda c, i: f"{1005649 + 7919 * i + 131 * len(c)}.jpg", with_split, seed)
    names = [c for c, _ in classes]
    w.text("meta/classes.txt", names)
    w.text("meta/labels.txt", [c.replace("_", " ").capitalize() for c in names])
    w.text("meta/train.txt", [os.path.relpath(p, w.path("images"))[:-4] for p, _, _ in
                              splits["train"] + splits["val"]])
    w.text("meta/test.txt", [os.path.relpath(p, w.path("images"))[:-4] for p, _, _ in splits["test"]])
    w.text("README.txt", ["Food-101 (miniature)"])
    w.text("license_agreement.txt", ["see the original dataset"])
    return w, splits, names, "food101.yaml", {}


def _dtd(root, with_split, seed):
    classes = [(c, c) for c in ("banded", "blotchy", "braided", "bubbly", "bumpy")]
    w, splits = _folder_dataset(root, "DescribableTextures", "dtd", "images",
                                "split_zhou_DescribableTextures.json", classes,
                                lambda c, i: f"{c}_{i + 1:04d}.jpg", with_split, seed)
    rel = lambda entries: [os.path.relpath(p, w.path("images")) for p, _, _ in entries]  # noqa: E731
    w.text("labels/train1.txt", rel(splits["train"]))
    w.text("labels/val1.txt", rel(splits["val"]))
    w.text("labels/test1.txt", rel(splits["test"]))
    return w, splits, [c for c, _ in classes], "dtd.yaml", {}


def _eurosat(root, with_split, seed):
    classes = [("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"),
               ("HerbaceousVegetation", "Herbaceous Vegetation Land"), ("Highway", "Highway or Road"),
               ("Industrial", "Industrial Buildings"), ("Pasture", "Pasture Land"),
               ("PermanentCrop", "Permanent Crop Land"), ("Residential", "Residential Buildings"),
               ("River", "River"), ("SeaLake", "Sea or Lake")]
    w, splits = _folder_dataset(root, "EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json", classes,
                                lambda c, i: f"{c}_{i + 1}.jpg", with_split, seed)
    return w, splits, [c for _, c in classes], "eurosat.yaml", {}


def _pets(root, with_split, seed):
    # (image prefix, class id, species 1=cat 2=dog, breed id within the species, class name)
    breeds = [("Abyssinian", 1, 1, 1, "abyssinian"), ("american_bulldog", 2, 2, 1, "american_bulldog"),
              ("american_pit_bull_terrier", 3, 2, 2, "american_pit_bull_terrier"),
              ("basset_hound", 4, 2, 3, "basset_hound"), ("beagle", 5, 2, 4, "beagle")]
    w = _Writer(root, "oxford_pets")
    splits = {"train": [], "val": [], "test": []}
    trainval_lines, test_lines = [], []
    for prefix, cid, species, bid, cname in breeds:
        label = cid - 1
        stems = [f"{prefix}_{100 + 7 * i}" for i in range(sum(SPLIT_SIZES))]
        paths = [w.image(f"images/{s}.jpg", label, i) for i, s in enumerate(stems)]
        parts = _cut(list(zip(stems, paths)), SPLIT_SIZES)
        for part, chunk in zip(("train", "val", "test"), parts):
            splits[part].extend((p, label, cname) for _, p in chunk)
        trainval_lines += [f"{s} {cid} {species} {bid}" for s, _ in parts[0] + parts[1]]
        test_lines += [f"{s} {cid} {species} {bid}" for s, _ in parts[2]]
    w.text("annotations/trainval.txt", trainval_lines)
    w.text("annotations/test.txt", test_lines)
    w.text("annotations/list.txt", ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids",
                                    "#SPECIES: 1:Cat 2:Dog", "#BREED ID: 1-25:Cat 1:12:Dog"]
           + trainval_lines + test_lines)
    if with_split:
        _write_split_json(w, "split_zhou_OxfordPets.json", splits, w.path("images"), seed)
    return w, splits, [b[4] for b in breeds], "oxford_pets.yaml", {}


def _cars(root, with_split, seed):
    import numpy as np
    from scipy.io import savemat
    meta_names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012",
                  "Acura TL Type-S 2008", "Acura TSX Sedan 2012"]
    names = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan", "2008 Acura TL Type-S",
             "2012 Acura TSX Sedan"]
    w = _Writer(root, "stanford_cars")
    splits = {"train": [], "val": [], "test": []}
    annos = {"cars_train": [], "cars_test": []}
    counters = {"cars_train": 0, "cars_test": 0}
    n_trainval = SPLIT_SIZES[0] + SPLIT_SIZES[1]
    for label, name in enumerate(names):
        for i in range(sum(SPLIT_SIZES)):
            folder = "cars_train" if i < n_trainval else "cars_test"
            counters[folder] += 1
            fname = f"{counters[folder]:05d}.jpg"
            path = w.image(f"{folder}/{fname}", label, i)
            part = "train" if i < SPLIT_SIZES[0] else ("val" if i < n_trainval else "test")
            splits[part].append((path, label, name))
            annos[folder].append((fname, label + 1))

    def struct(rows, with_class=True):
        dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"),
                 ("fname", "O")]
        arr = np.zeros((1, len(rows)), dtype=dtype)
        for j, (fname, cls) in enumerate(rows):
            arr[0, j] = (np.array([[1]], dtype=np.uint8), np.array([[1]], dtype=np.uint8),
                         np.array([[7]], dtype=np.uint8), np.array([[7]], dtype=np.uint8),
                         np.array([[cls]], dtype=np.uint8), np.array([fname]))
        return arr

    meta = np.zeros((1, len(meta_names)), dtype=object)
    for j, n in enumerate(meta_names):
        meta[0, j] = np.array([n])
    os.makedirs(w.path("devkit"), exist_ok=True)
    savemat(w.path("devkit", "cars_meta.mat"), {"class_names": meta})
    savemat(w.path("devkit", "cars_train_annos.mat"), {"annotations": struct(annos["cars_train"])})
    savemat(w.path("cars_test_annos_withlabels.mat"), {"annotations": struct(annos["cars_test"])})
    if with_split:
        _write_split_json(w, "split_zhou_StanfordCars.json", splits, w.dir, seed)
    return w, splits, names, "stanford_cars.yaml", {}


def _flowers(root, with_split, seed):
    import numpy as np
    from scipy.io import savemat
    cat_to_name = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells",
                   "4": "sweet pea", "5": "english marigold"}
    w = _Writer(root, "oxford_flowers")
    # imagelabels.mat lists classes out of order, like the real file (class 3 first, ...)
    order = [3, 1, 5, 2, 4]
    per_class = sum(SPLIT_SIZES)
    labels = [order[i % len(order)] for i in range(per_class * len(order))]
    splits = {"train": [], "val": [], "test": []}
    seen: Dict[int, int] = {}
    for index, one_based in enumerate(labels):
        k = seen.get(one_based, 0)
        seen[one_based] = k + 1
        path = w.image(f"jpg/image_{index + 1:05d}.jpg", one_based - 1, k)
        part = "train" if k < SPLIT_SIZES[0] else ("val" if k < SPLIT_SIZES[0] + SPLIT_SIZES[1] else "test")
        splits[part].append((path, one_based - 1, cat_to_name[str(one_based)]))
    savemat(w.path("imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    w.json("cat_to_name.json", cat_to_name)
    if with_split:
        _write_split_json(w, "split_zhou_OxfordFlowers.json", splits, w.path("jpg"), seed)
    return w, splits, [cat_to_name[str(i)] for i in range(1, 6)], "oxford_flowers.yaml", {}


def _sun(root, with_split, seed):
    classes = [("/a/abbey", "abbey"), ("/a/airplane_cabin", "airplane_cabin"),
               ("/a/apartment_building/outdoor", "outdoor apartment_building"), ("/b/badlands", "badlands"),
               ("/b/bakery/shop", "shop bakery")]
    w = _Writer(root, "sun397")
    rng = random.Random(397)
    splits = {"train": [], "val": [], "test": []}
    training, testing = [], []
    for label, (category, cname) in enumerate(classes):
        names = ["sun_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(16)) + ".jpg"
                 for _ in range(sum(SPLIT_SIZES))]
        rels = [f"{category}/{n}" for n in names]
        paths = [w.image("SUN397" + r, label, i) for i, r in enumerate(rels)]
        parts = _cut(list(zip(rels, paths)), SPLIT_SIZES)
        for part, chunk in zip(("train", "val", "test"), parts):
            splits[part].extend((p, label, cname) for _, p in chunk)
        training += [r for r, _ in parts[0] + parts[1]]
        testing += [r for r, _ in parts[2]]
    w.text("ClassName.txt", [c for c, _ in classes])
    w.text("Training_01.txt", training)
    w.text("Testing_01.txt", testing)
    if with_split:
        _write_split_json(w, "split_zhou_SUN397.json", splits, w.path("SUN397"), seed)
    return w, splits, [c for _, c in classes], "sun397.yaml", {}


def _ucf(root, with_split, seed):
    actions = [("ApplyEyeMakeup", "Apply_Eye_Makeup"), ("ApplyLipstick", "Apply_Lipstick"),
               ("Archery", "Archery"), ("BabyCrawling", "Baby_Crawling"), ("BalanceBeam", "Balance_Beam")]
    w = _Writer(root, "ucf101")
    splits = {"train": [], "val": [], "test": []}
    trainlist, testlist = [], []
    n_trainval = SPLIT_SIZES[0] + SPLIT_SIZES[1]
    for label, (action, folder) in enumerate(actions):
        for i in range(sum(SPLIT_SIZES)):
            # testlist01 holds groups 1-7, trainlist01 groups 8-25
            group = 8 + i if i < n_trainval else 1 + (i - n_trainval)
            video = f"v_{action}_g{group:02d}_c01"
            path = w.image(f"UCF-101-midframes/{folder}/{video}.jpg", label, i)
            part = "train" if i < SPLIT_SIZES[0] else ("val" if i < n_trainval else "test")
            splits[part].append((path, label, folder))
            if i < n_trainval:
                trainlist.append(f"{action}/{video}.avi {label + 1}")
            else:
                testlist.append(f"{action}/{video}.avi")
    w.text("ucfTrainTestlist/classInd.txt", [f"{i + 1} {a}" for i, (a, _) in enumerate(actions)])
    w.text("ucfTrainTestlist/trainlist01.txt", trainlist)
    w.text("ucfTrainTestlist/testlist01.txt", testlist)
    if with_split:
        _write_split_json(w, "split_zhou_UCF101.json", splits, w.path("UCF-101-midframes"), seed)
    return w, splits, [f for _, f in actions], "ucf101.yaml", {}


def _fgvc(root, with_split, seed):
    variants = ["707-320", "727-200", "737-200", "A300B4", "Cessna 172"]
    families = ["Boeing 707", "Boeing 727", "Boeing 737", "A300", "Cessna 172"]
    w = _Writer(root, "fgvc_aircraft")
    splits = {"train": [], "val": [], "test": []}
    lines = {"train": [], "val": [], "test": []}
    number = 34309
    # FGVC's official split has about a third of the images in each part; here 3 / 3 / 2 per class
    for label, variant in enumerate(variants):
        for i in range(8):
            number += 1013
            image_id = f"{number:07d}"
            path = w.image(f"images/{image_id}.jpg", label, i)
            part = "train" if i < 3 else ("val" if i < 6 else "test")
            splits[part].append((path, label, variant))
            lines[part].append(f"{image_id} {variant}")
    w.text("variants.txt", variants)
    w.text("families.txt", families)
    w.text("manufacturers.txt", ["Boeing", "Airbus", "Cessna"])
    for part in ("train", "val", "test"):
        w.text(f"images_variant_{part}.txt", lines[part])
    return w, splits, variants, "fgvc_aircraft.yaml", {}


# ----------------------------------------------------------------------------------------- ImageNet family
IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
                    ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark"), ("n01496331", "electric ray"),
                    ("n01498041", "stingray"), ("n01514668", "rooster"), ("n01514859", "hen"),
                    ("n01518878", "ostrich")]


def _classnames_lines():
    return [f"{wnid} {name}" for wnid, name in IMAGENET_CLASSES]


def _imagenet(root, with_split, seed):
    w = _Writer(root, "imagenet")
    w.text("classnames.txt", _classnames_lines())
    splits = {"train": [], "val": [], "test": []}
    val_counter = 0
    for label, (wnid, name) in enumerate(IMAGENET_CLASSES):
        for i in range(5):
            splits["train"].append((w.image(f"images/train/{wnid}/{wnid}_{1000 + 37 * i}.JPEG", label, i),
                                    label, name))
        for i in range(2):
            val_counter += 1
            splits["test"].append((w.image(f"images/val/{wnid}/ILSVRC2012_val_{val_counter:08d}.JPEG", label, i),
                                   label, name))
    splits["val"] = list(splits["test"])
    return w, splits, [n for _, n in IMAGENET_CLASSES], "imagenet.yaml", {}


def _imagenetv2(root, with_split, seed):
    w = _Writer(root, "imagenetv2")
    w.text("classnames.txt", _classnames_lines())
    test = []
    for label, (wnid, name) in enumerate(IMAGENET_CLASSES):
        for i in range(2):
            stem = f"{(label * 7919 + i * 104729) % 16 ** 10:010x}"
            test.append((w.image(f"imagenetv2-matched-frequency-format-val/{label}/{stem}.jpeg", label, i),
                         label, name))
    return w, {"train": [], "val": [], "test": test}, [n for _, n in IMAGENET_CLASSES], "imagenetv2.yaml", {}


def _sketch(root, with_split, seed):
    w = _Writer(root, "imagenet-sketch")
    w.text("classnames.txt", _classnames_lines())
    test = []
    for label, (wnid, name) in enumerate(IMAGENET_CLASSES):
        for i in range(2):
            test.append((w.image(f"images/{wnid}/sketch_{i}.JPEG", label, i), label, name))
    return w, {"train": [], "val": [], "test": test}, [n for _, n in IMAGENET_CLASSES], \
        "imagenet_sketch.yaml", {}


def _subset_variant(root, folder, image_folder, yaml, imagenet_indices, image_name):
    """ImageNet-A / -R: a subset of the ImageNet classes, labels 0..k-1 in sorted wnid order, a README.txt."""
    w = _Writer(root, folder)
    w.text("classnames.txt", _classnames_lines())
    w.text(f"{image_folder}/README.txt", ["miniature copy"])
    test, names = [], []
    for label, index in enumerate(sorted(imagenet_indices, key=lambda k: IMAGENET_CLASSES[k][0])):
        wnid, name = IMAGENET_CLASSES[index]
        names.append(name)
        for i in range(2):
            test.append((w.image(f"{image_folder}/{wnid}/{image_name(name, i)}", label, i), label, name))
    ordered = sorted(imagenet_indices, key=lambda k: IMAGENET_CLASSES[k][0])
    return w, {"train": [], "val": [], "test": test}, names, yaml, {"imagenet_labels": ordered}


def _imagenet_a(root, with_split, seed):
    return _subset_variant(root, "imagenet-adversarial", "imagenet-a", "imagenet_a.yaml", [6, 1, 3, 8, 9],
                           lambda name, i: f"0.{116 + i:06d}_{name} _ {name}_0.86{i}.jpg")


def _imagenet_r(root, with_split, seed):
    return _subset_variant(root, "imagenet-rendition", "imagenet-r", "imagenet_r.yaml", [1, 2, 4, 6, 8],
                           lambda name, i: f"{('art', 'cartoon')[i]}_{i}.jpg")


_BUILDERS: Dict[str, Tuple[str, Optional[str], Callable]] = {
    # name: (folder, split file, builder)
    "ImageNet": ("imagenet", None, _imagenet),
    "Caltech101": ("caltech-101", "split_zhou_Caltech101.json", _caltech),
    "OxfordPets": ("oxford_pets", "split_zhou_OxfordPets.json", _pets),
    "StanfordCars": ("stanford_cars", "split_zhou_StanfordCars.json", _cars),
    "OxfordFlowers": ("oxford_flowers", "split_zhou_OxfordFlowers.json", _flowers),
    "Food101": ("food-101", "split_zhou_Food101.json", _food),
    "FGVCAircraft": ("fgvc_aircraft", None, _fgvc),
    "SUN397": ("sun397", "split_zhou_SUN397.json", _sun),
    "DescribableTextures": ("dtd", "split_zhou_DescribableTextures.json", _dtd),
    "EuroSAT": ("eurosat", "split_zhou_EuroSAT.json", _eurosat),
    "UCF101": ("ucf101", "split_zhou_UCF101.json", _ucf),
    "ImageNetV2": ("imagenetv2", None, _imagenetv2),
    "ImageNetSketch": ("imagenet-sketch", None, _sketch),
    "ImageNetA": ("imagenet-adversarial", None, _imagenet_a),
    "ImageNetR": ("imagenet-rendition", None, _imagenet_r),
}

MINIATURES: Tuple[str, ...] = tuple(_BUILDERS)
TEST_ONLY = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")
SPLIT_FILE_DATASETS = tuple(n for n, (_, f, _) in _BUILDERS.items() if f)


def build_miniature(root, name: str, with_split_file: bool = True, seed: int = 0) -> MiniatureInfo:
    """Write the miniature of dataset ``name`` (registry name) under ``root``; return what a reader must see.

    ``with_split_file=False`` leaves out ``split_zhou_<Name>.json`` (the annotation files stay), for tests of
    split generation. ``seed`` only changes the order of the entries in the split file.
    """
    if name not in _BUILDERS:
        raise KeyError(f"no miniature for {name!r}; available: {', '.join(MINIATURES)}")
    root = os.path.abspath(str(root))
    folder, split_file, builder = _BUILDERS[name]
    writer, splits, classnames, yaml, extra = builder(root, with_split_file, seed)
    return MiniatureInfo(name=name, folder=folder, root=root, yaml=yaml, classnames=classnames, splits=splits,
                         split_file=split_file, test_only=name in TEST_ONLY, all_images=list(writer.images),
                         extra=extra)


def build_all(root, names: Sequence[str] = MINIATURES) -> Dict[str, MiniatureInfo]:
    """Miniatures of several datasets under one data root."""
    return {name: build_miniature(root, name) for name in names}
