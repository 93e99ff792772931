#!/usr/bin/env python
"""Publish a trained run into a bundle (models/model.pt, model.ts, large_files.yml) and zip the bundle.

    python scripts/export_bundle.py bundles/resnet50_3d_ldam --run bundles/resnet50_3d_ldam_runs/fold_0/run_<time>
    python scripts/export_bundle.py bundles/swin_unetr_cls --run <run>/checkpoints/best.pt --onnx True \
        --url https://huggingface.co/<you>/swin_unetr_cls/resolve/0.5.5 --hub True
    python scripts/export_bundle.py bundles/ensemble --members "$(cat members.json)"

A model bundle: the run's checkpoint with the better stored validation score (EMA or raw) is published,
with its operating point; the run's network settings go into the bundle's inference.json and metadata.
The ensemble: its members (its own, or --members) are packed as TorchScript into a copy of the bundle
in --output_dir, so the zip runs alone; --run may name the stacking file to ship.
The zip, <name>_v<version>.zip in --output_dir (default ./dist), holds the bundle folder. --url is
where the files will be hosted (large_files.yml lists <url>/models/model.pt with its sha256; without it
a placeholder that the zoo's CI and verify_bundle.py refuse); --hub True also writes
<output_dir>/hub/<name>/, the bundle as a Hugging Face model repository.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire

from brats_grading.zoo.ensemble_export import export_ensemble
from brats_grading.zoo.export import ExportError, export_bundle


def main(
    bundle_dir: str,
    run: str | None = None,
    output_dir: str = "dist",
    overwrite: bool = False,
    onnx: bool = False,
    url: str | None = None,
    hub: bool = False,
    members: list | str | None = None,
) -> None:
    """Export RUN (a training run folder or one of its checkpoints) into BUNDLE_DIR and package it."""
    bundle = Path(bundle_dir)
    try:
        inference = json.loads((bundle / "configs" / "inference.json").read_text())
        if "members" in inference:
            specs = json.loads(members) if isinstance(members, str) else members
            summary = export_ensemble(bundle, Path(output_dir), specs, run, overwrite, url, hub)
        elif run is None:
            raise ExportError(f"{bundle}: --run is required (a training run folder or checkpoint)")
        else:
            summary = export_bundle(bundle, Path(run), Path(output_dir), overwrite, onnx, url, hub)
    except (ExportError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary, indent=4))


if __name__ == "__main__":
    fire.Fire(main)
