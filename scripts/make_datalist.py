#!/usr/bin/env python
"""Write datalist.json for a BraTS folder: four modality paths per patient, label, and fold.

Layouts: BraTS 2018/2019 (HGG/ and LGG/ folders), BraTS 2020 (case folders + name_mapping.csv),
or any folder of case folders plus --grades-csv. Channel order: t1, t1ce, t2, flair.
Labels: 0 = LGG, 1 = HGG (the positive class). Folds: patient-level StratifiedKFold.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from brats_grading.components.data import DatasetError
from brats_grading.components.datalist import build_datalist, write_datalist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="BraTS folder, e.g. .../MICCAI_BraTS_2018_Data_Training")
    parser.add_argument(
        "--output", type=Path, default=None, help="where to write the datalist (default: <dataset_dir>/datalist.json)"
    )
    parser.add_argument("--folds", type=int, default=5, help="number of stratified folds (default: 5)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the fold split (default: 42)")
    parser.add_argument(
        "--grades-csv",
        type=Path,
        default=None,
        help="CSV with an id column and a 'Grade' column (HGG/LGG), for folders without HGG/LGG sub-folders",
    )
    parser.add_argument(
        "--no-check-readable", action="store_true", help="skip opening every NIfTI header (faster on slow disks)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing datalist with other content")
    args = parser.parse_args(argv)
    try:
        datalist = build_datalist(
            args.dataset_dir, args.folds, args.seed, args.grades_csv, check_readable=not args.no_check_readable
        )
        output = write_datalist(datalist, args.output or args.dataset_dir / "datalist.json", args.overwrite)
    except (DatasetError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    grades = Counter(r["grade"] for r in datalist["training"])
    print(f"wrote {output}: {len(datalist['training'])} cases ({dict(grades)}), {args.folds} folds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
