"""DistributedDataParallel under ``torchrun``: ``torchrun --nproc_per_node N train.py <the same flags>``.

What changes with N processes (N = WORLD_SIZE > 1; with one process nothing here is used):

* Process group: NCCL on CUDA (process r uses GPU LOCAL_RANK), gloo on the CPU, joined once per process (the
  toy-world demo runs several runs in one process: they share the group) and left when the process ends. Every
  collective has a timeout (``$CLIPBAYES_DIST_TIMEOUT_S``, default 600 s): a rank left waiting after another rank
  died or stopped raises :class:`CollectiveError`, which names the rank and the step (``train.py`` prints it and
  exits with status 1); torchrun then stops every rank.
* Model: every rank builds the same model from ``SEED`` (the few-shot subset, the initial context: identical on
  every rank). Only the learner is wrapped in ``DistributedDataParallel`` (:class:`LearnerStep`: a module holding
  the learner alone, whose forward is the method's ``train_loss``); the frozen CLIP is replicated and never
  synchronised. Gradients are averaged over ranks, so a step equals the single-process step on the global batch.
* Batch size: ``DATALOADER.TRAIN_X.BATCH_SIZE`` is the GLOBAL batch; each rank takes BATCH_SIZE / N images of
  every batch (BATCH_SIZE must be a multiple of N). A run with N processes takes the same number of steps with
  the same learning rates as the one-GPU run with the same config; to reproduce a one-GPU run, keep the config.
* Sampling: :class:`DistributedBatchSampler` draws the epoch's index order with Dassl's own sampler (RandomSampler,
  RandomClassSampler, ...) from generators seeded by (SEED, epoch), identically on every rank, cuts it into global
  batches exactly as Dassl's loader does (``drop_last`` when the set holds at least one batch), and gives rank r
  its r-th slice of each.
* Per-rank seeds: after the model is built, rank r reseeds torch, numpy and ``random`` with SEED + r for its own
  training draws (Monte Carlo samples, augmentation, loader workers); rank 0 keeps the single-process stream.
* Evaluation: the test set is cut into the same test batches as in one process; rank r computes the batches
  j = r, r + N, ... (image features, then scores), and the scores are gathered in batch order, so every count and
  metric equals the one-process result exactly. Test-time sampling draws batch j from a generator seeded by
  (SEED, j) (:func:`evaluation_seed`), the same in every process count.
* Files: only rank 0 writes ``log.txt``, TensorBoard, checkpoints and feature caches; the other ranks' standard
  output is discarded (their errors still reach standard error). Resume: every rank reads the checkpoint; the
  random states of every rank are saved (gathered to rank 0) and each rank restores its own.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import random
import sys
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler

DEFAULT_TIMEOUT_S = 600


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class CollectiveError(RuntimeError):
    """A collective operation failed or timed out; the message names the rank and the step."""


def timeout_s() -> float:
    return float(os.environ.get("CLIPBAYES_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))


def init_from_env(use_cuda: bool) -> None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), once per
    process: a second run in the same process (the demo's runs) keeps the group it joined."""
    if dist.is_initialized():
        return
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s()))
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # one log: rank 0's


