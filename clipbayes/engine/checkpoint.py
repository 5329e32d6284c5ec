"""Checkpoints that a crash cannot corrupt, readable on torch >= 2.6 (``weights_only`` default).

Layout (Dassl's, so CoOp tooling finds them): ``<output>/<module>/model.pth.tar-<epoch>``, ``model-best.pth.tar``
and a ``checkpoint`` file naming the newest one. Every file is written to a temporary name in the same folder
and moved into place with ``os.replace``: a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import os.path as osp
import pickle

import torch

from clipbayes.fileio import atomic_write


def save_checkpoint(state: dict, folder: str, file_name: str, update_pointer: bool = True) -> str:
    """Write ``state`` to ``folder/file_name`` atomically; point ``folder/checkpoint`` at it."""
    path = osp.join(folder, file_name)
    atomic_write(path, lambda f: torch.save(state, f))
    if update_pointer:
        atomic_write(osp.join(folder, "checkpoint"), lambda f: f.write(f"{file_name}\n".encode()))
    print(f"Checkpoint saved to {path}")
    return path


def load_checkpoint(path: str) -> dict:
    """Load a checkpoint on the CPU. Our files load with ``weights_only=True``; checkpoints written by the
    original Dassl/CoOp code pickle scheduler objects and need full unpickling, done with a warning."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        print(f"Warning: {path} holds Python objects (a checkpoint from the original Dassl/CoOp code); "
              f"loading it with full unpickling. Only load checkpoints you trust.")
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError) as err:
        raise RuntimeError(f"Checkpoint {path} is unreadable ({err}); it may be truncated. "
                           f"Delete it to restart from an earlier one.") from err


def newest_checkpoint(folder: str) -> str | None:
    """Path named by ``folder/checkpoint``, or None when there is none."""
    pointer = osp.join(folder, "checkpoint")
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.readline().strip()
    return osp.join(folder, name) if name else None


def checkpoint_epoch(path: str) -> int | None:
    """Epoch count encoded in Dassl's file name ``model.pth.tar-<epoch>``."""
    stem, _, suffix = osp.basename(path).rpartition("-")
    return int(suffix) if stem == "model.pth.tar" and suffix.isdigit() else None
