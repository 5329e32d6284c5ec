"""Timers, the statistic of repeated timings, and the peak-memory counters (CUDA allocator, CPU peak RSS)."""
from __future__ import annotations

import resource
import statistics
import time

import torch

STATISTICS = {"median": lambda xs: statistics.median(list(xs)), "min": lambda xs: min(xs)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn, device: torch.device) -> float:
    """Seconds of ``fn()``, the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (``getrusage`` ru_maxrss; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class CudaPeak:
    """Peak CUDA memory of a phase above the allocation at its start (``start()``, then ``mib()``); None on a
    CPU."""

    def __init__(self, device: torch.device):
        self.device, self.base = device, 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)

    def mib(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
