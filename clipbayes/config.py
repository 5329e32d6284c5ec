"""Configuration: Dassl's defaults extended with every key this plugin reads, declared before any yaml merge.

Merge order (as CoOp's train.py): Dassl defaults -> our keys -> dataset yaml -> trainer yaml -> CLI flags ->
trailing ``KEY VALUE`` pairs. Each trainer declares its own node under ``TRAINER.<KEY>`` with
:func:`method_config`; this module only collects them.
"""
from __future__ import annotations

from typing import Callable

from yacs.config import CfgNode as CN

_METHOD_NODES: dict[str, Callable[[CN], None]] = {}


def method_config(key: str):
    """Decorator: ``fill(node)`` sets the defaults of ``cfg.TRAINER.<key>``."""
    def register(fill: Callable[[CN], None]):
        if key in _METHOD_NODES and _METHOD_NODES[key] is not fill:
            raise KeyError(f"Config node TRAINER.{key} is declared twice")
        _METHOD_NODES[key] = fill
        return fill
    return register


def extend_cfg(cfg: CN) -> CN:
    """Add our keys to a Dassl default config (idempotent for the nodes it creates)."""
    import clipbayes.trainers  # noqa: F401  (registers every method node)
    from clipbayes.datasets.config import add_dataset_config

    add_dataset_config(cfg)
    if "CLIP" not in cfg.MODEL:
        cfg.MODEL.CLIP = CN()
        cfg.MODEL.CLIP.CACHE_DIR = ""  # where OpenAI weights are cached ("" = $CLIPBAYES_CLIP_CACHE or ~/.cache/clip)
        cfg.MODEL.CLIP.TEXT_CHUNK_SIZE = 0  # max prompts per text-encoder pass (0 = all at once)
        cfg.MODEL.CLIP.TEXT_CHECKPOINTING = False  # recompute text activations in backward (saves memory)
        cfg.MODEL.CLIP.IMAGE_FEATURE_CACHE = ""  # folder caching test-set image features ("" = off)
    for key, fill in _METHOD_NODES.items():
        if key not in cfg.TRAINER:
            node = CN()
            fill(node)
            cfg.TRAINER[key] = node
    return cfg


def default_cfg() -> CN:
    from clipbayes.compat import import_dassl

    import_dassl()
    from dassl.config import get_cfg_default

    return extend_cfg(get_cfg_default())
