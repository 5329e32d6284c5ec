"""Helpers of the dataset tests: build a config as train.py does, construct a reader, restate Dassl's sampling."""
import random

from clipbayes.compat import import_dassl

import_dassl()
import clipbayes.datasets  # noqa: E402,F401  (registers the readers)
from clipbayes.datasets import add_dataset_config  # noqa: E402
from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY  # noqa: E402
from dassl.utils import set_random_seed  # noqa: E402


def make_cfg(root, name=None, yaml=None, **dataset_keys):
    """A Dassl config as train.py builds it: defaults + dataset keys, then the dataset yaml, then overrides.

    ``dataset_keys`` are DATASET.* values; ``SEED`` may be given too.
    """
    cfg = get_cfg_default()
    add_dataset_config(cfg)
    if yaml:
        cfg.merge_from_file(yaml)
    if name:
        cfg.DATASET.NAME = name
    cfg.DATASET.ROOT = str(root)
    seed = dataset_keys.pop("SEED", 1)
    cfg.SEED = seed
    for key, value in dataset_keys.items():
        if key == "CUSTOM":
            for sub, sub_value in value.items():
                cfg.DATASET.CUSTOM[sub] = sub_value
        else:
            cfg.DATASET[key] = value
    return cfg


def build(cfg, seed=None):
    """Seed like train.py (when the seed is >= 0), then construct the reader named in the config."""
    seed = cfg.SEED if seed is None else seed
    if seed >= 0:
        set_random_seed(seed)
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def entries(items):
    """(path, label, classname) of Datum objects, in order."""
    return [(d.impath, d.label, d.classname) for d in items]


def restate_fewshot(items, num_shots):
    """Dassl's few-shot sampling, written out independently: classes in order of first appearance; from each,
    ``random.sample`` of ``num_shots`` items, or all of them when there are fewer."""
    groups = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    picked = []
    for group in groups.values():
        picked.extend(random.sample(group, num_shots) if len(group) >= num_shots else group)
    return picked
