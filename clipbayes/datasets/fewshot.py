"""K-shot subsets of train (and val), sampled as CoOp samples them and cached in CoOp's file format.

Sampling is Dassl's ``DatasetBase.generate_fewshot_dataset``, called exactly as CoOp's readers call it: first
on train with ``num_shots``, then on val with ``min(num_shots, 4)`` (ImageNet, whose val is its test set, samples
train only). It draws from Python's global ``random`` state, which ``train.py`` seeds with ``--seed``; the same
split, seed and shot count therefore give the same subset as CoOp.

The subset is cached as ``<dataset_dir>/split_fewshot/shot_<K>-seed_<S>.pkl``, a pickle of
``{"train": [Datum, ...], "val": [Datum, ...]}`` (``{"train": [...]}`` for ImageNet), the file CoOp writes and
reads: caches from either code base work with the other. When the data root is read-only the cache goes to the
per-user cache (see :mod:`clipbayes.datasets.cache`). A cache whose images are not all part of the current split
(e.g. written for another data root or another split file) is ignored with a warning and re-sampled.
"""
from __future__ import annotations

import os
import pickle
from typing import List, Optional, Tuple

from . import cache


def cache_filename(num_shots: int, seed: int, tag: str = "") -> str:
    suffix = f"-{tag}" if tag else ""
    return f"shot_{num_shots}-seed_{seed}{suffix}.pkl"


def _keys(items) -> set:
    return {(d.impath, d.label, d.classname) for d in items}


def _load_valid(path: str, train: List, val: Optional[List]) -> Optional[Tuple[List, Optional[List]]]:
    """The cached (train, val) if the file reads and every cached image belongs to the current split."""
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except Exception as err:  # a truncated or foreign file must not stop a run: it is re-sampled
        cache.log(f"WARNING: ignoring unreadable few-shot cache {path}: {err!r}")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("train"), list):
        cache.log(f"WARNING: ignoring few-shot cache {path}: not a dict with a 'train' list")
        return None
    wanted = [("train", train)] + ([("val", val)] if val is not None else [])
    for key, full in wanted:
        cached = data.get(key)
        if not isinstance(cached, list):
            cache.log(f"WARNING: ignoring few-shot cache {path}: no '{key}' list")
            return None
        try:
            stray = _keys(cached) - _keys(full)
        except AttributeError:
            cache.log(f"WARNING: ignoring few-shot cache {path}: '{key}' does not hold Datum objects")
            return None
        if stray:
            example = next(iter(stray))[0]
            cache.log(f"WARNING: ignoring stale few-shot cache {path}: {len(stray)} of its {key} images are not "
                      f"in the current {key} split (e.g. {example}); sampling again")
            return None
    return data["train"], (data["val"] if val is not None else None)


def fewshot_subset(dataset, train: List, val: Optional[List], *, num_shots: int, seed: int, dataset_dir: str,
                   use_cache: bool = True, tag: str = "") -> Tuple[List, Optional[List]]:
    """Return the ``num_shots``-shot (train, val) for ``seed``, from the cache when a valid one exists.

    ``dataset`` is the Dassl ``DatasetBase`` being built (its ``generate_fewshot_dataset`` does the sampling).
    ``val=None`` means val is not sampled (nor stored). ``tag`` is appended to the cache file name (used by
    custom datasets, whose content depends on the configuration). With ``num_shots < 1`` nothing happens.
    """
    if num_shots < 1:
        return train, val
    filename = cache_filename(num_shots, seed, tag)
    paths = cache.candidate_paths(filename, os.path.join(dataset_dir, "split_fewshot"), dataset_dir,
                                  "split_fewshot")
    if use_cache:
        for path in paths:
            if os.path.isfile(path):
                loaded = _load_valid(path, train, val)
                if loaded is not None:
                    cache.log(f"Loading preprocessed few-shot data from {path}")
                    return loaded
    if seed < 0:
        cache.log("WARNING: no fixed seed (SEED < 0): the few-shot subset is random and not reproducible")
    new_train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    new_val = None
    if val is not None:
        new_val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    if use_cache:
        content = {"train": new_train} if val is None else {"train": new_train, "val": new_val}
        cache.write_first_possible(paths, lambda p: cache.atomic_write_pickle(content, p),
                                   f"{num_shots}-shot subset for seed {seed}")
    return new_train, new_val
