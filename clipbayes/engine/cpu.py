"""CPU defaults for a machine that other programs use too: torch's thread count, and denormal numbers.

Threads. torch starts one intra-op thread per usable CPU. When another process keeps some of those CPUs busy, a
thread that loses its CPU holds up every parallel region at its barrier, and a run can become several times
slower than with fewer threads (measured in docs/benchmarks.md, "CPU threads"). The policy:

    threads = clamp(U - floor(b + 1/4), 1, U)

with U the CPUs this process may use (its affinity mask, capped by a cgroup CPU quota) and b the CPUs' worth of
work other processes did on them: over a 0.2 s sample when the run starts, then over each epoch (no sleep: from
the CPU time the machine and this process spent since the last look, ``/proc/stat``). A CPU is given up when it is
at least 3/4 busy elsewhere, so short bursts of other work do not move the count. ``--threads N`` or
``OMP_NUM_THREADS`` fix the count instead; every choice and change is logged.

Denormals. Float32 values below 1.2e-38 take a slow path on x86 CPUs; gradients of near-certain predictions reach
them (a CoCoOp step on the toy world was 6x slower). They are flushed to zero on CPU runs (``--keep-denormals``
keeps them: IEEE arithmetic bit for bit).
"""
from __future__ import annotations

import math
import os
import time

import torch

SAMPLE_S = 0.2  # the first look at the machine's load


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota when one is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the CPUs this process may use since boot, from /proc/stat (None elsewhere)."""
    try:
        allowed = os.sched_getaffinity(0)
        with open("/proc/stat") as handle:
            lines = handle.read().splitlines()
    except (AttributeError, OSError):
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in allowed:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy += user + nice + system + irq + softirq + steal  # steal: CPU time the hypervisor gave elsewhere
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return (busy, total) if total else None


class LoadProbe:
    """The CPUs' worth of work that other processes did on this process's CPUs since the previous look."""

    def __init__(self):
        self._ticks = _cpu_ticks()
        self._own = time.process_time()
        self._wall = time.monotonic()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @property
    def available(self) -> bool:
        return self._ticks is not None

    def busy_elsewhere(self) -> float:
        ticks, own, wall = _cpu_ticks(), time.process_time(), time.monotonic()
        if ticks is None or self._ticks is None or wall <= self._wall:
            return 0.0
        machine = (ticks[0] - self._ticks[0]) / self._hz
        others = (machine - (own - self._own)) / (wall - self._wall)
        self._ticks, self._own, self._wall = ticks, own, wall
        return max(0.0, others)


class ThreadPolicy:
    """torch's intra-op thread count for this process: fixed (``--threads``, ``OMP_NUM_THREADS``) or following the
    machine's load (module docstring). One instance per process (:func:`policy`)."""

    def __init__(self, requested: int | None = None):
        self.cpus = usable_cpus()
        from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
        self.fixed_by = ""
        if requested:
            self.fixed_by, fixed = "--threads", requested
        elif from_env.isdigit() and int(from_env) > 0:
            self.fixed_by, fixed = "OMP_NUM_THREADS", int(from_env)
        self.probe = LoadProbe()
        if self.fixed_by:
            self.threads, self.reason = fixed, f"{self.fixed_by}={fixed}"
        elif not self.probe.available:
            self.threads, self.reason = self.cpus, f"{self.cpus} usable CPUs (their load cannot be read here)"
        else:
            time.sleep(SAMPLE_S)
            self.threads, self.reason = self._choose(self.probe.busy_elsewhere())
        torch.set_num_threads(self.threads)

    def _choose(self, busy: float) -> tuple[int, str]:
        threads = min(self.cpus, max(1, self.cpus - math.floor(busy + 0.25)))
        return threads, f"{self.cpus} usable CPUs, {busy:.1f} busy with other processes"

    def update(self) -> str | None:
        """Follow the load since the last look (e.g. once per epoch); a log line when the count changed."""
        if self.fixed_by or not self.probe.available:
            return None
        threads, reason = self._choose(self.probe.busy_elsewhere())
        if threads == self.threads:
            return None
        previous, self.threads, self.reason = self.threads, threads, reason
        torch.set_num_threads(threads)
        return f"CPU threads: {previous} -> {threads} ({reason})"

    def describe(self) -> str:
        how = ("" if self.fixed_by else "; set --threads N or OMP_NUM_THREADS to fix it, "
               "it follows the load of the machine otherwise")
        return f"CPU threads: {self.threads} ({self.reason}{how})"


_POLICY: ThreadPolicy | None = None


def policy() -> ThreadPolicy | None:
    """The process's thread policy (None before :func:`configure`)."""
    return _POLICY


def configure(requested_threads: int | None = None, keep_denormals: bool = False) -> ThreadPolicy:
    """Set this process's CPU defaults once (later calls with the same request keep the first policy)."""
    global _POLICY
    if _POLICY is None or (requested_threads and requested_threads != _POLICY.threads):
        _POLICY = ThreadPolicy(requested_threads)
    torch.set_flush_denormal(not keep_denormals)
    return _POLICY
