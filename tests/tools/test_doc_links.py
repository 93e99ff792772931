"""Every relative link in the docs points at a file that exists and, with ``#anchor``, at a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "bundles").glob("*/docs/README.md")])


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text().splitlines()
    return {_slug(line.lstrip("#")) for line in lines if line.startswith("#")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists() or anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, broken
