"""Exact resume: a run killed with SIGKILL mid-epoch and started again ends with the same weights, bit for bit,
as the uninterrupted run (the checkpoints carry every random state; clipbayes/engine/rng_state.py)."""
from __future__ import annotations

import os
import os.path as osp
import random
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from clipbayes.engine import checkpoint as ckpt
from clipbayes.engine.rng_state import RNG_STATE_KEY, capture_rng_state, restore_rng_state
from support import ROOT, requires_dassl

# Runs train.py in this process, after arranging that the process SIGKILLs itself at the start of the given
# (epoch, batch) of training: a kill -9 at an exact point mid-epoch, with nothing flushed or cleaned up.
KILL_AT = """
import os, runpy, signal, sys
from clipbayes.engine.trainer import PromptTrainer
epoch, batch = {epoch}, {batch}
step = PromptTrainer.forward_backward
def forward_backward(self, data):
    if (self.epoch, self.batch_idx) == (epoch, batch):
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, data)
PromptTrainer.forward_backward = forward_backward
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""


def draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_captured_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn(1)  # leaves a cached Gaussian in numpy's state
    random.gauss(0, 1)  # and in Python's
    path = ckpt.save_checkpoint({RNG_STATE_KEY: capture_rng_state()}, str(tmp_path), "model.pth.tar-1")
    expected = draws() + (np.random.randn(2).tolist(), [random.gauss(0, 1) for _ in range(2)])
    draws()  # move every generator on
    state = torch.load(path, weights_only=True)
    assert restore_rng_state(state[RNG_STATE_KEY]) == []
    assert draws() + (np.random.randn(2).tolist(), [random.gauss(0, 1) for _ in range(2)]) == expected


def _env(tmp_path):
    return {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1"}


def _run(env, *args, kill_at=None):
    """train.py on the seconds-long DemoShapes pipeline (tiny random CLIP); the test's own keys win."""
    from clipbayes.demo import tiny_pipeline_options

    first_key = next((i for i, a in enumerate(args) if re.match(r"^[A-Z][A-Z_]*\.[A-Z]", a)), len(args))
    args = (*args[:first_key], *tiny_pipeline_options(), *args[first_key:])
    command = ["train.py"] if kill_at is None else ["-c", KILL_AT.format(epoch=kill_at[0], batch=kill_at[1])]
    return subprocess.run([sys.executable, *command, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _weights(out, epoch):
    return torch.load(osp.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), weights_only=True)["state_dict"]


def _assert_identical(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), (name, (first[name] - second[name]).abs().max())


@requires_dassl
@pytest.mark.parametrize("prec", ["fp32", "fp16"])
def test_killed_run_resumes_to_bit_identical_weights(tmp_path, prec):
    """BayesianPrompt (MC sampling in every step), demo data with random flips (the loader's shuffling and the
    augmentation draw from the generators), killed in batch 3 of epoch 3 of 4 and started again; at fp16 (the CPU's
    half-precision kernels) the fp32 learner's dynamic loss scale resumes too."""
    env = _env(tmp_path)
    if prec != "fp32":
        env["CLIPBAYES_CPU_LOW_PRECISION"] = "1"
    args = ["--trainer", "BayesianPrompt", "--seed", "1", "OPTIM.MAX_EPOCH", "4", "TRAIN.CHECKPOINT_FREQ", "1",
            "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "3", "TRAINER.BAYESIAN_PROMPT.PREC", prec]
    reference, resumed = str(tmp_path / "reference"), str(tmp_path / "resumed")
    done = _run(env, "--output-dir", reference, *args)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = _run(env, "--output-dir", resumed, *args, kill_at=(2, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = osp.join(resumed, "prompt_learner")
    assert sorted(f for f in os.listdir(folder) if f.startswith("model")) == ["model.pth.tar-1", "model.pth.tar-2"]
    _assert_identical(_weights(reference, 2), _weights(resumed, 2))

    again = _run(env, "--output-dir", resumed, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "holds an unfinished run (2/4 epochs): resuming it" in again.stdout
    assert "holds no random-number states" not in again.stdout
    for epoch in (3, 4):
        _assert_identical(_weights(reference, epoch), _weights(resumed, epoch))
    final = [torch.load(osp.join(out, "prompt_learner", "model.pth.tar-4"), weights_only=True)
             for out in (reference, resumed)]
    for a, b in zip(final[0]["optimizer"]["state"].values(), final[1]["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    if prec == "fp16":
        assert "dynamic loss scaling" in again.stdout
        assert final[0]["grad_scaler"] == final[1]["grad_scaler"] and final[0]["grad_scaler"]["scale"] > 0


@requires_dassl
def test_checkpoint_without_random_states_resumes_with_a_note(tmp_path):
    """A checkpoint of an older version (no random states) still resumes; the log says the draws will differ."""
    env = _env(tmp_path)
    out = str(tmp_path / "run")
    args = ["--trainer", "CoOp", "--seed", "1", "--output-dir", out, "OPTIM.MAX_EPOCH", "2",
            "TRAIN.CHECKPOINT_FREQ", "1"]
    killed = _run(env, *args, kill_at=(1, 1))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    path = osp.join(out, "prompt_learner", "model.pth.tar-1")
    state = torch.load(path, weights_only=True)
    del state[RNG_STATE_KEY]
    torch.save(state, path)
    again = _run(env, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Note: {path} holds no random-number states" in again.stdout
    assert osp.isfile(osp.join(out, "prompt_learner", "model.pth.tar-2"))


@requires_dassl
def test_killed_demo_resumes_like_the_command_line(tmp_path):
    """The toy-world demo (``train.py --trainer X --output-dir D``) killed mid-training and started again resumes its
    unfinished run with the command line's notice and ends bit-identical to an uninterrupted demo."""
    env = _env(tmp_path)

    def demo(out, kill_at=None):
        command = ["train.py"] if kill_at is None else ["-c", KILL_AT.format(epoch=kill_at[0], batch=kill_at[1])]
        return subprocess.run([sys.executable, *command, "--trainer", "CoOp", "--output-dir", out,
                               "OPTIM.MAX_EPOCH", "3"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)

    reference, resumed = str(tmp_path / "reference"), str(tmp_path / "resumed")
    assert demo(reference).returncode == 0
    assert demo(resumed, kill_at=(1, 3)).returncode == -signal.SIGKILL
    again = demo(resumed)
    assert again.returncode == 0, again.stderr[-3000:]
    run = osp.join("base2new", "train_base", "ToyWorld", "shots_16", "CoOp", "toy", "seed1")
    assert (f"CoOp train_base: Output directory '{osp.join(resumed, run)}' holds an unfinished run (1/3 epochs): "
            f"resuming it") in again.stdout
    assert re.findall(r"CoOp train_base: epoch (\d)/3", again.stdout) == ["2", "3"]  # epoch 1 was not trained again
    _assert_identical(_weights(osp.join(reference, run), 3), _weights(osp.join(resumed, run), 3))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
