"""Running a sweep's runs: one after another, or on a local pool of GPUs (one run per GPU at a time).

Every runner goes through :func:`execute`: a finished run is skipped (its folder says so), a run whose training
run is not finished is blocked, anything else is started as ``PYTHON train.py ARGS`` in the repository root (an
unfinished training run then resumes from its newest checkpoint, inside train.py). A failed run is recorded and
reported; the others go on. Slurm jobs (clipbayes/sweep/slurm.py) run chains of runs through the same function.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

from clipbayes.sweep.expand import Run
from clipbayes.sweep.status import StateStore, is_finished

POLL_SECONDS = 0.5


@dataclass
class Sweep:
    """The expanded runs and where they run: ``repo`` holds train.py and configs/, ``output`` is the output root
    (relative to ``repo`` or absolute), ``python`` the interpreter that runs train.py."""

    runs: list
    repo: str
    output: str
    python: str = sys.executable

    @property
    def store(self) -> StateStore:
        return StateStore(self.output, self.repo)

    def command(self, run: Run) -> list[str]:
        return [self.python, "train.py", *run.args]

    def by_key(self) -> dict:
        return {run.key: run for run in self.runs}


def shell_line(command: list[str], env: Optional[dict] = None) -> str:
    prefix = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items())
    return (prefix + " " if prefix else "") + " ".join(shlex.quote(part) for part in command)


def blocker(sweep: Sweep, run: Run) -> Optional[str]:
    """Why ``run`` cannot start yet (its training run is not finished), or None."""
    if run.needs is None:
        return None
    needed = sweep.by_key().get(run.needs)
    finished = is_finished(needed, sweep.repo) if needed else False
    return None if finished else f"its model {run.needs} is not trained (epoch {run.epochs})"


def start(sweep: Sweep, run: Run, device: Optional[str] = None, log: Optional[str] = None):
    """Start ``run``; return (process, log handle or None). The run is recorded as running."""
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    handle = None
    if log is not None:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        handle = open(log, "a")
    process = subprocess.Popen(sweep.command(run), cwd=sweep.repo, env=env, stdout=handle,
                               stderr=subprocess.STDOUT if handle else None)
    sweep.store.write(run, "running", pid=process.pid, device=device, log=log)
    return process, handle


def finish(sweep: Sweep, run: Run, returncode: int, device: Optional[str] = None, log: Optional[str] = None) -> str:
    """Record how ``run`` ended; return "done" or "failed"."""
    if returncode == 0 and is_finished(run, sweep.repo):
        sweep.store.write(run, "done", returncode=0, device=device, log=log)
        return "done"
    sweep.store.write(run, "failed", returncode=returncode, device=device, log=log)
    where = f"; its output: {log}" if log else f"; its log: {run.output_dir}/log.txt"
    reason = "exited without its result" if returncode == 0 else f"failed (exit status {returncode})"
    print(f"[sweep] {run.key} {reason}{where}", file=sys.stderr, flush=True)
    return "failed"


def execute(sweep: Sweep, run: Run, device: Optional[str] = None, log: Optional[str] = None) -> str:
    """Run ``run`` to its end unless finished or blocked; return "skipped", "blocked", "done" or "failed"."""
    if is_finished(run, sweep.repo):
        print(f"[sweep] {run.key}: finished, skipped", flush=True)
        return "skipped"
    reason = blocker(sweep, run)
    if reason:
        sweep.store.write(run, "blocked", reason=reason)
        print(f"[sweep] {run.key}: not run, {reason}", file=sys.stderr, flush=True)
        return "blocked"
    print(f"[sweep] {run.key}: {shell_line(sweep.command(run))}", flush=True)
    process, handle = start(sweep, run, device, log)
    try:
        returncode = process.wait()
    finally:  # interrupted (Ctrl-C, a Slurm preemption signal): stop the run, it resumes when started again
        if process.poll() is None:
            process.terminate()
            process.wait()
        if handle is not None:
            handle.close()
    return finish(sweep, run, returncode, device, log)


def run_local(sweep: Sweep) -> dict:
    """One run after another, in the order of the description; outcome per run key."""
    return {run.key: execute(sweep, run) for run in sweep.runs}


def run_pool(sweep: Sweep, devices: list[str]) -> dict:
    """``len(devices)`` runs at a time, each with ``CUDA_VISIBLE_DEVICES`` set to its own device id; a test run
    starts once its training run is done; the output of each run goes to ``OUTPUT/.sweep/logs/<run>.log``."""
    if not devices:
        raise ValueError("The GPU pool needs at least one device id (--gpus 0,1,...)")
    outcomes: dict = {}
    waiting = list(sweep.runs)
    busy: dict = {}  # device -> (run, process, handle, log)
    keys = sweep.by_key()
    while waiting or busy:
        for device, (run, process, handle, log) in list(busy.items()):
            if process.poll() is not None:
                handle.close()
                del busy[device]
                outcomes[run.key] = finish(sweep, run, process.returncode, device, log)
        for run in list(waiting):
            if is_finished(run, sweep.repo):
                print(f"[sweep] {run.key}: finished, skipped", flush=True)
                outcomes[run.key] = "skipped"
                waiting.remove(run)
            elif run.needs and (outcomes.get(run.needs) in ("failed", "blocked")
                                or (run.needs not in keys and blocker(sweep, run))):
                outcomes[run.key] = execute(sweep, run)  # records and reports the blocked run
                waiting.remove(run)
        for device in [d for d in devices if d not in busy]:
            ready = next((r for r in waiting if not blocker(sweep, r)), None)
            if ready is None:
                break
            waiting.remove(ready)
            log = sweep.store.log_path(ready)
            print(f"[sweep] {ready.key} on device {device}: "
                  f"{shell_line(sweep.command(ready), {'CUDA_VISIBLE_DEVICES': device})} > {log}", flush=True)
            process, handle = start(sweep, ready, device, log)
            busy[device] = (ready, process, handle, log)
        if busy:
            time.sleep(POLL_SECONDS)
        elif waiting and all(r.needs in keys and outcomes.get(r.needs) is None for r in waiting):
            raise RuntimeError(f"Runs wait for training runs that never start: {[r.key for r in waiting]}")
    return outcomes
