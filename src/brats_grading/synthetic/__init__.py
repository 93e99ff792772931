"""Synthetic BraTS 2018-style training data built on real MNI152 anatomy.

Why this exists: the real BraTS 2018 data cannot be redistributed, yet the bundles, their tests and
CI need data with the same on-disk layout, geometry and (coarsely) the same radiological grade cues.
Each case is the MNI152 2009 template (T1 brain mask plus grey/white-matter probability maps shipped
inside the nilearn wheel) under a random similarity warp, with a procedurally grown tumour whose
phenotype depends on the grade, rendered into four MR contrasts with partial-volume mixing, a smooth
bias field, per-case gains and Rician noise.  ``docs/synthetic_data.md`` describes the model, its
limits and measured costs.

Every case is a pure function of ``(seed, case_id, grade, difficulty, voxel_mm)`` so that parallel
generation equals serial generation and reruns are byte-identical.

Modules, one per concern:

- ``layout``: names and limits of the BraTS 2018 on-disk layout (folders, modalities, grades).
- ``streams``: the seeded, independent random streams of one case.
- ``geometry``: BraTS grid and affine, rotations, the similarity warp and the crop of a case.
- ``fields``: smooth random fields (cubic B-splines on a millimetre lattice).
- ``template``: the MNI152 template (located in nilearn, loaded once, pooled) and its notice.
- ``tumour``: grade phenotype, tumour compartments and the label map.
- ``tissue``: template tissue maps pulled onto the grid with mass effect; CSF/GM/WM fractions.
- ``rendering``: contrast tables, per-case appearance and the four rendered images.
- ``nifti_io``: deterministic ``.nii.gz`` files, the survival table and the notice file.
- ``case``: ``generate_case``, the sequence of the steps above for one case.
- ``dataset``: case ids, grade assignment, survival rows and the parallel ``generate_dataset``.
"""

from __future__ import annotations

from .case import generate_case
from .dataset import assign_grades, format_case_id, generate_dataset, survival_record
from .geometry import BRATS_SHAPE_1MM, brats_affine, grid_shape
from .layout import (
    DATASET_DIRNAME,
    GRADES,
    MAX_CASES,
    MODALITIES,
    NOTICE_FILENAME,
    SEG_LABELS,
    SURVIVAL_FILENAME,
    SURVIVAL_HEADER,
)
from .nifti_io import GZIP_LEVEL
from .template import MNI152_NOTICE

__all__ = [
    "BRATS_SHAPE_1MM",
    "DATASET_DIRNAME",
    "GRADES",
    "GZIP_LEVEL",
    "MAX_CASES",
    "MNI152_NOTICE",
    "MODALITIES",
    "NOTICE_FILENAME",
    "SEG_LABELS",
    "SURVIVAL_FILENAME",
    "SURVIVAL_HEADER",
    "assign_grades",
    "brats_affine",
    "format_case_id",
    "generate_case",
    "generate_dataset",
    "grid_shape",
    "survival_record",
]
