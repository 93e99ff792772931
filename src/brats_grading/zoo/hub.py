"""Lay a published bundle out as a Hugging Face model repository: the bundle at the root, weights inside.

MONAI's default hosting looks for ``MONAI/<name>`` on the Hub at the version tag and downloads that
repository as the bundle folder, so the repository's root must be the bundle itself (``configs/``,
``models/``, ``scripts/``, ``LICENSE``) and its ``README.md`` the model card: the bundle's
``docs/README.md`` under the Hub's metadata header. ``large_files.yml`` stays, with the URL each file has
in this layout (``<url>/models/model.pt``), so the same folder also serves the zoo's large-file download.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

__all__ = ["hub_model_card", "write_hub_folder"]

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "predictions", "*_runs", "replaced_*")


def hub_model_card(bundle: Path) -> str:
    """``docs/README.md`` under the Hub's YAML header (licence, library, tags, version)."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    readme = (bundle / "docs" / "README.md").read_text()
    header = [
        "---",
        "license: apache-2.0",
        "library_name: monai",
        "pipeline_tag: image-classification",
        "tags:",
        *(f"- {tag}" for tag in ("monai", "monai-bundle", "medical", "mri", "brain-tumor", "classification")),
        f"version: {metadata['version']}",
        "---",
        "",
    ]
    return "\n".join(header) + readme


def write_hub_folder(bundle: Path, output_dir: Path) -> Path:
    """``<output_dir>/hub/<name>/``: the repository to push (``git lfs track '*.pt' '*.ts' '*.onnx'``)."""
    target = output_dir / "hub" / bundle.name
    if target.exists():
        raise FileExistsError(f"{target} exists; remove it or choose another output_dir")
    shutil.copytree(bundle, target, ignore=IGNORED)
    (target / "README.md").write_text(hub_model_card(bundle))
    return target
