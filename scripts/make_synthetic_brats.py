#!/usr/bin/env python
"""Write a synthetic BraTS 2018 training set (HGG/LGG) built on the MNI152 template.

Thin command-line wrapper around ``brats_grading.synthetic.generate_dataset``; see
docs/synthetic_data.md for the model, its limits and its cost.

Example (full size, BraTS 2018 counts, about 4 s per case per core and 10 MB per case):
    python scripts/make_synthetic_brats.py --output-dir data/synthetic
Small and quick (3 mm voxels, 40 cases):
    python scripts/make_synthetic_brats.py --output-dir data/small --hgg 28 --lgg 12 --voxel-mm 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def _difficulty(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"difficulty must be in [0, 1], got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make_synthetic_brats.py",
        description=(
            "Write OUTPUT_DIR/MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<ID>/<ID>_{t1,t1ce,t2,flair,seg}.nii.gz, "
            "survival_data.csv (HGG only) and the MNI152 copyright notice. Case ids "
            "(Brats18_SYN_NNNN_1) do not reveal the grade. Needs nilearn (pip install '.[synthetic]'); "
            "nothing is downloaded."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("data/synthetic"),
        help="folder that receives MICCAI_BraTS_2018_Data_Training/",
    )
    parser.add_argument(
        "--n-hgg", "--hgg", dest="n_hgg", type=_non_negative, default=210, help="number of high-grade cases"
    )
    parser.add_argument(
        "--n-lgg", "--lgg", dest="n_lgg", type=_non_negative, default=75, help="number of low-grade cases"
    )
    parser.add_argument(
        "--seed", type=_non_negative, default=0, help="dataset seed; same seed gives byte-identical files"
    )
    parser.add_argument(
        "--difficulty",
        type=_difficulty,
        default=0.5,
        help="grade overlap in [0, 1]: 0 nearly separable, 1 strongly overlapping phenotypes, "
        "weaker enhancement, more noise and bias field",
    )
    parser.add_argument(
        "--site",
        choices=("reference", "shifted"),
        default="reference",
        help="acquisition site: 'shifted' images the same patients with another scanner (contrast, intensity "
        "scale, noise, bias field, 6 mm slices) and tumour-shape parameter set, for robustness tests",
    )
    parser.add_argument(
        "--voxel-mm",
        type=float,
        default=1.0,
        help="voxel size in mm; 1.0 gives the BraTS 240x240x155 grid, larger values the same field of "
        "view on fewer voxels (e.g. 3.0 -> 80x80x52) for quick experiments",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="parallel processes (default: all CPU cores); the output does not depend on it",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty dataset folder instead of refusing"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the dataset path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from brats_grading.synthetic import generate_dataset

    start = time.perf_counter()
    try:
        root = generate_dataset(
            args.output_dir,
            n_hgg=args.n_hgg,
            n_lgg=args.n_lgg,
            seed=args.seed,
            difficulty=args.difficulty,
            voxel_mm=args.voxel_mm,
            workers=args.workers,
            overwrite=args.overwrite,
            site=args.site,
        )
    except (FileExistsError, ValueError, ImportError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"{args.n_hgg} HGG + {args.n_lgg} LGG cases in {time.perf_counter() - start:.1f} s")
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
