"""DistributedDataParallel on the CPU (gloo, 2 processes): the sampler's global batches, one step's averaged
gradient against the single-process gradient of the same global batch, and train.py under torchrun (only rank 0
writes files; kill -9 and resume; evaluation equal to the one-process result)."""
from __future__ import annotations

import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys

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


def _epoch_batches(data_size, batch, epochs, seed):
    sampler = ddp.DistributedBatchSampler(RandomSampler(range(data_size)), batch, drop_last=True, seed=seed)
    batches = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.append(list(sampler))
    return batches


def test_sampler_gives_each_rank_its_slice_of_the_same_global_batches(tmp_path):
    per_rank = run_on_two_ranks(tmp_path, _epoch_batches, 21, 4, 2, 7)
    for epoch in range(2):
        with ddp.seeded(ddp.epoch_seed(7, epoch)):
            order = list(RandomSampler(range(21)))  # the one-process order of this epoch
        expected = [order[i:i + 4] for i in range(0, 20, 4)]  # Dassl's drop_last: 5 full batches
        got = [a + b for a, b in zip(per_rank[0][epoch], per_rank[1][epoch])]
        assert got == expected
    assert per_rank[0][0] != per_rank[0][1]  # a new order every epoch


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    assert ddp.check_batch_size(4) == 2
    with pytest.raises(ValueError, match="global batch and must be a multiple of the 2 processes"):
        ddp.check_batch_size(3)
