"""Each benchmark reader on its miniature: class names, label order, split contents and sizes, yaml names."""
import os
import pickle

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import build, entries, make_cfg
from tests.datasets.miniature import MINIATURES, SPLIT_FILE_DATASETS, TEST_ONLY, build_miniature

from clipbayes.datasets import READERS, SOURCES
from clipbayes.datasets.imagenet import ImageNet

COOP_YAMLS = {
    "imagenet.yaml": "ImageNet", "caltech101.yaml": "Caltech101", "oxford_pets.yaml": "OxfordPets",
    "stanford_cars.yaml": "StanfordCars", "oxford_flowers.yaml": "OxfordFlowers", "food101.yaml": "Food101",
    "fgvc_aircraft.yaml": "FGVCAircraft", "sun397.yaml": "SUN397", "dtd.yaml": "DescribableTextures",
    "eurosat.yaml": "EuroSAT", "ucf101.yaml": "UCF101", "imagenetv2.yaml": "ImageNetV2",
    "imagenet_sketch.yaml": "ImageNetSketch", "imagenet_a.yaml": "ImageNetA", "imagenet_r.yaml": "ImageNetR",
}


def test_every_coop_yaml_names_a_registered_reader():
    from dassl.data.datasets import DATASET_REGISTRY
    from tests.datasets.miniature import REPO_ROOT
    for yaml, name in COOP_YAMLS.items():
        cfg = make_cfg("/nowhere", yaml=os.path.join(REPO_ROOT, "configs", "datasets", yaml))
        assert cfg.DATASET.NAME == name
        assert DATASET_REGISTRY.get(name) is READERS[name]
    assert set(COOP_YAMLS.values()) == set(SOURCES)


@pytest.mark.parametrize("name", MINIATURES)
def test_reader_matches_the_miniature(tmp_path, name):
    info = build_miniature(tmp_path / "data", name)
    ds = build(make_cfg(info.root, yaml=info.yaml_path))

    assert ds.classnames == info.classnames
    assert ds.num_classes == info.num_classes
    assert ds.lab2cname == dict(enumerate(info.classnames))
    if info.test_only:
        assert ds.val is None
        assert sorted(entries(ds.test)) == sorted(info.splits["test"])
        assert entries(ds.train_x) == entries(ds.test)
    elif name == "ImageNet":
        # as in CoOp: class folders sorted, images in the order the file system lists them; val is the test set
        train_dir = os.path.join(info.dataset_dir, "images", "train")
        listed = [os.path.join(train_dir, wnid, f) for wnid in sorted(os.listdir(train_dir))
                  for f in os.listdir(os.path.join(train_dir, wnid)) if not f.startswith(".")]
        assert [d.impath for d in ds.train_x] == listed
        assert sorted(entries(ds.train_x)) == sorted(info.splits["train"])
        assert sorted(entries(ds.test)) == sorted(info.splits["test"])
        assert entries(ds.val) == entries(ds.test)
    else:
        # the order of the split file (or annotation file) is kept: few-shot sampling depends on it
        for part, items in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
            assert entries(items) == info.splits[part], part
    for d in ds.train_x + ds.test:
        assert os.path.isabs(d.impath) and d.domain == 0


def test_split_paths_are_relative_to_the_documented_folder(tmp_path):
    """StanfordCars paths are relative to the dataset folder, the others to their image folder."""
    import json
    for name in ("StanfordCars", "OxfordPets", "SUN397"):
        info = build_miniature(tmp_path / "data", name)
        with open(os.path.join(info.dataset_dir, info.split_file)) as handle:
            first = json.load(handle)["train"][0][0]
        expected_prefix = {"StanfordCars": "cars_", "OxfordPets": "", "SUN397": ""}[name]
        assert first.startswith(expected_prefix) and not first.startswith("/")
        ds = build(make_cfg(info.root, yaml=info.yaml_path))
        assert any(d.impath.endswith(first) for d in ds.train_x)


def test_imagenet_subset_variants_map_to_imagenet_classes(tmp_path):
    for name in ("ImageNetA", "ImageNetR"):
        info = build_miniature(tmp_path / "data", name)
        ds = build(make_cfg(info.root, name=name))
        assert ds.imagenet_labels == info.extra["imagenet_labels"]
        # labels are 0..k-1 but carry ImageNet's names for those classes
        assert ds.num_classes == len(info.extra["imagenet_labels"]) < 10


def test_test_only_variants_ignore_num_shots(tmp_path):
    info = build_miniature(tmp_path / "data", "ImageNetSketch")
    ds = build(make_cfg(info.root, name="ImageNetSketch", NUM_SHOTS=1))
    assert len(ds.test) == len(info.splits["test"])
    assert not os.path.exists(os.path.join(info.dataset_dir, "split_fewshot"))


def test_imagenet_listing_cache_is_written_and_reused(tmp_path, monkeypatch):
    info = build_miniature(tmp_path / "data", "ImageNet")
    first = build(make_cfg(info.root, name="ImageNet"))
    listing = os.path.join(info.dataset_dir, "preprocessed.pkl")
    with open(listing, "rb") as handle:
        content = pickle.load(handle)
    assert set(content) == {"train", "test"}
    assert entries(content["train"]) == entries(first.train_x)

    def no_listing(self):
        raise AssertionError("the folders were listed although preprocessed.pkl exists")

    monkeypatch.setattr(ImageNet, "read_records", no_listing)
    second = build(make_cfg(info.root, name="ImageNet"))
    assert entries(second.train_x) == entries(first.train_x)
    assert entries(second.test) == entries(first.test)


def test_imagenet_listing_of_another_root_is_ignored(tmp_path):
    a = build_miniature(tmp_path / "a", "ImageNet")
    b = build_miniature(tmp_path / "b", "ImageNet")
    build(make_cfg(a.root, name="ImageNet"))
    os.replace(os.path.join(a.dataset_dir, "preprocessed.pkl"), os.path.join(b.dataset_dir, "preprocessed.pkl"))
    ds = build(make_cfg(b.root, name="ImageNet"))
    assert all(d.impath.startswith(b.dataset_dir) for d in ds.train_x + ds.test)
    assert sorted(entries(ds.train_x)) == sorted(b.splits["train"])


def test_dassl_data_manager_builds_loaders(tmp_path):
    """The reader plugs into Dassl's DataManager (what the trainers use) and batches load."""
    from dassl.data import DataManager
    info = build_miniature(tmp_path / "data", "OxfordPets")
    cfg = make_cfg(info.root, yaml=info.yaml_path, NUM_SHOTS=2)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("random_flip", "normalize")
    dm = DataManager(cfg)
    assert dm.num_classes == 5
    assert dm.lab2cname == dict(enumerate(info.classnames))
    batch = next(iter(dm.train_loader_x))
    assert tuple(batch["img"].shape[1:]) == (3, 32, 32)
    assert len(batch["label"]) == 10  # 2 shots x 5 classes, smaller than the batch size


def test_split_file_datasets_are_the_documented_ones():
    with_file = {name for name, src in SOURCES.items() if src.split_file}
    assert with_file == set(SPLIT_FILE_DATASETS)
    assert set(TEST_ONLY) == {n for n, cls in READERS.items() if getattr(cls, "test_only", False)}
