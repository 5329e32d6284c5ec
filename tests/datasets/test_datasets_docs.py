"""DATASETS.md documents what the readers expect (folders, split files, sources, keys) and its links resolve."""
import os
import re

import pytest

pytest.importorskip("dassl", reason="Dassl.pytorch is not installed (see README 'Set-up'); the dataset readers need it")

from tests.datasets.miniature import REPO_ROOT

from clipbayes.datasets import SOURCES
from clipbayes.datasets.config import CUSTOM_KEYS, DATASET_KEYS


def _doc():
    with open(os.path.join(REPO_ROOT, "DATASETS.md")) as handle:
        return handle.read()


def _anchors(text):
    """GitHub-style anchors of the markdown headings."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_dataset_is_documented_with_its_files_and_sources():
    text = _doc()
    anchors = _anchors(text)
    for name, src in SOURCES.items():
        assert f"`{src.folder}`" in text, name
        assert src.anchor in anchors, (name, src.anchor)
        if src.split_file:
            assert src.split_file in text
        for need in src.needs:
            assert need.path.split("/")[-1] in text, (name, need.path)
            for url in re.findall(r"https?://[^\s,;)]+", need.source):
                assert url in text, (name, url)


def test_internal_links_point_to_headings():
    text = _doc()
    anchors = _anchors(text)
    for target in re.findall(r"\]\(#([^)]+)\)", text):
        assert target in anchors, target


def test_config_keys_and_checker_are_documented():
    text = _doc()
    for key in DATASET_KEYS:
        assert f"`DATASET.{key}`" in text, key
    for key in CUSTOM_KEYS:
        assert f"`DATASET.CUSTOM.{key}`" in text, key
    assert "python -m clipbayes.datasets.check --root" in text
    assert "NOT guaranteed to be the published one" in text
