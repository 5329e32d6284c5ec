"""Few-shot subsets: the same as Dassl's sampling after train.py seeds, cached in CoOp's pickle format."""
import glob
import os
import pickle
import random

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import build, entries, make_cfg, restate_fewshot
from tests.datasets.miniature import build_miniature

from clipbayes.compat import import_dassl

import_dassl()
from dassl.data.datasets import Datum, DatasetBase  # noqa: E402

from clipbayes.datasets import cache  # noqa: E402


def _never_sample(*args, **kwargs):
    raise AssertionError("the subset was sampled again instead of read from the cache")


@pytest.mark.parametrize("name", ["OxfordPets", "FGVCAircraft", "Caltech101", "OxfordFlowers"])
@pytest.mark.parametrize("shots", [1, 2, 4, 16])
def test_subset_equals_dassl_sampling_for_each_seed(tmp_path, name, shots):
    info = build_miniature(tmp_path / "data", name)
    full = build(make_cfg(info.root, name=name, NUM_SHOTS=-1))
    subsets = []
    for seed in (1, 2, 3):
        random.seed(seed)
        want_train = restate_fewshot(full.train_x, shots)
        want_val = restate_fewshot(full.val, min(shots, 4))
        ds = build(make_cfg(info.root, name=name, NUM_SHOTS=shots, SEED=seed))
        assert entries(ds.train_x) == entries(want_train)
        assert entries(ds.val) == entries(want_val)
        assert entries(ds.test) == entries(full.test)  # test is never subsampled
        per_class = {}
        for d in ds.train_x:
            per_class[d.label] = per_class.get(d.label, 0) + 1
        available = {}
        for d in full.train_x:
            available[d.label] = available.get(d.label, 0) + 1
        assert per_class == {y: min(shots, n) for y, n in available.items()}
        subsets.append(entries(ds.train_x))
    if shots < 3:  # with 3+ train images per class, different seeds pick different images
        assert len({tuple(s) for s in subsets}) > 1


def test_imagenet_samples_train_only_and_keeps_test_as_val(tmp_path):
    info = build_miniature(tmp_path / "data", "ImageNet")
    full = build(make_cfg(info.root, name="ImageNet"))
    random.seed(5)
    want = restate_fewshot(full.train_x, 2)
    ds = build(make_cfg(info.root, name="ImageNet", NUM_SHOTS=2, SEED=5))
    assert entries(ds.train_x) == entries(want)
    assert entries(ds.val) == entries(ds.test) == entries(full.test)
    with open(os.path.join(info.dataset_dir, "split_fewshot", "shot_2-seed_5.pkl"), "rb") as handle:
        assert set(pickle.load(handle)) == {"train"}  # CoOp's ImageNet cache holds train only


def test_cache_file_is_coop_format_and_is_reused(tmp_path, monkeypatch):
    info = build_miniature(tmp_path / "data", "DescribableTextures")
    first = build(make_cfg(info.root, name="DescribableTextures", NUM_SHOTS=4, SEED=3))
    path = os.path.join(info.dataset_dir, "split_fewshot", "shot_4-seed_3.pkl")
    with open(path, "rb") as handle:
        content = pickle.load(handle)
    assert set(content) == {"train", "val"}
    assert all(type(d) is Datum for d in content["train"] + content["val"])
    assert entries(content["train"]) == entries(first.train_x)
    assert entries(content["val"]) == entries(first.val)
    assert not glob.glob(os.path.join(info.dataset_dir, "split_fewshot", ".*tmp"))  # atomic write left no temp

    monkeypatch.setattr(DatasetBase, "generate_fewshot_dataset", _never_sample)
    again = build(make_cfg(info.root, name="DescribableTextures", NUM_SHOTS=4, SEED=3))
    assert entries(again.train_x) == entries(first.train_x)
    assert entries(again.val) == entries(first.val)


def test_a_cache_written_elsewhere_in_coop_format_is_used_as_is(tmp_path, monkeypatch):
    """A pickle like the ones CoOp writes (any valid subset) is taken verbatim."""
    info = build_miniature(tmp_path / "data", "EuroSAT")
    full = build(make_cfg(info.root, name="EuroSAT"))
    chosen_train = [d for d in full.train_x if d.impath.endswith("_1.jpg")]
    chosen_val = full.val[:3]
    os.makedirs(os.path.join(info.dataset_dir, "split_fewshot"))
    with open(os.path.join(info.dataset_dir, "split_fewshot", "shot_1-seed_7.pkl"), "wb") as handle:
        pickle.dump({"train": chosen_train, "val": chosen_val}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    monkeypatch.setattr(DatasetBase, "generate_fewshot_dataset", _never_sample)
    ds = build(make_cfg(info.root, name="EuroSAT", NUM_SHOTS=1, SEED=7))
    assert entries(ds.train_x) == entries(chosen_train)
    assert entries(ds.val) == entries(chosen_val)


def test_stale_or_broken_cache_is_resampled_and_replaced(tmp_path):
    info = build_miniature(tmp_path / "data", "OxfordPets")
    other = build_miniature(tmp_path / "other", "OxfordPets")
    stale_source = build(make_cfg(other.root, name="OxfordPets", NUM_SHOTS=2, SEED=4))
    target = os.path.join(info.dataset_dir, "split_fewshot", "shot_2-seed_4.pkl")
    os.makedirs(os.path.dirname(target))
    os.replace(os.path.join(other.dataset_dir, "split_fewshot", "shot_2-seed_4.pkl"), target)

    full = build(make_cfg(info.root, name="OxfordPets"))
    random.seed(4)
    want = restate_fewshot(full.train_x, 2)
    ds = build(make_cfg(info.root, name="OxfordPets", NUM_SHOTS=2, SEED=4))
    assert entries(ds.train_x) == entries(want)
    assert all(d.impath.startswith(info.dataset_dir) for d in ds.train_x)
    assert entries(ds.train_x) != entries(stale_source.train_x)
    with open(target, "rb") as handle:
        assert entries(pickle.load(handle)["train"]) == entries(want)

    with open(target, "wb") as handle:
        handle.write(b"\x80\x05truncated")
    ds = build(make_cfg(info.root, name="OxfordPets", NUM_SHOTS=2, SEED=4))
    assert entries(ds.train_x) == entries(want)


def _read_only_under(root):
    real = cache.is_writable_dir
    root = os.path.abspath(str(root))

    def fake(path):
        path = os.path.abspath(path)
        if path == root or path.startswith(root + os.sep):
            return False
        return real(path)
    return fake


def _snapshot(folder):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)


