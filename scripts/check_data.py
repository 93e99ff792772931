#!/usr/bin/env python
"""Check a BraTS folder (and its datalist) before training: list every bad case and fold, exit 1 if any.

Reads every voxel: a missing or truncated file, modalities on different grids, NaN / Inf or all-zero
volumes, labels other than 0 / 1, paths outside the folder, empty folds and folds lacking a grade.

    python scripts/check_data.py /data/MICCAI_BraTS_2018_Data_Training
    python scripts/check_data.py /data/brats --datalist /data/brats/datalist.json --modalities "[flair]"
"""

from __future__ import annotations

import sys

import fire

from brats_grading.components.data import CHANNEL_ORDER
from brats_grading.data_check import check_dataset


def main(dataset_dir: str, datalist: str | None = None, modalities=CHANNEL_ORDER, workers: int | None = None) -> None:
    """Check ``dataset_dir``; ``datalist`` defaults to ``<dataset_dir>/datalist.json`` when it exists."""
    cases, problems = check_dataset(dataset_dir, datalist, list(modalities), workers)
    for problem in problems:
        print(f"error: {problem}")
    print(f"{cases} cases checked, {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    fire.Fire(main)
