"""Where each run of a sweep stands: done, running, failed or pending.

"Done" is read from the run's folder, with the rule of ``scripts/common.sh``: a training run is done when a
``DIR/*/model.pth.tar-<epochs>`` exists, a test or eval-only run when one of its ``log.txt*`` has a
``* accuracy:`` line. The runners record the rest in one small json file per run under
``OUTPUT/.sweep/state/`` (written atomically): ``{"state": "running"|"failed"|"done", "host", "pid", "job",
"device", "returncode", "log", "time"}``. A "running" record of a process that is gone (same host) is reported
as failed (interrupted); a run with no record and no result is pending.
"""
from __future__ import annotations

import glob
import json
import os
import os.path as osp
import re
import socket
import time

from tabulate import tabulate

from clipbayes.fileio import atomic_write
from clipbayes.sweep.expand import Run

STATES = ("done", "running", "failed", "pending")
_RESULT_RE = re.compile(r"^\* accuracy:", re.MULTILINE)


def absolute(path: str, repo: str) -> str:
    return path if osp.isabs(path) else osp.join(repo, path)


def is_finished(run: Run, repo: str) -> bool:
    folder = absolute(run.output_dir, repo)
    if run.kind == "train":
        return bool(glob.glob(osp.join(folder, "*", f"model.pth.tar-{run.epochs}")))
    return is_evaluated(folder)


def is_evaluated(folder: str) -> bool:
    for path in glob.glob(osp.join(folder, "log.txt*")):
        with open(path, errors="replace") as f:
            if _RESULT_RE.search(f.read()):
                return True
    return False


class StateStore:
    """The per-run records of a sweep, under ``OUTPUT/.sweep/``."""

    def __init__(self, output: str, repo: str):
        self.output = absolute(output, repo)
        self.repo = repo
        self.root = osp.join(self.output, ".sweep")

    def name(self, run: Run) -> str:
        """``base2new/train_base/dtd/.../seed1`` -> ``base2new+train_base+dtd+...+seed1`` (no ``seed<N>``
        folders under .sweep, so the results scan ignores it)."""
        return osp.relpath(absolute(run.output_dir, self.repo), self.output).replace(os.sep, "+")

    def path(self, run: Run) -> str:
        return osp.join(self.root, "state", self.name(run) + ".json")

    def log_path(self, run: Run) -> str:
        return osp.join(self.root, "logs", self.name(run) + ".log")

    def read(self, run: Run) -> dict:
        try:
            with open(self.path(run)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def write(self, run: Run, state: str, **fields) -> None:
        record = {"state": state, "host": socket.gethostname(), "pid": os.getpid(),
                  "job": os.environ.get("SLURM_JOB_ID"), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **fields}
        atomic_write(self.path(run), lambda f: f.write(json.dumps(record, indent=1)), binary=False)

    def state(self, run: Run) -> tuple[str, str]:
        """(one of STATES, a detail for the status table)."""
        if is_finished(run, self.repo):
            return "done", ""
        record = self.read(run)
        if record.get("state") == "running":
            where = f"on {record.get('host')}" + (f", job {record['job']}" if record.get("job") else "")
            if record.get("host") == socket.gethostname() and not _alive(record.get("pid")):
                return "failed", f"interrupted (process {record.get('pid')} is gone), since {record.get('time')}"
            return "running", f"{where} since {record.get('time')}"
        if record.get("state") == "failed":
            return "failed", f"exit status {record.get('returncode')}; {record.get('log') or run.output_dir}"
        if record.get("state") == "blocked":
            return "pending", f"blocked: {record.get('reason')}"
        if run.kind == "train" and glob.glob(osp.join(absolute(run.output_dir, self.repo), "*", "checkpoint")):
            return "pending", "unfinished: resumes from its newest checkpoint"
        return "pending", f"waits for {run.needs}" if run.needs else ""


def _alive(pid) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def status_table(runs: list[Run], store: StateStore) -> tuple[str, dict]:
    """The table of every run's state and the count per state."""
    rows, counts = [], dict.fromkeys(STATES, 0)
    for run in runs:
        state, detail = store.state(run)
        counts[state] += 1
        rows.append([state, run.kind, osp.relpath(absolute(run.output_dir, store.repo), store.output), detail])
    table = tabulate(rows, headers=["state", "kind", "run", "detail"], tablefmt="simple")
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES)
    return f"{table}\n{len(runs)} runs: {summary}", counts
