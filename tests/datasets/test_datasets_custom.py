"""Users' own data (ImageFolderDataset, CSVDataset), the dataset config keys and the prompt templates."""
import collections
import glob
import os
import random

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import build, entries, make_cfg, restate_fewshot
from tests.datasets.miniature import REPO_ROOT, write_image

from clipbayes.datasets import (DATASET_TEMPLATES, ENSEMBLE_TEMPLATES, DatasetError, DatasetFileMissingError,
                                SplitFormatError, add_dataset_config, template_for, template_from_cfg)
from clipbayes.datasets.config import CUSTOM_KEYS, DATASET_KEYS

CLASSES = ["zebra", "aardvark", "moth_orchid"]  # sorted: aardvark, moth_orchid, zebra


def _tree(base, layout):
    """``layout``: {relative folder: number of PNG images}; returns the written paths per folder."""
    written = {}
    for index, (folder, count) in enumerate(sorted(layout.items())):
        written[folder] = []
        for i in range(count):
            path = os.path.join(base, folder, f"img_{i:02d}.png")
            write_image(path, (index * 40, i * 20, 90), fmt="PNG")
            written[folder].append(path)
    return written


def _per_class(items):
    return dict(collections.Counter(d.label for d in items))


def test_image_folder_with_split_folders(tmp_path):
    data = tmp_path / "data"
    _tree(str(data / "pets"), {f"{s}/{c}": n for s, n in (("train", 4), ("val", 2), ("test", 3)) for c in CLASSES})
    cfg = make_cfg(data, yaml=os.path.join(REPO_ROOT, "configs", "datasets", "image_folder.yaml"),
                   CUSTOM={"DIR": "pets"})
    ds = build(cfg)
    assert ds.classnames == ["aardvark", "moth_orchid", "zebra"]
    assert (_per_class(ds.train_x), _per_class(ds.val), _per_class(ds.test)) == \
        ({0: 4, 1: 4, 2: 4}, {0: 2, 1: 2, 2: 2}, {0: 3, 1: 3, 2: 3})
    assert all(f"{os.sep}train{os.sep}" in d.impath for d in ds.train_x)
    assert all(os.path.basename(os.path.dirname(d.impath)) == d.classname for d in ds.test)


def test_image_folder_classnames_file_and_fewshot(tmp_path):
    data = tmp_path / "data"
    _tree(str(data), {f"{s}/{c}": n for s, n in (("train", 5), ("test", 2)) for c in CLASSES})
    (data / "names.txt").write_text("moth_orchid moth orchid\nzebra plains zebra\n")
    cfg = make_cfg(data, name="ImageFolderDataset", NUM_SHOTS=2, SEED=4,
                   CUSTOM={"CLASSNAMES": "names.txt", "VAL_FRACTION": 0.2})
    ds = build(cfg)
    assert ds.classnames == ["aardvark", "moth orchid", "plains zebra"]
    # no val folder: round(5 * 0.2) = 1 image per class held out of train
    full = build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"CLASSNAMES": "names.txt"}))
    assert _per_class(full.val) == {0: 1, 1: 1, 2: 1} and _per_class(full.train_x) == {0: 4, 1: 4, 2: 4}
    random.seed(4)
    assert entries(ds.train_x) == entries(restate_fewshot(full.train_x, 2))
    caches = glob.glob(str(data / "split_fewshot" / "shot_2-seed_4-*.pkl"))
    assert len(caches) == 1  # custom caches carry a fingerprint of the dataset's content
    # the cache folder inside the data folder is not mistaken for a split or class
    again = build(cfg)
    assert again.classnames == ds.classnames and entries(again.train_x) == entries(ds.train_x)


def test_image_folder_without_val_uses_test_when_asked(tmp_path):
    data = tmp_path / "data"
    _tree(str(data), {f"{s}/{c}": 3 for s in ("train", "test") for c in CLASSES})
    ds = build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"VAL_FRACTION": 0.0}))
    assert entries(ds.val) == entries(ds.test) and len(ds.train_x) == 9


