"""Pre-training captions of the toy world.

A full caption names the class through one of ``TEMPLATES``; with probability ``PARTIAL_P`` an image gets a
partial caption naming only its colour or only its shape. A caption *describes* an image when it names the
image's class (full), its colour (colour-only) or its shape (shape-only); the contrastive loss masks every
describing pair other than the image's own caption, since those are not negatives.
"""
from __future__ import annotations

import random
from typing import List, NamedTuple

import torch

from clipbayes.toyworld.world import COLOUR_NAMES, NUM_CLASSES, SHAPES, class_name, colour_of, shape_of

TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.", "an image of the {}.", "the {}.",
             "a rendering of a {}.", "a close-up photo of a {}.", "there is a {} in the picture.")
COLOUR_TEMPLATES = ("a {} object.", "something {}.", "a photo of a {} thing.")
SHAPE_TEMPLATES = ("a {}.", "a photo of a {}.", "a {} shape.")
PARTIAL_P = 0.1

FULL, COLOUR_ONLY, SHAPE_ONLY = 0, 1, 2


class Caption(NamedTuple):
    text: str
    kind: int  # FULL, COLOUR_ONLY or SHAPE_ONLY
    value: int  # class label, colour index or shape index


def all_captions() -> List[Caption]:
    """Every caption of the world, in a fixed order (full captions of all classes, then the partial ones)."""
    captions = [Caption(t.format(class_name(label)), FULL, label) for label in range(NUM_CLASSES) for t in TEMPLATES]
    captions += [Caption(t.format(name), COLOUR_ONLY, c) for c, name in enumerate(COLOUR_NAMES)
                 for t in COLOUR_TEMPLATES]
    captions += [Caption(t.format(name), SHAPE_ONLY, s) for s, name in enumerate(SHAPES) for t in SHAPE_TEMPLATES]
    return captions


class CaptionSampler:
    """Draws a caption index (into :func:`all_captions`) for an image label, and says which captions describe it."""

    def __init__(self):
        self.captions = all_captions()
        index = {}
        for i, caption in enumerate(self.captions):
            index.setdefault((caption.kind, caption.value), []).append(i)
        self._index = index
        self.kinds = torch.tensor([c.kind for c in self.captions])
        self.values = torch.tensor([c.value for c in self.captions])

    def sample(self, label: int, rng: random.Random) -> int:
        if rng.random() < PARTIAL_P:
            key = (COLOUR_ONLY, colour_of(label)) if rng.random() < 0.5 else (SHAPE_ONLY, shape_of(label))
        else:
            key = (FULL, label)
        return rng.choice(self._index[key])

    def describes(self, labels: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
        """(B, B) bool: caption ``caption_ids[j]`` describes the image of ``labels[i]``."""
        kinds, values = self.kinds[caption_ids][None, :], self.values[caption_ids][None, :]
        labels = labels[:, None]
        n_colours = len(COLOUR_NAMES)
        return (((kinds == FULL) & (values == labels))
                | ((kinds == COLOUR_ONLY) & (values == labels % n_colours))
                | ((kinds == SHAPE_ONLY) & (values == labels // n_colours)))
