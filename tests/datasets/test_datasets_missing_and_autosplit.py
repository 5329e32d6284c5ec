"""Missing / broken files give errors that say what, where and from where; generated splits when asked for."""
import collections
import glob
import json
import os
import random

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import build, entries, make_cfg
from tests.datasets.miniature import SPLIT_FILE_DATASETS, build_miniature

from clipbayes.datasets import DatasetFileMissingError, MissingImagesError, SOURCES, SplitFormatError
from clipbayes.datasets import cache


@pytest.mark.parametrize("name", SPLIT_FILE_DATASETS)
def test_missing_split_file_names_file_place_and_source(tmp_path, name):
    info = build_miniature(tmp_path / "data", name, with_split_file=False)
    with pytest.raises(DatasetFileMissingError) as caught:
        build(make_cfg(info.root, name=name))
    message = str(caught.value)
    expected_path = os.path.join(info.dataset_dir, f"split_zhou_{name}.json")
    assert caught.value.path == expected_path
    assert expected_path in message
    assert "https://drive.google.com/file/d/" in message
    assert "DATASET.AUTO_SPLIT True" in message and "NOT identical" in message
    assert "python -m clipbayes.datasets.check" in message


@pytest.mark.parametrize("name,relpath,source_part", [
    ("FGVCAircraft", "variants.txt", "fgvc-aircraft-2013b.tar.gz"),
    ("FGVCAircraft", "images_variant_val.txt", "fgvc-aircraft-2013b.tar.gz"),
    ("ImageNet", "classnames.txt", "drive.google.com"),
    ("ImageNetV2", "classnames.txt", "copy of imagenet/classnames.txt"),
    ("ImageNetA", "imagenet-a", "natural-adv-examples"),
])
def test_missing_annotation_file_or_folder(tmp_path, name, relpath, source_part):
    import shutil
    info = build_miniature(tmp_path / "data", name)
    target = os.path.join(info.dataset_dir, relpath)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    with pytest.raises(DatasetFileMissingError) as caught:
        build(make_cfg(info.root, name=name))
    assert caught.value.path == target
    assert target in str(caught.value) and source_part in str(caught.value)


def test_missing_dataset_folder(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetFileMissingError) as caught:
        build(make_cfg(tmp_path / "data", name="OxfordPets"))
    assert caught.value.path == str(tmp_path / "data" / "oxford_pets")
    assert "'oxford_pets'" in str(caught.value) and "DATASETS.md#oxfordpets" in str(caught.value)


def test_split_entries_pointing_to_missing_images(tmp_path):
    info = build_miniature(tmp_path / "data", "Caltech101")
    gone = [info.splits["train"][0][0], info.splits["test"][1][0]]
    for path in gone:
        os.remove(path)
    with pytest.raises(MissingImagesError) as caught:
        build(make_cfg(info.root, name="Caltech101"))
    assert sorted(caught.value.missing) == sorted(gone)  # all of them, over all splits, in one error
    assert f"2 of {sum(info.sizes().values())} images" in str(caught.value)
    assert "split_zhou_Caltech101.json" in str(caught.value)


@pytest.mark.parametrize("content,problem", [
    ("{not json", "not valid JSON"),
    (json.dumps({"train": [], "val": []}), '"train", "val" and "test"'),
    (json.dumps({"train": [["a.jpg", 0]], "val": [], "test": []}), "expected [path, label, classname]"),
    (json.dumps({"train": [["a.jpg", "zero", "x"]], "val": [], "test": []}), "non-integer label"),
])
def test_unreadable_split_file(tmp_path, content, problem):
    info = build_miniature(tmp_path / "data", "DescribableTextures")
    with open(os.path.join(info.dataset_dir, info.split_file), "w") as handle:
        handle.write(content)
    with pytest.raises(SplitFormatError, match="split_zhou_DescribableTextures.json") as caught:
        build(make_cfg(info.root, name="DescribableTextures"))
    assert problem in str(caught.value)


# ------------------------------------------------------------------------------------------ generated splits
AUTO = sorted(name for name, src in SOURCES.items() if src.auto_split)
HELD_OUT = {"OxfordPets", "StanfordCars", "SUN397", "UCF101"}  # official train+val / test, 20% of it to val


def _per_class(items):
    return dict(collections.Counter(d.label for d in items))