def test_read_only_root_caches_in_user_dir(tmp_path, monkeypatch, user_cache):
    info = build_miniature(tmp_path / "data", "SUN397")
    before = _snapshot(info.root)
    monkeypatch.setattr(cache, "is_writable_dir", _read_only_under(info.root))
    first = build(make_cfg(info.root, name="SUN397", NUM_SHOTS=2, SEED=1))
    assert _snapshot(info.root) == before  # nothing written into the data root
    cached = glob.glob(os.path.join(str(user_cache), "split_fewshot", "sun397-*", "shot_2-seed_1.pkl"))
    assert len(cached) == 1
    assert cached[0] == os.path.join(cache.user_cache_dir("split_fewshot", info.dataset_dir), "shot_2-seed_1.pkl")
    with open(cached[0], "rb") as handle:
        assert entries(pickle.load(handle)["train"]) == entries(first.train_x)

    monkeypatch.setattr(DatasetBase, "generate_fewshot_dataset", _never_sample)
    again = build(make_cfg(info.root, name="SUN397", NUM_SHOTS=2, SEED=1))
    assert entries(again.train_x) == entries(first.train_x)


def test_nothing_writable_still_works(tmp_path, monkeypatch, capsys):
    info = build_miniature(tmp_path / "data", "UCF101")
    monkeypatch.setattr(cache, "is_writable_dir", lambda path: False)
    full = build(make_cfg(info.root, name="UCF101"))
    random.seed(2)
    want = restate_fewshot(full.train_x, 1)
    ds = build(make_cfg(info.root, name="UCF101", NUM_SHOTS=1, SEED=2))
    assert entries(ds.train_x) == entries(want)
    assert "was not saved anywhere" in capsys.readouterr().out
    assert not glob.glob(os.path.join(info.root, "**", "*.pkl"), recursive=True)


def test_cache_can_be_switched_off(tmp_path):
    info = build_miniature(tmp_path / "data", "Food101")
    build(make_cfg(info.root, name="Food101", NUM_SHOTS=1, FEWSHOT_CACHE=False))
    assert not os.path.exists(os.path.join(info.dataset_dir, "split_fewshot"))


def test_user_cache_location_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPBAYES_CACHE", str(tmp_path / "explicit"))
    assert cache.user_cache_root() == str(tmp_path / "explicit")
    monkeypatch.delenv("CLIPBAYES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.user_cache_root() == str(tmp_path / "xdg" / "clipbayes")
    a = cache.user_cache_dir("split_fewshot", "/data1/dtd")
    b = cache.user_cache_dir("split_fewshot", "/data2/dtd")
    assert a != b and os.path.basename(a).startswith("dtd-")


def test_is_writable_dir_looks_at_nearest_existing_parent(tmp_path):
    assert cache.is_writable_dir(str(tmp_path / "not" / "yet" / "there"))
    (tmp_path / "file").write_text("x")
    assert not cache.is_writable_dir(str(tmp_path / "file" / "below"))


def test_val_gets_at_most_four_shots(tmp_path):
    """val is sampled with min(K, 4) images per class, train with K (needs more than 4 val images per class)."""
    from tests.datasets.miniature import write_image
    data = tmp_path / "data"
    for split, count in (("train", 10), ("val", 6), ("test", 2)):
        for label, cname in enumerate(("heron", "ibis")):
            for i in range(count):
                write_image(str(data / split / cname / f"{i}.png"), (label * 90, i * 20, 7), fmt="PNG")
    full = build(make_cfg(data, name="ImageFolderDataset"))
    random.seed(6)
    want_train = restate_fewshot(full.train_x, 8)
    want_val = restate_fewshot(full.val, 4)
    ds = build(make_cfg(data, name="ImageFolderDataset", NUM_SHOTS=8, SEED=6))
    assert entries(ds.train_x) == entries(want_train) and len(ds.train_x) == 16
    assert entries(ds.val) == entries(want_val) and len(ds.val) == 8
