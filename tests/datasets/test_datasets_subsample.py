"""Base-to-new halves: sorted labels, first ceil(n/2) base, rest new, relabelled from 0; after few-shot sampling."""
import math

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.helpers import build, entries, make_cfg
from tests.datasets.miniature import build_miniature

from clipbayes.datasets import subsample_classes


@pytest.mark.parametrize("name,n_classes", [("Caltech101", 7), ("EuroSAT", 10), ("ImageNet", 10),
                                            ("FGVCAircraft", 5)])
def test_base_and_new_halves(tmp_path, name, n_classes):
    info = build_miniature(tmp_path / "data", name)
    full = build(make_cfg(info.root, name=name))
    cut = math.ceil(n_classes / 2)
    for half, kept in (("base", range(cut)), ("new", range(cut, n_classes))):
        ds = build(make_cfg(info.root, name=name, SUBSAMPLE_CLASSES=half))
        kept = list(kept)
        assert ds.classnames == [info.classnames[y] for y in kept]
        assert ds.num_classes == len(kept)
        for part, whole in (("train_x", full.train_x), ("val", full.val), ("test", full.test)):
            want = [(d.impath, kept.index(d.label), d.classname) for d in whole if d.label in kept]
            assert entries(getattr(ds, part)) == want, (half, part)
        if name == "ImageNet":
            assert entries(ds.val) == entries(ds.test)


def test_fewshot_is_drawn_before_the_halves_are_taken(tmp_path):
    """The base subset is the 'all' subset restricted to base classes (CoOp samples first, then subsamples)."""
    info = build_miniature(tmp_path / "data", "OxfordPets")
    everything = build(make_cfg(info.root, name="OxfordPets", NUM_SHOTS=2, SEED=9))
    base = build(make_cfg(info.root, name="OxfordPets", NUM_SHOTS=2, SEED=9, SUBSAMPLE_CLASSES="base"))
    new = build(make_cfg(info.root, name="OxfordPets", NUM_SHOTS=2, SEED=9, SUBSAMPLE_CLASSES="new"))
    assert [d.impath for d in base.train_x] == [d.impath for d in everything.train_x if d.label < 3]
    assert [d.impath for d in new.train_x] == [d.impath for d in everything.train_x if d.label >= 3]
    assert sorted({d.label for d in new.train_x}) == [0, 1]
    assert new.classnames == ["basset_hound", "beagle"]


def test_halves_follow_the_labels_of_the_first_list():
    from clipbayes.compat import import_dassl
    import_dassl()
    from dassl.data.datasets import Datum
    import tempfile
    import os
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.jpg")
        open(path, "wb").close()
        train = [Datum(impath=path, label=y, classname=f"c{y}") for y in (4, 0, 2)]       # labels 0, 2, 4 present
        test = [Datum(impath=path, label=y, classname=f"c{y}") for y in (0, 1, 2, 3, 4)]  # 1 and 3 absent from train
        base_train, base_test = subsample_classes(train, test, subsample="base")
        assert [(d.label, d.classname) for d in base_train] == [(0, "c0"), (1, "c2")]  # 4 is new
        assert [(d.label, d.classname) for d in base_test] == [(0, "c0"), (1, "c2")]
        new_train, new_test = subsample_classes(train, test, subsample="new")
        assert [(d.label, d.classname) for d in new_test] == [(0, "c4")]
        same = subsample_classes(train, test, subsample="all")
        assert same[0] is train and same[1] is test
        with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
            subsample_classes(train, subsample="half")
