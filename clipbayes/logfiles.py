"""Dassl's log file names, and the files named after them.

Dassl's ``setup_logger`` writes ``OUTPUT_DIR/log.txt``, or ``log.txt-YYYY-MM-DD-HH-MM-SS`` when ``log.txt``
exists (a later run into the same folder). Files that belong to one log carry its suffix:
``log.txt -> metrics.json``, ``log.txt-TS -> metrics-TS.json``.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import sys
from typing import List

LOG_NAME_RE = re.compile(r"^log\.txt(?:-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}))?$")


def log_files(run_dir: str) -> List[str]:
    """Dassl log files of a run folder, newest first (``log.txt`` is the first one Dassl writes)."""
    found = []
    for name in os.listdir(run_dir):
        match = LOG_NAME_RE.match(name)
        if match and osp.isfile(osp.join(run_dir, name)):
            found.append((match.group(1) or "", name))
    return [osp.join(run_dir, name) for _, name in sorted(found, reverse=True)]


def artifact_path(log_file: str, stem: str, extension: str) -> str:
    """``DIR/log.txt`` -> ``DIR/<stem><extension>``; ``DIR/log.txt-TS`` -> ``DIR/<stem>-TS<extension>``."""
    match = LOG_NAME_RE.match(osp.basename(log_file))
    suffix = f"-{match.group(1)}" if match and match.group(1) else ""
    return osp.join(osp.dirname(log_file), f"{stem}{suffix}{extension}")


def current_log_file(output_dir: str) -> str:
    """The file Dassl's logger writes stdout to, or ``OUTPUT_DIR/log.txt`` when stdout is not Dassl's logger."""
    name = getattr(getattr(sys.stdout, "file", None), "name", None)
    if isinstance(name, str) and LOG_NAME_RE.match(osp.basename(name)):
        return name
    return osp.join(output_dir, "log.txt")
