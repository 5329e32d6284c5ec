"""Test-set image features of the frozen image encoder, computed once and reused across trainers and seeds.

Every trainer's prediction depends on a test image only through its unit-norm feature f(x) (``predict_features``),
and the test transform is deterministic, so f(x) for a (backbone, precision, input pipeline, list of images) is
the same in every run. With ``MODEL.CLIP.IMAGE_FEATURE_CACHE`` set to a folder, the features of an evaluation
split are stored there under a key that hashes all of these, and later evaluations read them instead of running
the image encoder. Files are written atomically; a changed image list, transform or backbone gives a new key.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp

import torch

from clipbayes.fileio import atomic_write
from clipbayes.modeling.clip_loader import OPENAI_MODELS, TINY_MODELS


def backbone_identity(spec: str) -> list:
    """What identifies the weights: a known name, or a file's absolute path, size and modification time."""
    if spec in OPENAI_MODELS or spec in TINY_MODELS:
        return [spec]
    path = osp.abspath(osp.expanduser(spec))
    info = os.stat(path)
    return [path, info.st_size, int(info.st_mtime)]


def cache_key(cfg, precision: str, split: str, items) -> str:
    """SHA-256 over the backbone, precision, test-input settings and the (path, label) list of the split."""
    description = {
        "backbone": backbone_identity(cfg.MODEL.BACKBONE.NAME),
        "precision": precision,
        "input": [list(cfg.INPUT.SIZE), cfg.INPUT.INTERPOLATION, list(cfg.INPUT.PIXEL_MEAN),
                  list(cfg.INPUT.PIXEL_STD), list(cfg.INPUT.TRANSFORMS)],
        "dataset": [cfg.DATASET.NAME, split],
        "items": [[item.impath, int(item.label)] for item in items],
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def cached_image_features(folder: str, key: str, compute, write: bool = True):
    """(features (N, E) float32, labels (N,)) from ``folder/<key>.pt``, or from ``compute()`` then stored
    (by one process: ``write`` is False on the other ranks of a distributed run)."""
    path = osp.join(folder, f"{key}.pt")
    if osp.isfile(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        print(f"Image features read from the cache {path}")
        return state["features"], state["labels"]
    features, labels = compute()
    state = {"features": features.float().cpu(), "labels": labels.cpu()}
    if write:
        atomic_write(path, lambda f: torch.save(state, f))
        print(f"Image features stored in the cache {path}")
    return state["features"], state["labels"]
