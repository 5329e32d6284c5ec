"""Where dataset side-files (few-shot pickles, generated splits) are written, and how.

Two places are tried, in order:

1. next to the data, e.g. ``<dataset_dir>/split_fewshot/shot_16-seed_1.pkl`` (where CoOp puts them, so caches
   written by CoOp and by clipbayes are interchangeable);
2. a per-user cache, used when the data root is read-only (a shared cluster copy, a read-only mount):
   ``$CLIPBAYES_CACHE`` if set, else ``$XDG_CACHE_HOME/clipbayes`` or ``~/.cache/clipbayes``. Inside it, files
   of one dataset folder go to ``<kind>/<folder name>-<8 hex digits of the folder's absolute path>/`` so that
   two data roots holding the same dataset never share a cache.

Writes are atomic (temporary file in the target folder, then ``os.replace``), so a reader never sees half a
file, even with several runs starting at once. A failure to write anywhere is logged, never raised: a cache is
an optimisation, not a requirement.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from typing import Any, Callable, Iterable, List, Optional

from clipbayes.fileio import atomic_write

#: Set to True to silence :func:`log` (the checker does, to keep its report readable).
QUIET = False


def log(message: str) -> None:
    """Print a dataset message (Dassl redirects stdout into the run's log.txt)."""
    if not QUIET:
        print(f"[clipbayes.datasets] {message}", flush=True)


def user_cache_root() -> str:
    """The per-user cache folder (not created here)."""
    explicit = os.environ.get("CLIPBAYES_CACHE", "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "clipbayes")


def user_cache_dir(kind: str, dataset_dir: str) -> str:
    """Per-user folder for side-files of one dataset folder, e.g. ``kind="split_fewshot"``."""
    dataset_dir = os.path.abspath(dataset_dir)
    digest = hashlib.sha1(dataset_dir.encode("utf-8")).hexdigest()[:8]
    name = os.path.basename(dataset_dir.rstrip(os.sep)) or "root"
    return os.path.join(user_cache_root(), kind, f"{name}-{digest}")


def is_writable_dir(path: str) -> bool:
    """Whether files can be created in ``path`` (or, if it does not exist yet, in its nearest existing parent).

    Every write decision in this package goes through this function, so tests (which usually run as root, for
    whom permission bits do not apply) can simulate a read-only data root by replacing it.
    """
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def atomic_write_pickle(obj: Any, path: str) -> None:
    """Pickle ``obj`` to ``path`` atomically (highest protocol, as CoOp writes its caches)."""
    atomic_write(path, lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL), binary=True)


def atomic_write_json(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON (the layout of CoOp's split files) atomically."""
    def _dump(handle):
        json.dump(obj, handle, indent=4, separators=(",", ": "))
        handle.write("\n")
    atomic_write(path, _dump, binary=False)


def candidate_paths(filename: str, data_folder: str, dataset_dir: str, kind: str) -> List[str]:
    """The places a side-file may live: in ``data_folder`` (inside the data root), then in the user cache."""
    return [os.path.join(data_folder, filename), os.path.join(user_cache_dir(kind, dataset_dir), filename)]


def write_first_possible(paths: Iterable[str], write: Callable[[str], None], what: str) -> Optional[str]:
    """Write with ``write(path)`` to the first path whose folder is writable; returns it, or None (logged)."""
    paths = list(paths)
    for index, path in enumerate(paths):
        folder = os.path.dirname(path)
        if not is_writable_dir(folder):
            if index + 1 < len(paths):
                log(f"{folder} is not writable; writing the {what} to {os.path.dirname(paths[index + 1])} instead")
            continue
        try:
            write(path)
        except OSError as err:
            log(f"could not write the {what} to {path}: {err}")
            continue
        log(f"Saved the {what} to {path}")
        return path
    log(f"WARNING: the {what} was not saved anywhere (no writable location among: {', '.join(paths)}); "
        "it will be recomputed next time. Set CLIPBAYES_CACHE to a writable folder to keep it.")
    return None
