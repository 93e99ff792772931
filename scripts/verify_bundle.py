#!/usr/bin/env python
"""Run, offline, every check the MONAI model zoo's CI runs on a new bundle; one pass/fail line per check.

    python scripts/verify_bundle.py bundles/resnet50_3d_ldam
    python scripts/verify_bundle.py bundles/swin_unetr_cls --only "['torchscript','formatting']"

Checks, in the zoo's order: files (large_files.yml downloaded with its hashes checked, then LICENSE,
metadata, models/model.pt and the inference config), changelog, pins installable on Python 3.10,
metadata schema, workflow properties (train, train+evaluate, inference), network in/out, TorchScript
export (scripted, as the zoo does), formatting (black 120, isort, flake8, check-docstring-first, pretty
JSON), absolute paths in configs, file sizes (25 MB). Exemptions come from the zoo's lists by bundle
name (docs/deployment.md), never from the bundle. Exits 1 when any check fails, so a source bundle
without weights fails until it is exported.
Needs the repository installed with its dev extra (the formatters, and nilearn for the synthetic
cases the property check runs on).
"""

from __future__ import annotations

import sys
from pathlib import Path

import fire

from brats_grading.zoo.verify import CHECK_NAMES, verify_bundle


def main(bundle_dir: str, only: tuple[str, ...] | list[str] | str = ()) -> None:
    """Verify BUNDLE_DIR; ``--only`` runs the named checks only (one of: see the module docstring)."""
    names = (only,) if isinstance(only, str) else tuple(only)
    results = verify_bundle(Path(bundle_dir), names)
    print(f"verify_bundle {Path(bundle_dir).resolve().name} ({len(results)} of {len(CHECK_NAMES)} checks)")
    for result in results:
        print(result.line())
    failed = [r.name for r in results if not r.passed]
    skipped = sum(not r.applicable for r in results)
    passed = len(results) - len(failed) - skipped
    print(f"{passed} passed, {skipped} not applicable, {len(failed)} failed" + (f": {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    fire.Fire(main)
