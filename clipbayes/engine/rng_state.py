"""Every random state a training run consumes, as a checkpoint entry that loads with ``weights_only=True``.

A run draws from four generators: torch's CPU generator (the data loader's shuffling seed, the workers' base
seed, dropout, Monte Carlo samples), torch's CUDA generators (sampling on the GPU), numpy's global generator and
Python's ``random`` (Dassl's class/domain samplers). The data loader's own state is derived from torch's CPU
generator at the start of every epoch (``RandomSampler`` and the worker seeds draw from it), and the distributed
sampler is a pure function of (seed, epoch), so these four states, captured when an epoch's checkpoint is written
and restored on resume, make the resumed epochs replay exactly what the uninterrupted run did.

Stored as plain containers of tensors, ints, floats and strings (``weights_only`` loads them):
``{"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": {...}, "python": {...}}``.
"""
from __future__ import annotations

import random

import numpy as np
import torch

RNG_STATE_KEY = "rng_state"  # rank 0's (the only one of a single-process run)
RANK_RNG_STATES_KEY = "rng_state_ranks"  # under torchrun: every rank's, in rank order


def capture_rng_state() -> dict:
    """The current state of torch (CPU and every initialised CUDA device), numpy and Python's ``random``."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def restore_rng_state(state: dict) -> list[str]:
    """Set the generators to ``state`` (from :func:`capture_rng_state`); return notes on what could not be
    restored exactly (CUDA states saved on another number of devices, or on none)."""
    notes = []
    torch.set_rng_state(state["torch"])
    cuda_states = list(state.get("cuda") or [])
    if torch.cuda.is_available():
        if cuda_states:
            count = min(len(cuda_states), torch.cuda.device_count())
            for device, cuda_state in enumerate(cuda_states[:count]):
                torch.cuda.set_rng_state(cuda_state, device)
            if len(cuda_states) != torch.cuda.device_count():
                notes.append(f"CUDA generator states were saved for {len(cuda_states)} device(s) and restored on "
                             f"{count} of the {torch.cuda.device_count()} visible here")
        else:
            notes.append("the checkpoint holds no CUDA generator state (written without CUDA); CUDA draws after "
                         "the resume differ from an uninterrupted CUDA run")
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(int(v) for v in python_state["internal"].tolist()),
                     python_state["gauss_next"]))
    return notes
