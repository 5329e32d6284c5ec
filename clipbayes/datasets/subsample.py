"""Base-to-new class halves (``DATASET.SUBSAMPLE_CLASSES``), as in CoCoOp's protocol.

The labels present in the first list given (train) are sorted; the first ``ceil(n / 2)`` are the *base*
classes, the rest the *new* classes. ``base`` / ``new`` keep only the images of that half in every list and
renumber its labels from 0 in sorted order; ``all`` returns the lists unchanged.
"""
from __future__ import annotations

import math
from typing import List, Sequence

from clipbayes.compat import import_dassl

import_dassl()
from dassl.data.datasets import Datum  # noqa: E402

from .cache import log  # noqa: E402

CHOICES = ("all", "base", "new")


def class_halves(labels) -> tuple:
    """(base labels, new labels) of a collection of labels."""
    ordered = sorted(set(labels))
    cut = math.ceil(len(ordered) / 2)
    return ordered[:cut], ordered[cut:]


def subsample_classes(*splits: Sequence, subsample: str = "all") -> List[List]:
    """Keep the ``subsample`` half of the classes in each of ``splits`` (lists of ``Datum``), relabelled."""
    if subsample not in CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {CHOICES}, got {subsample!r}")
    if subsample == "all":
        return list(splits)
    base, new = class_halves(d.label for d in splits[0])
    kept = base if subsample == "base" else new
    relabel = {old: new_label for new_label, old in enumerate(kept)}
    log(f"SUBSAMPLE {subsample.upper()} CLASSES: {len(kept)} of {len(base) + len(new)} classes")
    out = []
    for split in splits:
        out.append([Datum(impath=d.impath, label=relabel[d.label], domain=d.domain, classname=d.classname)
                    for d in split if d.label in relabel])
    return out
