"""What a training run spent: optimiser steps, training images and text sequences through the text encoder.

The trainer counts them over its training epochs (evaluation is not counted) and writes one line to its log when
training ends::

    Training budget: 250 optimiser steps, 8000 training images, 12500 text sequences encoded (epochs 1-10)

Images are global (every process's batch under ``torchrun``); text sequences are this process's, every pass of
every text encoder in the model (the learner's prompts, Monte Carlo copies, per-image prompts, a sampler's
reference passes). A resumed run counts the epochs it ran, and its line says which. :func:`read_budget` reads the
line back (the toy world's budget report).
"""
from __future__ import annotations

import re
from typing import NamedTuple, Optional

from torch import nn

from clipbayes.logfiles import log_files

LINE = re.compile(r"^Training budget: (\d+) optimiser steps, (\d+) training images, (\d+) text sequences encoded "
                  r"\(epochs (\d+)-(\d+)\)$", re.M)


class Budget(NamedTuple):
    steps: int
    images: int
    text_sequences: int
    first_epoch: int
    last_epoch: int


class BudgetMeter:
    """Counts steps and images (:meth:`step`) and, while :attr:`counting`, the sequences (rows of the input) of
    every forward pass of the text encoders of ``model`` (``modeling.text.TextEncoder``)."""

    def __init__(self, model: nn.Module):
        from clipbayes.modeling.text import TextEncoder

        self.steps = self.images = self.text_sequences = 0
        self.counting = False
        encoders = {id(m): m for m in model.modules() if isinstance(m, TextEncoder)}
        self.handles = [encoder.register_forward_pre_hook(self._count) for encoder in encoders.values()]

    def _count(self, module, args) -> None:
        if self.counting and args:
            self.text_sequences += int(args[0].shape[0])

    def step(self, images: int) -> None:
        self.steps += 1
        self.images += images

    def line(self, first_epoch: int, last_epoch: int) -> str:
        return (f"Training budget: {self.steps} optimiser steps, {self.images} training images, "
                f"{self.text_sequences} text sequences encoded (epochs {first_epoch}-{last_epoch})")

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def read_budget(run_dir: str) -> Optional[Budget]:
    """The budget line of the newest log of ``run_dir`` that has one (None when no log has: an untrained method or
    a run that has not finished training)."""
    for path in log_files(run_dir):
        with open(path, errors="replace") as handle:
            found = LINE.findall(handle.read())
        if found:
            return Budget(*map(int, found[-1]))
    return None