def shutdown() -> None:
    """Leave the process group (at the end of the process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def collective(step: str):
    """Run a block of collective operations; a failure or timeout becomes a :class:`CollectiveError` naming this
    rank and ``step`` (e.g. "the gradient all-reduce of epoch 2, batch 5")."""
    if world_size() == 1:
        yield
        return
    try:
        yield
    except CollectiveError:
        raise
    except RuntimeError as err:  # gloo and NCCL raise DistBackendError (a RuntimeError) or RuntimeError
        if not isinstance(err, dist.DistBackendError) and not _looks_distributed(str(err)):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CollectiveError(
            f"rank {rank()} of {world_size()}: {step} did not complete ({first[:300]}). Another process probably "
            f"stopped or failed: see its error above. Each collective waits up to {timeout_s():.0f} s "
            f"($CLIPBAYES_DIST_TIMEOUT_S).") from err


def _looks_distributed(message: str) -> bool:
    words = ("timed out", "timeout", "connection closed", "connection reset", "gloo", "nccl", "broken pipe",
             "peer")
    return any(word in message.lower() for word in words)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def reseed_for_rank(seed: int) -> None:
    """Rank r's own stream for training draws: SEED + r (rank 0 and a single process keep SEED's stream)."""
    if world_size() > 1 and seed >= 0 and rank() > 0:
        seed_everything(seed + rank())


def check_batch_size(batch_size: int) -> int:
    """The per-rank share of the global batch."""
    world = world_size()
    if batch_size % world:
        raise ValueError(f"DATALOADER.TRAIN_X.BATCH_SIZE {batch_size} is the global batch and must be a multiple of "
                         f"the {world} processes; choose a multiple of {world} (or fewer processes)")
    return batch_size // world


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch (CPU), numpy and ``random`` seeded by ``seed``; restore their states after."""
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    seed_everything(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def epoch_seed(seed: int, epoch: int) -> int:
    return (max(seed, 0) * 100_003 + epoch) % 2**31


def evaluation_seed(seed: int, batch_index: int) -> int:
    """The seed of test batch ``batch_index``'s Monte Carlo draws: the same for any number of processes."""
    return (max(seed, 0) * 1_000_003 + 7919 * batch_index + 1) % 2**31


class DistributedBatchSampler(Sampler):
    """Rank r's part of every global batch of ``sampler``'s epoch order (drawn identically on every rank)."""

    def __init__(self, sampler: Sampler, global_batch: int, drop_last: bool, seed: int):
        self.sampler, self.global_batch, self.drop_last, self.seed = sampler, global_batch, drop_last, seed
        self.local_batch = check_batch_size(global_batch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch as Dassl's loader counts them (from ``len(sampler)``, an estimate for some)."""
        count = len(self.sampler)
        return count // self.global_batch if self.drop_last else -(-count // self.global_batch)

    def __iter__(self) -> Iterator[list]:
        with seeded(epoch_seed(self.seed, self.epoch)):
            order = list(self.sampler)
        start = rank() * self.local_batch
        full, rest = divmod(len(order), self.global_batch)  # the drawn order (an estimate of it is len(self))
        for index in range(full if self.drop_last or not rest else full + 1):
            batch = order[index * self.global_batch:(index + 1) * self.global_batch]
            share = -(-len(batch) // world_size())  # a last, smaller batch (no drop_last) is split evenly
            yield batch[rank() * share:(rank() + 1) * share] if len(batch) < self.global_batch else \
                batch[start:start + self.local_batch]


def distributed_train_loader(loader: DataLoader, seed: int) -> DataLoader:
    """Dassl's training loader with its sampler's order shared by the ranks and each batch split between them."""
    batch_sampler = DistributedBatchSampler(loader.sampler, loader.batch_size, loader.drop_last, seed)
    return DataLoader(loader.dataset, batch_sampler=batch_sampler, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, collate_fn=loader.collate_fn)


class LearnerStep(nn.Module):
    """The module DDP wraps: the learner alone (its parameters are the only ones synchronised); forward is the
    method's ``train_loss(images, labels)``, which uses the learner through the (unregistered) model."""

    def __init__(self, model):
        super().__init__()
        self.learner = model.learner
        self._model = [model]  # a list, so the frozen CLIP is not a submodule (never broadcast or synchronised)

    def forward(self, images, labels):
        return self._model[0].train_loss(images, labels)


def wrap_learner(model, device: torch.device) -> nn.Module:
    step = LearnerStep(model)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=ids)


def my_batches(count: int) -> range:
    """The indices of the test batches this rank computes: r, r + N, ..."""
    return range(rank(), count, world_size())


def sharded_loader(loader: DataLoader) -> tuple:
    """(a loader of this rank's test batches, their indices j): the one-process batches j = r, r + N, ..."""
    batches = list(BatchSampler(loader.sampler, loader.batch_size, drop_last=False))
    if world_size() == 1:
        return loader, range(len(batches))
    mine = my_batches(len(batches))
    return DataLoader(loader.dataset, batch_sampler=[batches[j] for j in mine], num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, collate_fn=loader.collate_fn), mine


def gather_batches(local: dict, step: str = "gathering the evaluation batches") -> list:
    """``{batch index: CPU tensors}`` of every rank -> the values of all batches in index order (every rank)."""
    if world_size() == 1:
        return [local[j] for j in sorted(local)]
    parts = [None] * world_size()
    with collective(step):
        dist.all_gather_object(parts, local)
    merged = {j: value for part in parts for j, value in part.items()}
    return [merged[j] for j in sorted(merged)]


def from_main(compute):
    """``compute()`` as rank 0 sees it, on every rank (e.g. whether a run in the shared output folder is finished,
    so that every rank takes the same branch); evaluated locally in one process."""
    if world_size() == 1:
        return compute()
    value = [compute() if is_main() else None]
    with collective("sharing rank 0's reading of the output folder"):
        dist.broadcast_object_list(value, src=0)
    return value[0]


def gather_objects(obj, step: str = "gathering an object of every rank") -> list:
    """``obj`` of every rank, in rank order (a one-element list in one process)."""
    if world_size() == 1:
        return [obj]
    parts = [None] * world_size()
    with collective(step):
        dist.all_gather_object(parts, obj)
    return parts
