"""DistributedDataParallel on the CPU (gloo, 2 processes): the sampler's global batches, one step's averaged
gradient against the single-process gradient of the same global batch, and train.py under torchrun (only rank 0
writes files; kill -9 and resume; evaluation equal to the one-process result)."""
from __future__ import annotations

import os
import os.path as osp
import re
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import RandomSampler

from clipbayes.engine import distributed as ddp
from support import ROOT, requires_dassl

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank, port, folder, job, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(job(*args), osp.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_on_two_ranks(tmp_path, job, *args) -> list:
    """``job(*args)`` in 2 gloo processes; their return values in rank order."""
    mp.spawn(_spawned, args=(_free_port(), str(tmp_path), job, args), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _sampler(kind, data_size, batch):
    """Dassl's RandomSampler (torch's generator) or RandomClassSampler (Python's random and numpy)."""
    if kind == "RandomSampler":
        return RandomSampler(range(data_size))
    from types import SimpleNamespace

    from clipbayes.compat import import_dassl

    import_dassl()
    from dassl.data.samplers import RandomClassSampler
    return RandomClassSampler([SimpleNamespace(label=i % 4) for i in range(data_size)], batch, n_ins=2)


def _epoch_batches(kind, data_size, batch, epochs, seed):
    sampler = ddp.DistributedBatchSampler(_sampler(kind, data_size, batch), batch, drop_last=True, seed=seed)
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.append(list(sampler))
    return batches


@pytest.mark.parametrize("kind", ["RandomSampler", pytest.param("RandomClassSampler", marks=requires_dassl)])
def test_sampler_gives_each_rank_its_slice_of_the_same_global_batches(tmp_path, kind):
    per_rank = run_on_two_ranks(tmp_path, _epoch_batches, kind, 24, 4, 2, 7)
    sampler = _sampler(kind, 24, 4)
    for epoch in range(2):
        with ddp.seeded(ddp.epoch_seed(7, epoch)):
            order = list(sampler)  # the one-process order of this epoch
        expected = [order[i:i + 4] for i in range(0, len(order) - len(order) % 4, 4)]  # Dassl's drop_last
        got = [a + b for a, b in zip(per_rank[0][epoch], per_rank[1][epoch])]
        assert got == expected and len(got) == len(order) // 4
    assert per_rank[0][0] != per_rank[0][1]  # a new order every epoch


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    assert ddp.check_batch_size(4) == 2
    with pytest.raises(ValueError, match="global batch and must be a multiple of the 2 processes"):
        ddp.check_batch_size(3)


# --- one training step: the averaged gradient of 2 ranks = the one-process gradient of the global batch -----------

def _trainer(trainer_name, output_dir):
    """The DemoShapes tiny-pipeline trainer, built as train.py builds it (imports here: Dassl may be absent)."""
    from clipbayes.cli import build_parser, setup_cfg
    from clipbayes.compat import import_dassl
    from clipbayes.demo import tiny_pipeline_options

    import_dassl()
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    args = build_parser().parse_args(["--trainer", trainer_name, "--seed", "1", "--output-dir", output_dir])
    args.opts = tiny_pipeline_options()
    cfg = setup_cfg(args)
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def _global_batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 224, 224, generator=generator), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])


def _step_gradients(trainer_name, output_dir):
    """Learner gradients of one step on the global batch: under DDP each rank backpropagates its half; in one
    process, the whole batch ("full") and the mean of the two halves' losses ("halves")."""
    trainer = _trainer(trainer_name, output_dir)
    images, labels = _global_batch()
    learner = trainer.model.learner

    def gradients(*parts):
        learner.zero_grad()
        for share in parts:
            loss = (trainer.ddp_step or trainer.model.train_loss)(images[share], labels[share])[0]
            (loss / len(parts)).backward()
        return {name: p.grad.clone() for name, p in learner.named_parameters()}

    if ddp.world_size() > 1:
        return gradients(slice(ddp.rank() * 4, (ddp.rank() + 1) * 4))
    return {"full": gradients(slice(0, 8)), "halves": gradients(slice(0, 4), slice(4, 8))}


