#!/usr/bin/env python
"""Write a synthetic BraTS 2018 training set (HGG / LGG, four modalities + seg) on real MNI anatomy.

The layout is exactly BraTS 2018's:
MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<ID>/<ID>_{t1,t1ce,t2,flair,seg}.nii.gz + survival_data.csv.
Every case is a pure function of (--seed, case number): reruns give byte-identical files.
Needs nilearn (the MNI152 2009 template ships in its wheel): pip install nilearn.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from brats_grading.synthetic import generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("data/synthetic"),
        help="parent folder of the dataset (default: data/synthetic)",
    )
    parser.add_argument(
        "--hgg", type=int, default=210, help="number of HGG cases (default: 210, as BraTS 2018)"
    )
    parser.add_argument(
        "--lgg", type=int, default=75, help="number of LGG cases (default: 75, as BraTS 2018)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: 0)")
    parser.add_argument(
        "--difficulty",
        type=float,
        default=0.5,
        help="grade overlap in [0, 1]: 0 nearly separable, 1 atypical cases, weak enhancement, more noise (default: 0.5)",
    )
    parser.add_argument(
        "--voxel-mm",
        type=float,
        default=1.0,
        help="voxel size; 1.0 is BraTS's 240x240x155 grid, 2.5 gives 96x96x62 for fast tests (default: 1.0)",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset in --output-dir"
    )
    args = parser.parse_args(argv)
    start = time.time()
    try:
        root = generate_dataset(
            args.output_dir,
            args.hgg,
            args.lgg,
            args.seed,
            args.difficulty,
            args.voxel_mm,
            args.workers,
            args.overwrite,
        )
    except (FileExistsError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n = args.hgg + args.lgg
    print(f"wrote {n} cases ({args.hgg} HGG, {args.lgg} LGG) to {root} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
