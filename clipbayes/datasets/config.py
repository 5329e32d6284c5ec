"""Config keys of the dataset readers; :func:`add_dataset_config` must run before any yaml is merged."""
from __future__ import annotations

from yacs.config import CfgNode as CN

# key -> (default, meaning); the meanings are repeated in DATASETS.md.
DATASET_KEYS = {
    "SUBSAMPLE_CLASSES": ("all", "all | base | new: which half of the classes to keep (base-to-new protocol)"),
    "AUTO_SPLIT": (False, "generate a train/val/test split from the annotation files when split_zhou_<Name>.json "
                          "is missing (NOT identical to CoOp's published split)"),
    "AUTO_SPLIT_SEED": (1, "seed of the generated splits (auto-split and custom datasets without a split)"),
    "FEWSHOT_CACHE": (True, "read/write the few-shot subset at <dataset>/split_fewshot/shot_K-seed_S.pkl"),
    "PROMPT_TEMPLATE": ("", "hand-crafted prompt with one '{}' for the class name; empty = the built-in one "
                            "of the dataset (clipbayes.datasets.templates)"),
}

CUSTOM_KEYS = {
    "DIR": ("", "dataset folder; absolute, or relative to DATASET.ROOT; empty = DATASET.ROOT itself"),
    "CSV": ("", "CSVDataset: file with rows path,label[,split] (relative to the dataset folder)"),
    "IMAGE_DIR": ("", "CSVDataset: folder the CSV paths are relative to (default: the CSV file's folder)"),
    "CLASSNAMES": ("", "optional class-name file (relative to the dataset folder); see DATASETS.md"),
    "SPLIT_RATIOS": ((0.5, 0.2, 0.3), "train/val/test fractions per class for data without a split"),
    "VAL_FRACTION": (0.2, "fraction of train held out as val when the data has train and test but no val; "
                          "0 = use test as val"),
}


def add_dataset_config(cfg) -> None:
    """Declare the dataset keys on a Dassl config (idempotent: keys already present keep their value)."""
    for key, (default, _) in DATASET_KEYS.items():
        if key not in cfg.DATASET:
            setattr(cfg.DATASET, key, default)
    if "CUSTOM" not in cfg.DATASET:
        cfg.DATASET.CUSTOM = CN()
    for key, (default, _) in CUSTOM_KEYS.items():
        if key not in cfg.DATASET.CUSTOM:
            setattr(cfg.DATASET.CUSTOM, key, default)


def option(cfg, key: str, custom: bool = False):
    """A dataset option from ``cfg``, or its default when the key was never declared."""
    table = CUSTOM_KEYS if custom else DATASET_KEYS
    node = cfg.DATASET.get("CUSTOM", None) if custom else cfg.DATASET
    if node is not None and key in node:
        return node[key]
    return table[key][0]
