"""Changelog entries a user can scan: one line each, as the model zoo's bundles keep them."""

from __future__ import annotations

import json

import pytest
from helpers import REPO

BUNDLES = sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_changelog_entry_is_one_line_of_at_most_200_characters(bundle):
    metadata = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]
    for version, entry in metadata["changelog"].items():
        assert "\n" not in entry and len(entry) <= 200, (version, len(entry))
