"""Tables that benchmarks write into the docs, so that documented numbers are what the shipped code printed.

A generated block in a Markdown file sits between two marker lines:

    <!-- generated:NAME by `COMMAND`; do not edit by hand -->
    ...the benchmark's table...
    <!-- /generated:NAME -->

``write_block`` replaces what lies between them (atomically) and leaves the rest of the file as it is.
"""
from __future__ import annotations

import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from clipbayes.fileio import atomic_write  # noqa: E402

DOCS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "docs")


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated:{re.escape(name)} [^\n]*-->\n)(.*?)(<!-- /generated:{re.escape(name)} -->)",
                      re.S)


def read_block(path: str, name: str) -> str:
    """The text of block ``name`` in ``path``."""
    with open(path) as handle:
        match = _pattern(name).search(handle.read())
    if match is None:
        raise ValueError(f"{path} has no generated block '{name}' (marker lines '<!-- generated:{name} ... -->' and "
                         f"'<!-- /generated:{name} -->'): add them where the table belongs")
    return match.group(2)


def write_block(path: str, name: str, text: str) -> None:
    """Replace the text of block ``name`` in ``path`` by ``text`` (ending with a newline)."""
    read_block(path, name)  # the markers must be there
    with open(path) as handle:
        document = handle.read()
    body = text if text.endswith("\n") else text + "\n"
    updated = _pattern(name).sub(lambda m: m.group(1) + body + m.group(3), document, count=1)
    atomic_write(path, lambda f: f.write(updated), binary=False)
