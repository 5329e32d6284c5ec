"""What a run tells the person watching it: progress bars that close at 100%, and short progress lines.

* :func:`bar`: one tqdm bar per phase (image features of a split, of the training set), only on the main process
  and only when standard error is a terminal (tqdm's ``disable=None``): nothing when the output goes to a file.
  The bar owns the loop, so it reaches its total before it closes.
* :func:`report`: a line for the run's log (standard output, which Dassl copies into log.txt) that is also sent to
  every console registered with :func:`shown_on` (the toy-world demo hides each run's own output and shows only
  these lines: one per epoch, and the resume notice).
* :class:`EpochClock`: the per-epoch line, ``epoch 3/10: loss 1.2345, 0:00:12 elapsed, ~0:00:28 left``.
"""
from __future__ import annotations

import contextlib
import datetime
import shutil
import sys
import time
from typing import IO, Iterable

from tqdm import tqdm

_CONSOLES: list[tuple[IO, str]] = []  # (stream, prefix) shown every report() line


def bar(iterable: Iterable, desc: str, total: int | None = None, show: bool = True):
    """A tqdm bar over ``iterable`` (disabled unless ``show`` and standard error is a terminal), sized to the
    terminal (80 x 24 when it reports no size: tqdm would draw empty lines)."""
    columns, lines = shutil.get_terminal_size()
    return tqdm(iterable, desc=desc, total=total, disable=None if show else True, ncols=columns, nrows=lines)


def report(line: str) -> None:
    """Print ``line`` (into the run's log) and show it on every console registered with :func:`shown_on`."""
    print(line, flush=True)
    for stream, prefix in _CONSOLES:
        print(f"{prefix}{line}", file=stream, flush=True)


@contextlib.contextmanager
def shown_on(stream: IO | None = None, prefix: str = ""):
    """Within the block, :func:`report` lines also go to ``stream`` (default: the current standard output),
    each preceded by ``prefix``."""
    entry = (stream or sys.stdout, prefix)
    _CONSOLES.append(entry)
    try:
        yield
    finally:
        _CONSOLES.remove(entry)


def clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


class EpochClock:
    """Elapsed and estimated remaining time of a training run, from the epochs finished so far in this process."""

    def __init__(self, start_epoch: int, max_epoch: int):
        self.start_epoch, self.max_epoch = start_epoch, max_epoch
        self.started = time.monotonic()

    def line(self, epoch: int, loss: float | None) -> str:
        """The line after epoch ``epoch`` (0-based) with the epoch's mean loss."""
        done = epoch + 1 - self.start_epoch
        elapsed = time.monotonic() - self.started
        left = elapsed / max(done, 1) * (self.max_epoch - epoch - 1)
        loss_text = f"loss {loss:.4f}, " if loss is not None else ""
        return f"epoch {epoch + 1}/{self.max_epoch}: {loss_text}{clock(elapsed)} elapsed, ~{clock(left)} left"
