"""Bundle docs a user can scan: READMEs of the model zoo's length and sections, one-line changelog entries."""

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


#: the sections every bundle README has, in this order (the model zoo's README template names them so)
README_SECTIONS = (
    "## Model Description",
    "## Data",
    "## Training Configuration",
    "## Performance",
    "## System Configuration",
    "## MONAI Bundle Commands",
    "## Outputs",
    "## Limitations",
    "## References",
    "## License",
)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_readme_has_the_template_sections_in_order_in_under_250_lines(bundle):
    lines = (REPO / "bundles" / bundle / "docs" / "README.md").read_text().splitlines()
    assert len(lines) < 250, len(lines)
    headings = [line for line in lines if line in README_SECTIONS]
    assert headings == list(README_SECTIONS)
