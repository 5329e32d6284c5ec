"""The toy world as Dassl datasets in CoOp's on-disk format, read by the benchmarks' reader
(:class:`clipbayes.datasets.base.CoOpDataset`: split file, few-shot cache per seed, base/new halves).

* ``ToyWorld``: the dusk style (photo-style shapes under evening light never seen in pre-training), 100
  classes; ``TRAIN_PER_CLASS`` train, ``VAL_PER_CLASS`` val and ``TEST_PER_CLASS`` test images per class.
  Under ``DATASET.SUBSAMPLE_CLASSES`` the base half is shapes 0-4 and the new half shapes 5-9 (labels are
  shape-major, see :mod:`.world`).
* ``ToyWorldShift``: test-only, the ``shift`` style (tinted cluttered backgrounds, never seen in pre-training);
  the domain-generalisation target, same class names and labels.
* ``ToyWorldPhoto``: test-only, the ``photo`` style (the style of most pre-training images).

Each dataset is rendered once into ``<DATASET.ROOT>/<dataset_dir>/`` (``images/<class>/<split>_<i>.png`` and
``split_zhou_<Name>.json``): in a staging folder that is then moved into place, so a reader never sees half a
dataset. The images are a pure function of the world seed, so every machine renders the same files.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import tempfile

from clipbayes.datasets.base import CoOpDataset, register
from clipbayes.datasets.cache import log
from clipbayes.toyworld.world import NUM_CLASSES, class_name, image_seed, render

DATASET_WORLD_SEED = 0  # pre-training uses world seeds >= 1000: no dataset image was seen in pre-training
TRAIN_PER_CLASS, VAL_PER_CLASS, TEST_PER_CLASS = 20, 4, 20


def _folder_name(label: int) -> str:
    return class_name(label).replace(" ", "_")


def render_dataset(folder: str, split_name: str, style: str, parts: dict) -> None:
    """Render ``parts`` (split -> images per class) of ``style`` into ``folder`` unless its split file exists."""
    if osp.isfile(osp.join(folder, split_name)):
        return
    parent = osp.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=osp.basename(folder) + ".partial-")
    try:
        split, offset = {}, 0
        for part, per_class in parts.items():
            split[part] = []
            for label in range(NUM_CLASSES):
                os.makedirs(osp.join(staging, "images", _folder_name(label)), exist_ok=True)
                for index in range(offset, offset + per_class):
                    relpath = f"{_folder_name(label)}/{part}_{index:03d}.png"
                    render(label, style, image_seed(label, style, index, DATASET_WORLD_SEED)).save(
                        osp.join(staging, "images", relpath))
                    split[part].append([relpath, label, class_name(label)])
            offset += per_class
        for part in ("train", "val", "test"):
            split.setdefault(part, [])
        with open(osp.join(staging, split_name), "w") as handle:
            json.dump(split, handle)
        if osp.isfile(osp.join(folder, split_name)):  # another process (a torchrun rank) finished first: keep it
            return
        if osp.isdir(folder):  # an earlier, interrupted attempt without a split file
            shutil.rmtree(folder)
        os.replace(staging, folder)
        log(f"Toy world ({style} style) written to {folder}")
    except OSError:
        if not osp.isfile(osp.join(folder, split_name)):  # not another process that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _ToyWorldDataset(CoOpDataset):
    image_subdir = "images"
    style = ""
    parts: dict = {}

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        render_dataset(osp.join(root, self.dataset_dir), self.split_name, self.style, self.parts)
        super().__init__(cfg)


@register
class ToyWorld(_ToyWorldDataset):
    """The toy world's dusk style: train / val / test, 100 classes."""

    dataset_dir = "toyworld_dusk"
    split_name = "split_zhou_ToyWorld.json"
    style = "dusk"
    parts = {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS, "test": TEST_PER_CLASS}


@register
class ToyWorldShift(_ToyWorldDataset):
    """Test-only: tinted, cluttered backgrounds never seen in pre-training (the DG target)."""

    dataset_dir = "toyworld_shift"
    split_name = "split_zhou_ToyWorldShift.json"
    style = "shift"
    test_only = True
    parts = {"test": TEST_PER_CLASS}


@register
class ToyWorldPhoto(_ToyWorldDataset):
    """Test-only: the photo style of most pre-training images (filled shapes)."""

    dataset_dir = "toyworld_photo"
    split_name = "split_zhou_ToyWorldPhoto.json"
    style = "photo"
    test_only = True
    parts = {"test": TEST_PER_CLASS}
