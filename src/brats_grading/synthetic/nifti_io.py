"""Writing a dataset's files: gzip NIfTI volumes, the survival table and the MNI152 notice.

Everything here is byte-deterministic (fixed NIfTI header fields, gzip mtime 0, Unix line
endings) so that the same seed gives byte-identical datasets whatever the number of workers.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .layout import MODALITIES, NOTICE_FILENAME, SURVIVAL_FILENAME, SURVIVAL_HEADER
from .template import MNI152_NOTICE

#: gzip level 6 is about twice as fast as 9 for ~1 % larger files (see docs/synthetic_data.md).
GZIP_LEVEL = 6


def _nifti_gz(array: NDArray, affine: NDArray[np.float64]) -> bytes:
    """Deterministic ``.nii.gz`` bytes: fixed header fields and gzip mtime 0."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    hdr = img.header
    hdr.set_data_dtype(array.dtype)
    hdr.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr["descrip"] = b"synthetic BraTS18 (brats_grading)"
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    return gzip.compress(img.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def _write_case_files(folder: Path, case_id: str, arrays: dict[str, NDArray], affine: NDArray) -> None:
    """Write the five ``<case_id>_{t1,t1ce,t2,flair,seg}.nii.gz`` files of a case into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in (*MODALITIES, "seg"):
        (folder / f"{case_id}_{key}.nii.gz").write_bytes(_nifti_gz(arrays[key], affine))


def _write_survival_csv(root: Path, rows: Iterable[dict[str, str]]) -> None:
    """``survival_data.csv`` with the BraTS 2018 header and one row per given record."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SURVIVAL_HEADER, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    (root / SURVIVAL_FILENAME).write_text(buf.getvalue(), encoding="utf-8")


def _write_notice(root: Path) -> None:
    """Copy the template's copyright notice into the dataset (its licence requires it)."""
    (root / NOTICE_FILENAME).write_text(MNI152_NOTICE, encoding="utf-8")
