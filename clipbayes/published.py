"""Published numbers of CLIP prompt-learning methods, kept as data with the source of every number.

The results command (:mod:`clipbayes.results`) prints these beside our own numbers with ``--published``.
Everything here is ViT-B/16, 16 shots, mean over 3 seeds, as reported by the cited paper. A number that has no
reliable source is simply absent: lookups then return ``None`` and the table cell stays empty.

Each number is one :class:`Published` record. ``variant`` is ``None`` for the setting a paper reports as its main
result; ablations and re-runs carry a variant label and are never picked for a table cell (ask for them with
:func:`records`). Run ``python -m clipbayes.published`` to list everything with its source.

This module also defines the canonical dataset keys (CoOp's dataset-config names, e.g. ``fgvc_aircraft``), their
display names and paper order, because the records are keyed by them.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterator, Optional

# ---------------------------------------------------------------------------------------------------------------
# Datasets: canonical key (the name of CoOp's configs/datasets/<key>.yaml) -> display name, in the column order of
# CoCoOp's tables, then the four ImageNet variants used as domain-generalization targets.
DATASET_NAMES = {
    "imagenet": "ImageNet",
    "caltech101": "Caltech101",
    "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars",
    "oxford_flowers": "Flowers102",
    "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft",
    "sun397": "SUN397",
    "dtd": "DTD",
    "eurosat": "EuroSAT",
    "ucf101": "UCF101",
    "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A",
    "imagenet_r": "ImageNet-R",
}
DATASET_ORDER = list(DATASET_NAMES)

# ImageNet variants: evaluated with a model trained on ImageNet, reported as domain generalization.
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

# Other spellings met in folder names and papers (compared after lower-casing and dropping non-alphanumerics),
# including the Dassl class names that appear in logs.
_DATASET_ALIASES = {
    "oxfordpets": "oxford_pets",
    "pets": "oxford_pets",
    "stanfordcars": "stanford_cars",
    "cars": "stanford_cars",
    "oxfordflowers": "oxford_flowers",
    "flowers102": "oxford_flowers",
    "flowers": "oxford_flowers",
    "fgvcaircraft": "fgvc_aircraft",
    "aircraft": "fgvc_aircraft",
    "describabletextures": "dtd",
    "imagenetsketch": "imagenet_sketch",
    "imageneta": "imagenet_a",
    "imagenetadversarial": "imagenet_a",
    "imagenetr": "imagenet_r",
    "imagenetrendition": "imagenet_r",
}


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def canonical_dataset(name: str) -> str:
    """Map a dataset name as found in a folder or a paper to its canonical key; unknown names come back as given."""
    squashed = _squash(name)
    for key in DATASET_NAMES:
        if _squash(key) == squashed:
            return key
    return _DATASET_ALIASES.get(squashed, name)


def dataset_display(key: str) -> str:
    """Display name of a canonical dataset key (unknown keys are shown as they are)."""
    return DATASET_NAMES.get(key, key)


# ---------------------------------------------------------------------------------------------------------------
# Methods: published method name <- trainer names that stand for it (again compared squashed).
_METHOD_ALIASES = {
    "CLIP zero-shot": ("zeroshotclip", "zsclip", "clip", "clipzeroshot"),
    "CoOp": ("coop",),
    "CoCoOp": ("cocoop",),
    "ProDA": ("proda",),
    "ProGrad": ("prograd",),
    "KgCoOp": ("kgcoop",),
    "MaPLe": ("maple",),
    "PromptSRC": ("promptsrc",),
    "CoPrompt": ("coprompt",),
    "TCP": ("tcp",),
    "MMRL": ("mmrl",),
    "BayesianPrompt": ("bayesianprompt", "bayesianpromptlearning", "bpl"),
    "PBPrompt": ("pbprompt",),
    "DualViewPrompt": ("dualviewprompt", "e2mim"),
}


def method_for_trainer(trainer: str) -> Optional[str]:
    """The published method a trainer name stands for (``"ZeroshotCLIP"`` -> ``"CLIP zero-shot"``), or None."""
    squashed = _squash(trainer)
    for method, names in _METHOD_ALIASES.items():
        if squashed in names:
            return method
    return None


# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """One published number.

    protocol: ``"base2new"``, ``"dg"`` (ImageNet -> its four variants) or ``"xd"`` (cross-dataset transfer).
    dataset: a canonical dataset key, or ``"average"`` (the paper's own average row).
    quantity: ``"base"``, ``"new"``, ``"hm"`` (base-to-new), ``"accuracy"`` (dg / xd), or ``"gain_vs_cocoop"``
    (a paper that only states its improvement over CoCoOp; never shown as an accuracy).
    std: the +- the paper prints, if any. variant: None for the main setting, else what differs.
    """

    method: str
    protocol: str
    dataset: str
    quantity: str
    value: float
    source: str
    std: Optional[float] = None
    variant: Optional[str] = None


SRC_COCOOP_T1 = "CoCoOp (CVPR 2022) Table 1"
SRC_BPL_T1 = "BayesianPrompt (ICCV 2023; arXiv 2210.02390 v3) Table 1, new classes, conditional variant"
SRC_BPL_T4 = "BayesianPrompt (ICCV 2023; arXiv 2210.02390 v3) Table 4, new classes"
SRC_BPL_T6 = "BayesianPrompt (ICCV 2023; arXiv 2210.02390 v3) Table 6, new classes vs MC samples L"
SRC_BPL_DG = "BayesianPrompt (ICCV 2023; arXiv 2210.02390 v3), domain generalization (source ImageNet)"
SRC_PBPROMPT = "PBPrompt (UAI 2024)"
SRC_RERUN = "third-party rerun of the official BayesianPrompt code (unconditional); rerun not named in our sources"

_RECORDS: list[Published] = []


def _add(method, protocol, dataset, quantity, value, source, std=None, variant=None):
    _RECORDS.append(Published(method, protocol, dataset, quantity, value, source, std, variant))


# Base-to-new, average over the 11 datasets: (base, new, HM, source).
for _method, _b, _n, _h, _src in (
    ("CLIP zero-shot", 69.34, 74.22, 71.70, SRC_COCOOP_T1),
    ("CoOp", 82.69, 63.22, 71.66, SRC_COCOOP_T1),
    ("CoCoOp", 80.47, 71.69, 75.83, SRC_COCOOP_T1),
    ("ProGrad", 82.48, 70.75, 76.16, "ProGrad (ICCV 2023)"),
    ("KgCoOp", 80.73, 73.60, 77.00, "KgCoOp (CVPR 2023)"),
    ("MaPLe", 82.28, 75.14, 78.55, "MaPLe (CVPR 2023)"),
    ("PromptSRC", 84.26, 76.10, 79.97, "PromptSRC (ICCV 2023)"),
    ("CoPrompt", 84.00, 77.23, 80.48, "CoPrompt (ICLR 2024)"),
    ("TCP", 84.13, 75.36, 79.51, "TCP (CVPR 2024)"),
    ("MMRL", 85.68, 77.16, 81.20, "MMRL (CVPR 2025)"),
):
    _add(_method, "base2new", "average", "base", _b, _src)
    _add(_method, "base2new", "average", "new", _n, _src)
    _add(_method, "base2new", "average", "hm", _h, _src)

# BayesianPrompt Table 1: new-class accuracy per dataset. Columns CoOp, CoCoOp, ProDA, BayesianPrompt (value, std).
_BPL_TABLE1 = {
    "caltech101": (89.81, 93.81, 93.23, (94.93, 0.1)),
    "dtd": (41.18, 56.00, 56.48, (60.80, 0.5)),
    "eurosat": (54.74, 60.04, 66.00, (75.30, 0.7)),
    "fgvc_aircraft": (22.30, 23.71, 34.13, (35.00, 0.5)),
    "oxford_flowers": (59.67, 71.75, 68.68, (70.40, 1.8)),
    "food101": (82.26, 91.29, 88.57, (92.13, 0.1)),
    "imagenet": (67.88, 70.43, 70.23, (70.93, 0.1)),
    "oxford_pets": (95.29, 97.69, 97.83, (98.00, 0.1)),
    "stanford_cars": (60.40, 73.59, 71.20, (73.23, 0.2)),
    "sun397": (65.89, 76.86, 76.93, (77.87, 0.5)),
    "ucf101": (56.05, 73.45, 71.97, (75.77, 0.1)),
    # The CoOp and CoCoOp averages equal CoCoOp's Table 1 (recorded above, which lookups find first).
    "average": (63.22, 71.69, 72.30, (74.94, 0.2)),
}
for _dataset, (_coop, _cocoop, _proda, (_bpl, _bpl_std)) in _BPL_TABLE1.items():
    _add("CoOp", "base2new", _dataset, "new", _coop, SRC_BPL_T1)
    _add("CoCoOp", "base2new", _dataset, "new", _cocoop, SRC_BPL_T1)
    _add("ProDA", "base2new", _dataset, "new", _proda, SRC_BPL_T1)
    _add("BayesianPrompt", "base2new", _dataset, "new", _bpl, SRC_BPL_T1, std=_bpl_std)

# BayesianPrompt Table 4 (unconditional vs conditional) and Table 6 (MC samples L): ablations, kept as variants.
_ABLATION_DATASETS = ("dtd", "eurosat", "fgvc_aircraft", "oxford_flowers", "ucf101")
for _variant, _values, _src in (
    ("unconditional", (58.70, 71.63, 33.80, 75.90, 74.63), SRC_BPL_T4),
    ("conditional", (60.80, 75.30, 35.00, 70.40, 75.77), SRC_BPL_T4),
    ("L=1", (56.40, 64.50, 33.00, 72.30, 75.60), SRC_BPL_T6),
    ("L=2", (60.00, 67.40, 33.90, 73.90, 76.20), SRC_BPL_T6),
    ("L=5", (62.20, 71.00, 34.20, 74.00, 76.60), SRC_BPL_T6),
    ("L=10", (61.60, 73.60, 34.40, 73.50, 77.00), SRC_BPL_T6),
    ("L=20", (62.90, 74.80, 35.00, 74.00, 77.10), SRC_BPL_T6),
    ("L=40", (62.60, 76.10, 35.50, 73.80, 77.15), SRC_BPL_T6),
    ("L=80", (63.50, 76.20, 34.70, 74.20, 77.20), SRC_BPL_T6),
):
    for _dataset, _value in zip(_ABLATION_DATASETS, _values):
        _add("BayesianPrompt", "base2new", _dataset, "new", _value, _src, variant=_variant)

# The third-party rerun (FGVCAircraft, new classes, unconditional) that saw accuracy collapse at small L.
for _L, _value in ((1, 3.8), (2, 10.9), (5, 33.9), (10, 34.2)):
    _add("BayesianPrompt", "base2new", "fgvc_aircraft", "new", _value, SRC_RERUN,
         variant=f"unconditional, L={_L}, third-party rerun")

# Domain generalization, source ImageNet: V2, Sketch, A, R, average of the four.
for _method, _values in (
    ("CoOp", (64.20, 47.99, 49.71, 75.21, 59.27)),
    ("CoCoOp", (64.07, 48.75, 50.63, 76.18, 59.88)),
    ("BayesianPrompt", (64.23, 49.20, 51.33, 77.00, 60.44)),
):
    for _dataset, _value in zip(DG_TARGETS + ("average",), _values):
        _add(_method, "dg", _dataset, "accuracy", _value, SRC_BPL_DG)

# PBPrompt: only fragments are reliable. Base-to-new HM on two datasets (plus its ablation), and gains over CoCoOp.
_add("PBPrompt", "base2new", "dtd", "hm", 66.42, SRC_PBPROMPT)
_add("PBPrompt", "base2new", "caltech101", "hm", 96.74, SRC_PBPROMPT)
_add("PBPrompt", "base2new", "caltech101", "hm", 96.16, SRC_PBPROMPT + ", ablation", variant="generator only")
_add("PBPrompt", "base2new", "caltech101", "hm", 95.47, SRC_PBPROMPT + ", ablation", variant="transport only")
for _dataset, _gain in zip(DG_TARGETS, (0.46, 0.57, 1.01, 0.53)):
    _add("PBPrompt", "dg", _dataset, "gain_vs_cocoop", _gain, SRC_PBPROMPT)
_add("PBPrompt", "xd", "average", "gain_vs_cocoop", 0.66, SRC_PBPROMPT + ", average over 10 target datasets")

# How many datasets a published "average" row covers, per protocol.
PUBLISHED_AVERAGE_COVERS = {"base2new": 11, "dg": 4, "xd": 10}


def records(method: Optional[str] = None, protocol: Optional[str] = None, dataset: Optional[str] = None,
            quantity: Optional[str] = None, variant: Optional[str] = "any") -> Iterator[Published]:
    """All records matching the given fields (``None`` matches any, except ``variant``: pass ``None`` to get the
    main settings only; the default ``"any"`` matches every variant)."""
    for rec in _RECORDS:
        if method is not None and rec.method != method:
            continue
        if protocol is not None and rec.protocol != protocol:
            continue
        if dataset is not None and rec.dataset != dataset:
            continue
        if quantity is not None and rec.quantity != quantity:
            continue
        if variant != "any" and rec.variant != variant:
            continue
        yield rec


def lookup(method: str, protocol: str, dataset: str, quantity: str) -> Optional[Published]:
    """The main-setting number for one table cell, or None when no reliable source gives it."""
    return next(records(method, protocol, dataset, quantity, variant=None), None)


def main(argv: Optional[list] = None) -> int:
    """Print every record with its source (``python -m clipbayes.published [--format table|markdown|csv]``)."""
    import argparse

    from tabulate import tabulate

    parser = argparse.ArgumentParser(prog="python -m clipbayes.published", description=main.__doc__)
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    args = parser.parse_args(argv)
    headers = ["method", "protocol", "dataset", "quantity", "value", "std", "variant", "source"]
    rows = [[r.method, r.protocol, r.dataset, r.quantity, f"{r.value:.2f}", "" if r.std is None else f"{r.std:g}",
             r.variant or "", r.source] for r in _RECORDS]
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
    else:
        print(tabulate(rows, headers=headers, tablefmt="github" if args.format == "markdown" else "simple",
                       disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
