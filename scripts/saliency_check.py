#!/usr/bin/env python
"""How much Grad-CAM saliency falls on the tumour: per case and mean ± std over cases, against chance.

Reads the ``<id>_saliency.nii.gz`` files a bundle's inference writes with ``--saliency True`` and the
BraTS-layout dataset they were computed on (each case's ``<id>_seg.nii.gz`` and ``<id>_flair.nii.gz``).
Prints a table and writes a JSON report. Example::

    python scripts/saliency_check.py --saliency-dir bundles/resnet50_3d_ldam/predictions/saliency \\
        --dataset-dir /data/MICCAI_BraTS_2018_Data_Training --dilation-mm 5
"""

from __future__ import annotations

import sys
from pathlib import Path

import fire

from brats_grading.components.data import DatasetError
from brats_grading.saliency_check import check_saliency, format_table, write_report


def main(saliency_dir: str, dataset_dir: str, dilation_mm: float = 5.0, output: str | None = None) -> None:
    """Share of saliency mass (within the brain) inside the dilated tumour mask, and the chance level.

    Brain = non-zero FLAIR voxels; tumour = seg > 0, dilated by a ball of dilation_mm millimetres (built
    from the voxel spacing). share_inside = saliency mass in the dilated tumour / saliency mass in the
    brain; chance = the dilated tumour's share of the brain volume (what a uniform map would get);
    lift = share_inside / chance. Mean ± std (population std) are over the cases where a value is defined.

    Args:
        saliency_dir: folder of <id>_saliency.nii.gz files (inference with --saliency True writes them to
            <output_dir>/saliency). Of numbered re-runs (<id>_saliency_1.nii.gz...) the highest number is used.
        dataset_dir: BraTS-layout folder (HGG/ and LGG/, or one folder per case) holding each case's
            <id>_seg.nii.gz tumour mask and <id>_flair.nii.gz.
        dilation_mm: radius in millimetres by which the tumour mask is dilated before measuring (default 5;
            0 = the mask itself).
        output: JSON report to write (default <saliency_dir>/saliency_check.json). An existing file is kept
            and <name>_1.json, _2... is written instead.
    """
    try:
        report = check_saliency(saliency_dir, dataset_dir, float(dilation_mm))
    except (DatasetError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(format_table(report))
    path = write_report(report, output or Path(saliency_dir) / "saliency_check.json")
    print(f"wrote {path}")


if __name__ == "__main__":
    fire.Fire(main)
