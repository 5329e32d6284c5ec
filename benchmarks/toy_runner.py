"""Running many toy-world protocol runs side by side, and timing them: shared by benchmarks/toy_protocols.py and
benchmarks/toy_sensitivity.py.

A :class:`Task` is one (trainer, seed) of the protocol (clipbayes/toyworld/protocol.py) with its options and the
config folder of its runs. :func:`run_tasks` reads finished tasks back and runs the others, in this process
(``jobs`` 1) or in ``jobs`` spawned processes of ``threads`` torch threads each, the longest first; the numbers
do not depend on how many processes run them (each run is single-process and seeded).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import os.path as osp
import sys
import time
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from clipbayes.toyworld.protocol import RUNS, VALIDATION_RUNS, run_protocol, runs_finished  # noqa: E402

ZERO_SHOT = "ZeroshotCLIP"
# Seconds per (row, seed) of benchmarks/toy_protocols.py with the shift run, one torch thread, two processes on a
# 2-core machine (its timing line in docs/toyworld.md): the order in which runs are handed to the processes
# (longest first) and the time estimates printed before a sweep. Rows not listed take DEFAULT_SECONDS.
SECONDS_PER_SEED = {"CoCoOp": 196, "PBPrompt": 117, "BayesianPrompt": 58, "ReBaPL (MaPLe)": 40,
                    "LogitPrior (MaPLe)": 37, "APEX": 35, "IVLP": 30, "MaPLe": 29, "ReBaPL": 25, "DualViewPrompt": 23,
                    "DeepVPT": 22, "CoOp": 20, "LogitPrior": 20, ZERO_SHOT: 8}
DEFAULT_SECONDS = 30


class Task(NamedTuple):
    """One (trainer, seed) of the protocol: ``name`` (the row it belongs to), ``options`` (``KEY VALUE`` after the
    budget rule's), the toy CLIP ``backbone`` (None: the trainer's), the runs' config folder ``label`` (None: the
    backbone's), and whether it adds the validation runs; ``cost``: the factor on the row's seconds per seed."""

    name: str
    trainer: str
    seed: int
    options: tuple = ()
    backbone: str | None = None
    label: str | None = None
    with_validation: bool = False
    cost: float = 1.0

    def finished(self, root: str) -> bool:
        from clipbayes.toyworld.protocol import BACKBONE_LABELS, toy_backbone

        label = self.label or BACKBONE_LABELS[self.backbone or toy_backbone(self.trainer)]
        return runs_finished(root, self.trainer, self.seed, label, RUNS + (VALIDATION_RUNS if self.with_validation
                                                                             else ()))

    @property
    def expected_seconds(self) -> float:
        return self.cost * SECONDS_PER_SEED.get(self.name, DEFAULT_SECONDS)


def run_task(task: Task, root: str, threads: int = 0):
    """Run (or read back) ``task`` under ``root`` in this process: (accuracies, seconds). ``threads`` fixes the
    torch threads (the engine's CPU policy reads OMP_NUM_THREADS; clipbayes/engine/cpu.py)."""
    from clipbayes.cli import run

    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    started = time.time()
    accuracies = run_protocol(task.trainer, task.seed, root, run, list(task.options), quiet=True,
                              backbone=task.backbone, label=task.label, with_validation=task.with_validation)
    return accuracies, time.time() - started


def run_tasks(tasks, root: str, jobs: int = 1, threads: int = 0, report=None):
    """{task: accuracies} and {task: seconds} of the tasks run here (finished ones are read back and get no time).
    With ``jobs`` > 1 the zero-shot tasks run first in this process (they render the toy world's datasets), the
    others in ``jobs`` spawned processes, the longest (:attr:`Task.expected_seconds`) first. ``report(task, acc,
    seconds)`` is called as each task ends (seconds 0 when read back)."""
    results, seconds, pending = {}, {}, []
    report = report or (lambda task, acc, s: None)
    for task in tasks:
        done = task.finished(root)
        if done or jobs == 1 or task.trainer == ZERO_SHOT:
            results[task], elapsed = run_task(task, root, threads)
            if not done:
                seconds[task] = elapsed
            report(task, results[task], seconds.get(task, 0.0))
        else:
            pending.append(task)
    if pending:
        pending.sort(key=lambda task: -task.expected_seconds)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(run_task, task, root, threads): task for task in pending}
            for future in concurrent.futures.as_completed(futures):
                task = futures[future]
                results[task], seconds[task] = future.result()
                report(task, results[task], seconds[task])
    return results, seconds


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the ``--jobs`` workers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def timing_line(what: str, runs: int, seconds: dict, started: float, cpu_started: float, load_start: float,
                jobs: int = 1, threads: int = 0) -> str:
    """The table's footer: how many of ``runs`` (row, seed) ran here (``seconds``: {(row, seed): s}) or were read
    back, wall and CPU time (:func:`cpu_seconds`) since ``started`` / ``cpu_started``, processes, threads, load,
    and the mean seconds per seed of each row run here."""
    rows = list(dict.fromkeys(name for name, _ in seconds))
    per_row = ", ".join(f"{name} {np.mean([t for (n, _), t in seconds.items() if n == name]):.0f}" for name in rows)
    wall, cpu = (time.time() - started) / 60, (cpu_seconds() - cpu_started) / 60
    threads = threads or torch.get_num_threads()
    return (f"\n{what}: {len(seconds)} (row, seed) run in this invocation, {runs - len(seconds)} read back from "
            f"earlier runs; {wall:.1f} min wall, {cpu:.1f} min CPU ({jobs} process{'es' if jobs > 1 else ''} of "
            f"{threads} torch thread{'s' if threads > 1 else ''}); 1-minute load "
            f"average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. Seconds per seed (with "
            f"the shift run): {per_row or 'none run'}.\n")
