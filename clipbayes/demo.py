"""The embedded demo: ``python train.py --trainer NAME`` with no data and no config.

A small synthetic dataset in CoOp's on-disk format (images + ``split_zhou_DemoShapes.json``) is generated once
into the cache directory, and the trainer runs on a tiny random CLIP: a full train -> checkpoint -> test cycle
in seconds on a CPU. A random tiny CLIP knows nothing (its image features of different pictures have cosine
similarity ~0.99), so accuracies near chance (25%) are expected: the demo shows the pipeline, not a method.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import random
import shutil
import tempfile
import time

from PIL import Image, ImageDraw

from clipbayes.compat import import_dassl

import_dassl()
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum  # noqa: E402

DEMO_DIR_NAME = "demo_shapes"
DEMO_SPLIT_FILE = "split_zhou_DemoShapes.json"
DEMO_CLASSES = ["red_square", "green_circle", "blue_triangle", "yellow_bar"]
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
_PER_CLASS = {"train": 16, "val": 4, "test": 8}


def cache_root() -> str:
    """``$CLIPBAYES_CACHE`` or ``~/.cache/clipbayes``: where the demo data (and other caches) live."""
    return os.environ.get("CLIPBAYES_CACHE") or osp.expanduser("~/.cache/clipbayes")


def _draw(classname: str, rng: random.Random) -> Image.Image:
    colour, shape = classname.split("_")
    image = Image.new("RGB", (64, 64), tuple(rng.randint(0, 60) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    size = rng.randint(18, 30)
    x, y = rng.randint(2, 62 - size), rng.randint(2, 62 - size)
    fill = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in _COLOURS[colour])
    box = [x, y, x + size, y + size]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=fill)
    else:
        draw.rectangle([x, y + size // 3, x + size, y + 2 * size // 3], fill=fill)
    return image


def ensure_demo_dataset(root: str) -> str:
    """Generate the demo dataset under ``root/demo_shapes`` unless it is already complete; return that folder."""
    folder = osp.join(root, DEMO_DIR_NAME)
    if osp.isfile(osp.join(folder, DEMO_SPLIT_FILE)):
        return folder
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix=DEMO_DIR_NAME + ".")
    rng = random.Random(0)
    split = {}
    for part, count in _PER_CLASS.items():
        split[part] = []
        for label, name in enumerate(DEMO_CLASSES):
            os.makedirs(osp.join(staging, "images", name), exist_ok=True)
            for i in range(count):
                rel = f"{name}/{part}_{i:03d}.png"
                _draw(name, rng).save(osp.join(staging, "images", rel))
                split[part].append([rel, label, name.replace("_", " ")])
    with open(osp.join(staging, DEMO_SPLIT_FILE), "w") as f:
        json.dump(split, f)
    try:
        os.replace(staging, folder)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Demo dataset written to {folder}")
    return folder


@DATASET_REGISTRY.register()
class DemoShapes(DatasetBase):
    """Four coloured shapes; split file in CoOp's format (relative path, label, class name)."""

    dataset_dir = DEMO_DIR_NAME

    def __init__(self, cfg):
        folder = ensure_demo_dataset(osp.abspath(osp.expanduser(cfg.DATASET.ROOT)))
        with open(osp.join(folder, DEMO_SPLIT_FILE)) as f:
            split = json.load(f)

        def items(part):
            return [Datum(impath=osp.join(folder, "images", rel), label=int(label), classname=name)
                    for rel, label, name in split[part]]

        super().__init__(train_x=items("train"), val=items("val"), test=items("test"))


def demo_options(trainer: str, output_dir: str | None) -> list[str]:
    """Config overrides (``KEY VALUE`` pairs) of the demo run."""
    opts = [
        "DATASET.NAME", "DemoShapes",
        "DATASET.ROOT", cache_root(),
        "MODEL.BACKBONE.NAME", "tiny-vit",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.02", "OPTIM.MAX_EPOCH", "4", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "1e-3",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.TEST.BATCH_SIZE", "32", "DATALOADER.NUM_WORKERS", "0",
        "TRAIN.PRINT_FREQ", "4", "TEST.FINAL_MODEL", "last_step",
        "INPUT.TRANSFORMS", "('random_flip', 'normalize')",
        "INPUT.PIXEL_MEAN", "[0.48145466, 0.4578275, 0.40821073]",
        "INPUT.PIXEL_STD", "[0.26862954, 0.26130258, 0.27577711]",
    ]
    if output_dir is None:  # a fresh folder per demo run, so a rerun never meets a finished run
        opts += ["OUTPUT_DIR", osp.join("output", "demo", trainer, time.strftime("%Y%m%d-%H%M%S"))]
    return opts
