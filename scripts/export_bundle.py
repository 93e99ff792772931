#!/usr/bin/env python
"""Publish a trained run into a bundle (models/model.pt, model.ts, large_files.yml) and zip the bundle.

    python scripts/export_bundle.py bundles/resnet50_3d_ldam --run bundles/resnet50_3d_ldam_runs/fold_0/run_<time>
    python scripts/export_bundle.py bundles/swin_unetr_cls --run <run>/checkpoints/best.pt --output_dir dist

The run's checkpoint with the better stored validation score (EMA or raw) is published, with its
operating point; the run's network settings (modalities, input size, layout, feature size) go into the
bundle's inference.json and metadata. The zip, <name>_v<version>.zip in --output_dir (default ./dist),
holds the bundle folder and runs on its own. Replace the URL placeholders in large_files.yml with
where you host the weights before submitting to the model zoo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire

from brats_grading.zoo.export import ExportError, export_bundle


def main(bundle_dir: str, run: str, output_dir: str = "dist", overwrite: bool = False, onnx: bool = False) -> None:
    """Export RUN (a training run folder or one of its checkpoints) into BUNDLE_DIR and package it;
    --onnx True adds models/model.onnx (needs the .[onnx] extra)."""
    try:
        summary = export_bundle(Path(bundle_dir), Path(run), Path(output_dir), overwrite, onnx)
    except (ExportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary, indent=4))


if __name__ == "__main__":
    fire.Fire(main)
