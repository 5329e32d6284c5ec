"""Exceptions raised by the dataset readers; each message says what is wrong, where, and how to fix it."""
from __future__ import annotations

import os
from typing import Sequence


def _checker_hint(dataset: str, root: str) -> str:
    from .sources import SOURCES
    if dataset not in SOURCES:
        return ""
    return ("\n  Check the data root with\n"
            f"    python -m clipbayes.datasets.check --root {root or '<DATA>'} --dataset {dataset}")


class DatasetError(Exception):
    """Base class of the dataset errors below."""


class DatasetFileMissingError(DatasetError, FileNotFoundError):
    """A file or folder a reader needs is not on disk.

    Attributes: ``dataset`` (registry name), ``path`` (absolute path expected), ``source`` (where to get it).
    """

    def __init__(self, dataset: str, path: str, what: str, source: str = "", hint: str = "", root: str = ""):
        self.dataset = dataset
        self.path = path
        self.source = source
        lines = [f"{dataset}: missing {what}: {path}",
                 f"  It belongs at exactly that path (folder {os.path.dirname(path)})."]
        if source:
            lines.append(f"  Where it comes from: {source}")
        if hint:
            lines.append(f"  {hint}")
        lines.append("  See DATASETS.md for the expected layout." + _checker_hint(dataset, root))
        super().__init__("\n".join(lines))


class MissingImagesError(DatasetError, FileNotFoundError):
    """Split or annotation entries point to image files that do not exist."""

    def __init__(self, dataset: str, missing: Sequence[str], total: int, listed_in: str):
        self.dataset = dataset
        self.missing = list(missing)
        shown = "\n".join(f"    {p}" for p in self.missing[:5])
        more = f"\n    ... and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(
            f"{dataset}: {len(self.missing)} of {total} images listed in {listed_in} do not exist, e.g.\n"
            f"{shown}{more}\n"
            "  The images are incomplete or in a different folder layout than expected (see DATASETS.md)."
            + _checker_hint(dataset, ""))


class SplitFormatError(DatasetError, ValueError):
    """A split or annotation file exists but cannot be parsed."""

    def __init__(self, dataset: str, path: str, problem: str):
        self.dataset = dataset
        self.path = path
        super().__init__(f"{dataset}: cannot read {path}: {problem}")