@requires_dassl
@pytest.mark.parametrize("trainer_name", ["CoOp", "CoCoOp", "MaPLe"])  # MaPLe: prompts inside both towers
def test_averaged_gradient_equals_the_one_process_gradient(tmp_path, monkeypatch, trainer_name):
    monkeypatch.setenv("CLIPBAYES_CACHE", str(tmp_path / "cache"))
    single = _step_gradients(trainer_name, str(tmp_path / "single"))
    per_rank = run_on_two_ranks(tmp_path, _step_gradients, trainer_name, str(tmp_path / "ddp"))
    for name, full in single["full"].items():
        scale = full.abs().max()
        assert scale > 0
        for rank_grads in per_rank:
            # In fp32 the whole batch and its two halves are summed in different orders: already in one process
            # they differ by up to 1.8e-6 (CoOp, |grad| <= 0.33), so the full-batch check is to 1e-5 of the scale
            # and the exact one is against the halves, as DDP computes them.
            assert (single["halves"][name] - full).abs().max() <= 1e-5 * scale, name
            assert (rank_grads[name] - full).abs().max() <= 1e-5 * scale, name
            torch.testing.assert_close(rank_grads[name], single["halves"][name], rtol=0, atol=1e-7 * scale)


# --- train.py under torchrun ------------------------------------------------------------------------------------

# Runs train.py (its argv follows) after arranging that rank 1 fails at the start of (epoch, batch): by SIGKILL (a
# kill -9 mid-epoch), by an exception with a message, or by stalling (a process that stops answering).
FAILING_RANK = """
import os, runpy, signal, sys, time
sys.path.insert(0, {root!r})
from clipbayes.engine.trainer import PromptTrainer
step = PromptTrainer.forward_backward
def forward_backward(self, data):
    if os.environ["RANK"] == "1" and (self.epoch, self.batch_idx) == ({epoch}, {batch}):
        if {action!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if {action!r} == "stall":
            time.sleep(3600)
        raise RuntimeError("rank 1 fails on purpose")
    return step(self, data)
PromptTrainer.forward_backward = forward_backward
sys.argv = [{train!r}] + sys.argv[1:]
runpy.run_path({train!r}, run_name="__main__")
"""

DEMO = ["--trainer", "BayesianPrompt", "--seed", "1", "OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1",
        "TRAINER.BAYESIAN_PROMPT.N_SAMPLES_TRAIN", "2", "DATALOADER.TEST.BATCH_SIZE", "5"]
RESULT_LINE = re.compile(r"^\* (total|correct|accuracy|error|macro_f1): .*$", re.MULTILINE)