def test_image_folder_flat_tree_is_split_deterministically(tmp_path):
    data = tmp_path / "data"
    _tree(str(data / "flat"), {c: 10 for c in CLASSES})
    cfg = make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "flat"})
    state = random.getstate()
    first = build(cfg, seed=-1)
    assert random.getstate() == state
    assert (_per_class(first.train_x), _per_class(first.val), _per_class(first.test)) == \
        ({0: 5, 1: 5, 2: 5}, {0: 2, 1: 2, 2: 2}, {0: 3, 1: 3, 2: 3})
    again = build(cfg, seed=77)
    assert entries(again.train_x) == entries(first.train_x) and entries(again.test) == entries(first.test)
    other = build(make_cfg(data, name="ImageFolderDataset", AUTO_SPLIT_SEED=5, CUSTOM={"DIR": "flat"}))
    assert entries(other.train_x) != entries(first.train_x)
    ratios = build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "flat", "SPLIT_RATIOS": (0.6, 0.1, 0.3)}))
    assert _per_class(ratios.train_x) == {0: 6, 1: 6, 2: 6} and _per_class(ratios.val) == {0: 1, 1: 1, 2: 1}


def test_image_folder_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(DatasetFileMissingError, match="CUSTOM.DIR"):
        build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "nowhere"}))
    with pytest.raises(DatasetError, match="no class folders"):
        build(make_cfg(data, name="ImageFolderDataset"))
    _tree(str(data / "only_train"), {"train/a": 2, "train/b": 2})
    with pytest.raises(DatasetError, match="neither val nor test"):
        build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "only_train"}))
    _tree(str(data / "gap"), {"train/a": 2, "test/a": 1, "test/b": 1})
    with pytest.raises(DatasetError, match="no training image.*b"):
        build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "gap", "VAL_FRACTION": 0.0}))
    with pytest.raises(DatasetError, match=r"class 'a' has 2 train\+val images, too few to hold out 20%"):
        build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"DIR": "gap"}))
    with pytest.raises(ValueError, match="SPLIT_RATIOS"):
        build(make_cfg(data, name="ImageFolderDataset", CUSTOM={"SPLIT_RATIOS": (0.5, 0.5, 0.5)}))


def _csv_images(folder, count_per_class=4):
    paths = _tree(str(folder), {f"img/{c}": count_per_class for c in CLASSES})
    return {c: [os.path.relpath(p, str(folder)) for p in paths[f"img/{c}"]] for c in CLASSES}


def test_csv_with_header_integer_labels_and_split(tmp_path):
    data = tmp_path / "data"
    rel = _csv_images(data / "mine")
    (data / "mine" / "classnames.txt").write_text("zebra\naardvark\nmoth orchid\n")  # label order = file order
    rows = ["split,path,label"]
    for label, cname in enumerate(CLASSES):
        for i, path in enumerate(rel[cname]):
            rows.append(f"{('train', 'train', 'valid', 'TEST')[i]},{path},{label}")
    (data / "mine" / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = make_cfg(data, yaml=os.path.join(REPO_ROOT, "configs", "datasets", "csv_dataset.yaml"),
                   CUSTOM={"DIR": "mine"})
    ds = build(cfg)
    assert ds.classnames == ["zebra", "aardvark", "moth orchid"]
    assert (_per_class(ds.train_x), _per_class(ds.val), _per_class(ds.test)) == \
        ({0: 2, 1: 2, 2: 2}, {0: 1, 1: 1, 2: 1}, {0: 1, 1: 1, 2: 1})
    assert all(d.impath == os.path.join(str(data / "mine"), rel[CLASSES[d.label]][0]) for d in ds.train_x[:1])


def test_csv_with_class_names_and_no_split(tmp_path):
    data = tmp_path / "data"
    rel = _csv_images(data, count_per_class=10)
    lines = [f"{path},{cname}" for cname in CLASSES for path in rel[cname]]
    (data / "all.csv").write_text("\n".join(lines) + "\n")
    ds = build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "all.csv"}))
    assert ds.classnames == sorted(CLASSES)
    assert (_per_class(ds.train_x), _per_class(ds.val), _per_class(ds.test)) == \
        ({0: 5, 1: 5, 2: 5}, {0: 2, 1: 2, 2: 2}, {0: 3, 1: 3, 2: 3})
    again = build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "all.csv"}), seed=999)
    assert entries(again.train_x) == entries(ds.train_x)


