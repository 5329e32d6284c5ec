"""Atomic file writes: the data goes to a temporary file in the target folder, is flushed to disk, and is moved
over the target with ``os.replace``. A reader sees the old file or the new one, never half of one, and a crash
leaves no partial file behind. The file gets the permissions a plain ``open`` would give it (0666 less the umask),
not the owner-only ones of a temporary file."""
from __future__ import annotations

import os
import os.path as osp
import tempfile
from typing import IO, Any, Callable


def atomic_write(path: str, write: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Call ``write(handle)`` on a temporary file and move it to ``path`` (folders are created as needed)."""
    folder = osp.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + osp.basename(path) + ".", suffix=".tmp")
    umask = os.umask(0)  # read it: os.umask only returns the old value while setting a new one
    os.umask(umask)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~umask)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
