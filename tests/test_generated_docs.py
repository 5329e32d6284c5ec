"""The generated blocks of the docs (benchmarks/generated_docs.py): where they are, and that writing one replaces
exactly its own text."""
from __future__ import annotations

import os.path as osp
import sys

import pytest

from support import ROOT

sys.path.insert(0, osp.join(ROOT, "benchmarks"))

from generated_docs import read_block, write_block  # noqa: E402

# file (from the repository root) -> blocks the benchmarks write there
BLOCKS = {"docs/toyworld.md": ["toy_protocols", "demo_seed1", "toy_sensitivity", "toy_budget"], "docs/methods/pbprompt.md": ["pbprompt_ablation"],
          "README.md": ["toy_protocols_means"]}


@pytest.mark.parametrize("path, name", [(p, n) for p, names in BLOCKS.items() for n in names])
def test_each_generated_block_is_in_its_doc_and_holds_a_table(path, name):
    text = read_block(osp.join(ROOT, path), name)
    assert text.lstrip().startswith("| ") and "| --- |" in text


def test_writing_a_block_replaces_only_its_text(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- generated:a by `x`; do not edit by hand -->\nold a\n<!-- /generated:a -->\nmiddle\n"
                   "<!-- generated:b by `y` -->\nold b\n<!-- /generated:b -->\nend\n")
    write_block(str(doc), "a", "| new | a |")
    assert doc.read_text() == ("intro\n<!-- generated:a by `x`; do not edit by hand -->\n| new | a |\n"
                               "<!-- /generated:a -->\nmiddle\n<!-- generated:b by `y` -->\nold b\n"
                               "<!-- /generated:b -->\nend\n")
    with pytest.raises(ValueError, match="no generated block 'c'"):
        write_block(str(doc), "c", "x")


def test_the_readme_shows_the_toy_worlds_first_table_as_the_docs_do():
    """Both copies come from one run of benchmarks/toy_protocols.py --write-docs: the README's block is the first
    table of docs/toyworld.md's."""
    readme = read_block(osp.join(ROOT, "README.md"), "toy_protocols_means")
    docs = read_block(osp.join(ROOT, "docs", "toyworld.md"), "toy_protocols")
    assert readme.strip() == docs.split("\n\n")[0].strip()