def test_csv_errors(tmp_path):
    data = tmp_path / "data"
    rel = _csv_images(data)
    with pytest.raises(DatasetError, match="DATASET.CUSTOM.CSV"):
        build(make_cfg(data, name="CSVDataset"))
    with pytest.raises(DatasetFileMissingError, match="missing.csv"):
        build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "missing.csv"}))
    (data / "ints.csv").write_text(f"{rel['zebra'][0]},0,train\n")
    with pytest.raises(DatasetError, match="CLASSNAMES"):
        build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "ints.csv"}))
    (data / "split.csv").write_text(f"{rel['zebra'][0]},zebra,train\n{rel['zebra'][1]},zebra,holdout\n")
    with pytest.raises(SplitFormatError, match="row 2: split 'holdout'"):
        build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "split.csv"}))
    (data / "names.txt").write_text("zebra\n")
    (data / "range.csv").write_text(f"{rel['zebra'][0]},0,train\n{rel['zebra'][1]},3,test\n")
    with pytest.raises(SplitFormatError, match="label 3 is not in 0..0"):
        build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "range.csv", "CLASSNAMES": "names.txt"}))
    (data / "gone.csv").write_text("img/zebra/nope.png,zebra,train\n" + f"{rel['zebra'][0]},zebra,val\n"
                                   + f"{rel['zebra'][1]},zebra,test\n")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        build(make_cfg(data, name="CSVDataset", CUSTOM={"CSV": "gone.csv"}))


# ------------------------------------------------------------------------------------------------ config
def test_add_dataset_config_declares_keys_once():
    from dassl.config import get_cfg_default
    cfg = get_cfg_default()
    add_dataset_config(cfg)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert set(DATASET_KEYS) <= set(cfg.DATASET) and set(CUSTOM_KEYS) == set(cfg.DATASET.CUSTOM)
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    cfg.DATASET.CUSTOM.DIR = "kept"
    add_dataset_config(cfg)
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base" and cfg.DATASET.CUSTOM.DIR == "kept"


def test_custom_yaml_needs_the_declared_keys():
    from dassl.config import get_cfg_default
    yaml = os.path.join(REPO_ROOT, "configs", "datasets", "image_folder.yaml")
    bare = get_cfg_default()
    with pytest.raises(KeyError):
        bare.merge_from_file(yaml)
    cfg = get_cfg_default()
    add_dataset_config(cfg)
    cfg.merge_from_file(yaml)
    cfg.merge_from_list(["DATASET.SUBSAMPLE_CLASSES", "new", "DATASET.CUSTOM.SPLIT_RATIOS", "[0.6, 0.2, 0.2]"])
    assert cfg.DATASET.NAME == "ImageFolderDataset" and cfg.DATASET.SUBSAMPLE_CLASSES == "new"
    assert tuple(cfg.DATASET.CUSTOM.SPLIT_RATIOS) == (0.6, 0.2, 0.2)


# --------------------------------------------------------------------------------------------- templates
def test_templates():
    assert DATASET_TEMPLATES["OxfordPets"] == "a photo of a {}, a type of pet."
    assert DATASET_TEMPLATES["DescribableTextures"] == "{} texture."
    assert DATASET_TEMPLATES["EuroSAT"] == "a centered satellite photo of {}."
    assert DATASET_TEMPLATES["Food101"] == "a photo of {}, a type of food."
    assert DATASET_TEMPLATES["UCF101"] == "a photo of a person doing {}."
    assert {DATASET_TEMPLATES[n] for n in ("ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA",
                                           "ImageNetR")} == {"a photo of a {}."}
    assert len(DATASET_TEMPLATES) == 15
    assert template_for("FGVCAircraft") == "a photo of a {}, a type of aircraft."
    assert template_for("ImageFolderDataset") == template_for("unknown") == "a photo of a {}."
    assert template_for("EuroSAT", override="satellite image of {}") == "satellite image of {}"
    with pytest.raises(ValueError):
        template_for("EuroSAT", override="no placeholder")
    assert len(ENSEMBLE_TEMPLATES) == 7 and ENSEMBLE_TEMPLATES[0] == "itap of a {}."
    assert all(t.count("{}") == 1 for t in ENSEMBLE_TEMPLATES)


def test_template_from_cfg():
    cfg = make_cfg("/nowhere", name="OxfordFlowers")
    assert template_from_cfg(cfg) == "a photo of a {}, a type of flower."
    cfg.DATASET.PROMPT_TEMPLATE = "a close-up photo of a {}."
    assert template_from_cfg(cfg) == "a close-up photo of a {}."