@pytest.mark.parametrize("name", AUTO)
def test_generated_split(tmp_path, name):
    info = build_miniature(tmp_path / "data", name, with_split_file=False)
    state = random.getstate()
    ds = build(make_cfg(info.root, name=name, AUTO_SPLIT=True), seed=-1)
    assert random.getstate() == state  # the global random state is left for few-shot sampling

    assert ds.classnames == info.classnames
    written = entries(ds.train_x) + entries(ds.val) + entries(ds.test)
    expected = [e for part in ("train", "val", "test") for e in info.splits[part]]
    assert sorted(written) == sorted(expected)
    n = len(info.classnames)
    if name in HELD_OUT:
        # 6 train+val images per class: round(6 * 0.2) = 1 to val; test is the official test list
        assert _per_class(ds.train_x) == {y: 5 for y in range(n)}
        assert _per_class(ds.val) == {y: 1 for y in range(n)}
        assert sorted(entries(ds.test)) == sorted(info.splits["test"])
    else:
        # 8 images per class: round(4) train, round(1.6) val, the remaining 2 test
        for part, size in ((ds.train_x, 4), (ds.val, 2), (ds.test, 2)):
            assert _per_class(part) == {y: size for y in range(n)}

    saved = os.path.join(info.dataset_dir, f"split_auto_{name}_seed1.json")
    assert os.path.isfile(saved)
    assert not os.path.exists(os.path.join(info.dataset_dir, f"split_zhou_{name}.json"))

    # deterministic: regenerating under another global seed gives the same split
    os.remove(saved)
    again = build(make_cfg(info.root, name=name, AUTO_SPLIT=True), seed=123)
    assert [entries(p) for p in (again.train_x, again.val, again.test)] == \
        [entries(p) for p in (ds.train_x, ds.val, ds.test)]
    other_seed = build(make_cfg(info.root, name=name, AUTO_SPLIT=True, AUTO_SPLIT_SEED=2))
    assert entries(other_seed.train_x) != entries(ds.train_x)


def test_generated_split_file_is_reused_and_has_coop_format(tmp_path, monkeypatch):
    info = build_miniature(tmp_path / "data", "EuroSAT", with_split_file=False)
    first = build(make_cfg(info.root, name="EuroSAT", AUTO_SPLIT=True))
    with open(os.path.join(info.dataset_dir, "split_auto_EuroSAT_seed1.json")) as handle:
        content = json.load(handle)
    assert set(content) == {"train", "val", "test"}
    rel, label, cname = content["train"][0]
    assert not os.path.isabs(rel) and rel.count("/") == 1 and isinstance(label, int) and isinstance(cname, str)
    from clipbayes.datasets.benchmarks import EuroSAT

    def no_generation(self, rng):
        raise AssertionError("generated again although the generated split file exists")
    monkeypatch.setattr(EuroSAT, "generate_split", no_generation)
    again = build(make_cfg(info.root, name="EuroSAT", AUTO_SPLIT=True))
    assert entries(again.test) == entries(first.test)


def test_generated_split_goes_to_user_cache_on_read_only_root(tmp_path, monkeypatch, user_cache):
    info = build_miniature(tmp_path / "data", "Food101", with_split_file=False)
    root = os.path.abspath(info.root)
    real = cache.is_writable_dir
    monkeypatch.setattr(cache, "is_writable_dir",
                        lambda p: False if os.path.abspath(p).startswith(root) else real(p))
    build(make_cfg(info.root, name="Food101", AUTO_SPLIT=True, NUM_SHOTS=1))
    assert glob.glob(os.path.join(str(user_cache), "splits", "food-101-*", "split_auto_Food101_seed1.json"))
    assert glob.glob(os.path.join(str(user_cache), "split_fewshot", "food-101-*", "shot_1-seed_1.pkl"))
    assert not glob.glob(os.path.join(info.dataset_dir, "split_*"))


def test_generation_needs_the_annotation_files(tmp_path):
    info = build_miniature(tmp_path / "data", "OxfordPets", with_split_file=False)
    os.remove(os.path.join(info.dataset_dir, "annotations", "test.txt"))
    with pytest.raises(DatasetFileMissingError) as caught:
        build(make_cfg(info.root, name="OxfordPets", AUTO_SPLIT=True))
    assert caught.value.path.endswith(os.path.join("annotations", "test.txt"))
    assert "annotations.tar.gz" in str(caught.value)


def test_published_split_wins_over_auto_split(tmp_path):
    info = build_miniature(tmp_path / "data", "DescribableTextures")
    ds = build(make_cfg(info.root, name="DescribableTextures", AUTO_SPLIT=True))
    assert entries(ds.train_x) == info.splits["train"]
    assert not glob.glob(os.path.join(info.dataset_dir, "split_auto_*"))