def _torchrun(env, script, *args, processes=WORLD):
    """Run ``script`` under torchrun; a train.py command line without a dataset (which would be the toy-world demo) gets
    the DemoShapes tiny pipeline, inserted before the command's own keys so that they win."""
    from clipbayes.demo import tiny_pipeline_options

    if "--trainer" in args and "DATASET.NAME" not in args and "--config-file" not in args:
        first_key = next((i for i, a in enumerate(args) if re.match(r"^[A-Z][A-Z_]*\.[A-Z]", a)), len(args))
        args = (*args[:first_key], *tiny_pipeline_options(), *args[first_key:])
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), script] \
        if processes > 1 else [script]
    return subprocess.run([sys.executable, *command, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _failing(tmp_path, epoch, batch, action) -> str:
    path = tmp_path / f"fail_{epoch}_{batch}_{action}.py"
    path.write_text(FAILING_RANK.format(root=ROOT, epoch=epoch, batch=batch, action=action,
                                        train=osp.join(ROOT, "train.py")))
    return str(path)


def _checkpoint(out, epoch):
    return torch.load(osp.join(out, "prompt_learner", f"model.pth.tar-{epoch}"), weights_only=True)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "CLIPBAYES_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, "CLIPBAYES_DIST_TIMEOUT_S": "120"}


@requires_dassl
def test_torchrun_writes_once_resumes_exactly_and_evaluates_as_one_process(tmp_path, env):
    reference, resumed = str(tmp_path / "reference"), str(tmp_path / "resumed")
    done = _torchrun(env, "train.py", "--output-dir", reference, *DEMO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DistributedDataParallel on 2 processes" in done.stdout
    # Only rank 0 wrote: one log (a second writer would have rotated it), one metrics file, one TensorBoard file.
    assert sorted(os.listdir(reference)) == ["log.txt", "metrics.json", "prompt_learner", "tensorboard"]
    assert len(os.listdir(osp.join(reference, "tensorboard"))) == 1
    assert done.stdout.count("Finish training") == 1
    assert len(_checkpoint(reference, 2)["rng_state_ranks"]) == 2

    killed = _torchrun(env, _failing(tmp_path, 1, 1, "kill"), "--output-dir", resumed, *DEMO)
    assert killed.returncode != 0
    assert sorted(os.listdir(osp.join(resumed, "prompt_learner"))) == ["checkpoint", "model.pth.tar-1"]
    again = _torchrun(env, "train.py", "--output-dir", resumed, *DEMO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(epoch 1)" in again.stdout and "holds no random-number states" not in again.stdout
    for name, value in _checkpoint(reference, 2)["state_dict"].items():
        assert torch.equal(value, _checkpoint(resumed, 2)["state_dict"][name]), name

    results = []
    for processes in (1, WORLD):
        out = str(tmp_path / f"eval{processes}")
        evaluated = _torchrun(env, "train.py", "--output-dir", out, "--eval-only", "--model-dir", reference,
                              "--load-epoch", "2", *DEMO, processes=processes)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        results.append([m.group(0) for m in RESULT_LINE.finditer(evaluated.stdout)])
    assert results[0] and results[0] == results[1]  # counts, accuracy, error and macro-F1, MC prediction


@requires_dassl
def test_a_failing_rank_ends_the_run_with_its_message(tmp_path, env):
    proc = _torchrun(env, _failing(tmp_path, 0, 2, "raise"), "--output-dir", str(tmp_path / "out"), *DEMO)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


@requires_dassl
def test_a_stalled_rank_ends_the_run_at_the_timeout_naming_rank_and_step(tmp_path, env):
    started = time.monotonic()
    proc = _torchrun({**env, "CLIPBAYES_DIST_TIMEOUT_S": "10"}, _failing(tmp_path, 0, 2, "stall"), "--output-dir",
                     str(tmp_path / "out"), *DEMO)
    assert proc.returncode != 0
    assert ("error: rank 0 of 2: the training step of epoch 1, batch 3 (gradient all-reduce) did not complete"
            in proc.stderr), proc.stderr[-3000:]
    assert time.monotonic() - started < 120  # the 10 s timeout, not the stalled rank's hour


@requires_dassl
def test_the_toy_world_demo_runs_under_torchrun(tmp_path, env):
    """Several train.py runs in one process (the demo's) share one process group; every rank runs them, rank 0
    prints and writes."""
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(WORLD), "train.py", "--trainer", "CoOp", "--output-dir", str(out), "OPTIM.MAX_EPOCH",
                           "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Demo finished") == 1 and proc.stdout.count("No dataset or config given") == 1
    assert re.search(r"^CoOp\s+[\d.]+\s+[\d.]+\s+[\d.]+$", proc.stdout, re.M), proc.stdout[-2000:]
    base_run = out / "base2new" / "train_base" / "ToyWorld" / "shots_16" / "CoOp" / "toy" / "seed1"
    assert sorted(p.name for p in base_run.iterdir() if p.name.startswith("log.txt")) == ["log.txt"]
