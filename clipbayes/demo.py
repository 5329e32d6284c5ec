"""The embedded demo: ``python train.py --trainer NAME`` with no dataset and no config file.

It runs the toy-world protocol (:mod:`clipbayes.toyworld.protocol`) for the trainer and for zero-shot CLIP on the
shipped toy CLIP ("toyclip", pre-trained on the procedural world of :mod:`clipbayes.toyworld`): train on 16
dusk-style shots of the 50 base classes, test on the base and the 50 new classes, and print base, new and
harmonic-mean accuracy beside zero-shot CLIP's, in under a minute on a laptop CPU. The world is rendered once
into ``$CLIPBAYES_CACHE`` (default ``~/.cache/clipbayes``). See docs/toyworld.md.

This module also keeps ``DemoShapes``, a 4-class synthetic dataset in CoOp's format that the tests use with a
random tiny CLIP (:func:`tiny_pipeline_options`) to check the train -> checkpoint -> test pipeline in seconds.
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
from clipbayes.engine import distributed as ddp
from clipbayes.toyworld import protocol

import_dassl()
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum  # noqa: E402

DEMO_DIR_NAME = "demo_shapes"
DEMO_SPLIT_FILE = "split_zhou_DemoShapes.json"
DEMO_CLASSES = ["red_square", "green_circle", "blue_triangle", "yellow_bar"]
_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
_PER_CLASS = {"train": 16, "val": 4, "test": 8}


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
    """Four coloured shapes; split file in CoOp's format (relative path, label, class name). An empty
    ``DATASET.ROOT`` means the cache folder (``$CLIPBAYES_CACHE``)."""

    dataset_dir = DEMO_DIR_NAME

    def __init__(self, cfg):
        folder = ensure_demo_dataset(osp.abspath(osp.expanduser(cfg.DATASET.ROOT or protocol.cache_root())))
        with open(osp.join(folder, DEMO_SPLIT_FILE)) as f:
            split = json.load(f)

        def items(part):
            return [Datum(impath=osp.join(folder, "images", rel), label=int(label), classname=name)
                    for rel, label, name in split[part]]

        super().__init__(train_x=items("train"), val=items("val"), test=items("test"))


def tiny_pipeline_options() -> list[str]:
    """Config overrides (``KEY VALUE`` pairs) of a seconds-long run on DemoShapes with a random tiny CLIP."""
    return [
        "DATASET.NAME", "DemoShapes",
        "MODEL.BACKBONE.NAME", "tiny-vit",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.02", "OPTIM.MAX_EPOCH", "4", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "1e-3",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.TEST.BATCH_SIZE", "32", "DATALOADER.NUM_WORKERS", "0",
        "TRAIN.PRINT_FREQ", "4", "TEST.FINAL_MODEL", "last_step",
        "INPUT.TRANSFORMS", "('random_flip', 'normalize')",
        "INPUT.PIXEL_MEAN", "[0.48145466, 0.4578275, 0.40821073]",
        "INPUT.PIXEL_STD", "[0.26862954, 0.26130258, 0.27577711]",
    ]


def run_demo(trainer: str, seed: int | None, output_dir: str | None, options: list[str], data_root: str | None,
             run_cli) -> dict:
    """The toy-world protocol of ``trainer`` and of zero-shot CLIP; prints and returns their accuracies.

    ``run_cli(argv)`` runs ``train.py``'s code; ``options`` (``KEY VALUE``) apply to the trainer's runs only. The
    runs sit in ``output_dir`` in the layout of CoOp's scripts (``python -m clipbayes.results`` reads it); a run
    finished there is read back, an unfinished one resumes. Under ``torchrun`` every process runs every run (in
    one process group) and rank 0 prints.
    """
    if ddp.launched_by_torchrun():
        ddp.init_from_env(use_cuda=True)
    seed = 1 if seed is None else seed
    output_dir = output_dir or ddp.from_main(
        lambda: osp.join("output", "demo", trainer, time.strftime("%Y%m%d-%H%M%S")))
    started = time.time()
    print(f"No dataset or config given: the embedded toy-world demo of {trainer} (seed {seed}): "
          f"{protocol.NUM_SHOTS} dusk-style shots of each of the 50 base classes, the shipped toy CLIP "
          f"({protocol.toy_backbone(trainer)}); runs in {output_dir}", flush=True)
    # the trainer first, so that a bad option fails before anything else has run; zero-shot CLIP on its toy CLIP
    backbone = protocol.toy_backbone(trainer)
    trained = protocol.run_protocol(trainer, seed, output_dir, run_cli, options, data_root=data_root, quiet=True,
                                    with_shift=False)
    zero_shot = trained if trainer == "ZeroshotCLIP" else protocol.run_protocol(
        "ZeroshotCLIP", seed, output_dir, run_cli, data_root=data_root, quiet=True, with_shift=False,
        backbone=backbone)
    rows = [("zero-shot CLIP", zero_shot)] + ([(trainer, trained)] if trainer != "ZeroshotCLIP" else [])
    width = max(len(name) for name, _ in rows)
    print(f"\n{'':{width}}   base    new     HM")
    for name, acc in rows:
        print(f"{name:{width}}  {acc['base']:5.1f}  {acc['new']:5.1f}  {acc['hm']:5.1f}")
    print(f"\nDemo finished in {time.time() - started:.0f} s. Accuracy (%) on the toy world (100 classes, chance 2% "
          f"among 50). benchmarks/toy_protocols.py adds 5 seeds and the shifted style; docs/toyworld.md says what "
          f"the toy world can and cannot tell about real CLIP.\n"
          f"Logs, checkpoints and metrics are in {output_dir}. Next:\n"
          f"  python -m clipbayes.results {output_dir} --calibration        # accuracy, ECE and NLL tables\n"
          f"  python -m clipbayes.results {output_dir} --plots {osp.join(output_dir, 'plots')}   "
          f"# reliability diagrams and more", flush=True)
    return {"zero_shot": zero_shot, trainer: trained}
