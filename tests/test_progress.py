"""What a run shows the person watching it, and its CPU defaults on a shared machine.

* The toy-world demo in a terminal (a pseudo-terminal, so tqdm draws its bars): every progress bar it draws
  reaches its total, and one line per epoch reports loss, elapsed and remaining time; with its output captured
  (not a terminal) it draws no bar at all.
* The CPU thread policy (clipbayes/engine/cpu.py): U - b threads for U usable CPUs of which b are busy elsewhere,
  at least 1; ``--threads`` and ``OMP_NUM_THREADS`` win; the load seen by the probe excludes the process's own work.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time

import pytest

from clipbayes.engine import cpu
from clipbayes.engine.progress import EpochClock
from support import ROOT, requires_dassl

BAR = re.compile(r"([A-Za-z][\w -]*?): +\d+%\|[^|\r\n]*\| (\d+)/(\d+) \[")


def run_in_terminal(argv, env, timeout=600) -> str:
    """Everything ``argv`` writes to a pseudo-terminal of 0 x 0 characters (as some terminals report)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def bars(text: str) -> list:
    """The bars drawn, in order, each as (description, [(n, total), ...]); a new bar starts when n goes back."""
    found = []
    for desc, n, total in BAR.findall(text):
        state = (int(n), int(total))
        if not found or found[-1][0] != desc or state[0] < found[-1][1][-1][0]:
            found.append((desc, [state]))
        else:
            found[-1][1].append(state)
    return found


@requires_dassl
def test_demo_bars_close_at_their_total_and_epochs_report_time_left(tmp_path):
    env = {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "TERM": "xterm"}
    text = run_in_terminal([sys.executable, "train.py", "--trainer", "CoOp", "--output-dir", str(tmp_path / "demo"),
                            "OPTIM.MAX_EPOCH", "2"], env)
    drawn = bars(text)
    assert drawn, "no progress bar was drawn in a terminal:\n" + text[-2000:]
    short = [(desc, states[-1]) for desc, states in drawn if states[-1][0] != states[-1][1]]
    assert not short, f"bars that stopped short of their total: {short}"
    assert {desc for desc, _ in drawn} >= {"test image features"}
    epochs = re.findall(r"CoOp train_base: epoch (\d)/2: loss [\d.]+, 0:00:\d\d elapsed, ~0:00:\d\d left", text)
    assert epochs == ["1", "2"], text[-2000:]
    assert re.search(r"^CoOp\s+[\d.]+\s+[\d.]+\s+[\d.]+\s*$", text, re.M)


@requires_dassl
def test_demo_draws_no_bar_when_its_output_is_not_a_terminal(tmp_path):
    env = {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", "--trainer", "ZeroshotCLIP", "--output-dir",
                           str(tmp_path / "demo")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Demo finished" in proc.stdout
    assert not BAR.search(proc.stdout + proc.stderr) and "it/s]" not in proc.stderr, proc.stderr[-2000:]


def test_epoch_line_reports_loss_elapsed_and_the_time_left(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = EpochClock(start_epoch=2, max_epoch=10)  # resumed after 2 epochs: the estimate uses this run's epochs
    now[0] += 30.0
    assert clock.line(epoch=4, loss=1.23456) == "epoch 5/10: loss 1.2346, 0:00:30 elapsed, ~0:00:50 left"
    assert clock.line(epoch=9, loss=None) == "epoch 10/10: 0:00:30 elapsed, ~0:00:00 left"


# --- the CPU thread policy -------------------------------------------------------------------------------------------
def test_threads_follow_the_load_of_the_other_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "usable_cpus", lambda: 4)
    busy = [0.0]
    monkeypatch.setattr(cpu.LoadProbe, "busy_elsewhere", lambda self: busy[0])
    monkeypatch.setattr(cpu, "SAMPLE_S", 0.0)
    policy = cpu.ThreadPolicy()
    assert policy.threads == 4 and "4 usable CPUs, 0.0 busy" in policy.describe()
    busy[0] = 1.0
    assert policy.update() == "CPU threads: 4 -> 3 (4 usable CPUs, 1.0 busy with other processes)"
    assert policy.update() is None  # unchanged: nothing to log
    busy[0] = 1.6  # a CPU is given up when it is at least 3/4 busy elsewhere
    policy.update()
    assert policy.threads == 3
    busy[0] = 3.9
    policy.update()
    assert policy.threads == 1  # never fewer than one
    busy[0] = 0.7
    policy.update()
    assert policy.threads == 4


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_fixed_thread_count_wins_and_never_moves(monkeypatch, how):
    monkeypatch.setattr(cpu.LoadProbe, "busy_elsewhere", lambda self: 1.0)
    if how == "flag":
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        policy = cpu.ThreadPolicy(requested=1)
        assert policy.threads == 1 and policy.describe() == "CPU threads: 1 (--threads=1)"
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        policy = cpu.ThreadPolicy()
        assert policy.threads == 1 and policy.describe() == "CPU threads: 1 (OMP_NUM_THREADS=1)"
    assert policy.update() is None and policy.threads == 1


def _busy_seen(work) -> float:
    probe = cpu.LoadProbe()
    work()
    return probe.busy_elsewhere()


def _spin(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load probe reads Linux's /proc/stat")
def test_the_probe_sees_other_processes_and_not_this_one():
    own = _busy_seen(lambda: _spin(0.5))
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 1.0\nwhile time.time() < t: pass"])
    time.sleep(0.2)  # the child has started
    other = _busy_seen(lambda: time.sleep(0.6))
    child.wait()
    # a loaded machine adds the same background to both looks; the child is a whole CPU at most
    assert other - own >= 0.3, (own, other)
