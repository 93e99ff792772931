"""Tiny BraTS 2018 folders for the zoo-style unit tests (kept next to them: the zoo's ci/unit_tests copy it too).

Four cases, HGG/<id>/<id>_{t1,t1ce,t2,flair}.nii.gz and LGG/..., 24^3 at 4 mm: noise in a head-shaped
ball, brighter where a "tumour" is; what is tested is that the workflows run, not that they learn.
"""

from __future__ import annotations

import contextlib
import os
import sys

import nibabel as nib
import numpy as np

MODALITIES = ("t1", "t1ce", "t2", "flair")


def write_brats_cases(root: str, per_grade: int = 2, size: int = 24) -> str:
    rng = np.random.default_rng(0)
    grid = np.indices((size,) * 3).transpose(1, 2, 3, 0) - size / 2
    head = np.linalg.norm(grid, axis=-1) < size * 0.45
    tumour = np.linalg.norm(grid - size / 8, axis=-1) < size * 0.15
    for grade in ("HGG", "LGG"):
        for index in range(per_grade):
            case_id = f"Brats18_TEST_{grade}_{index}"
            folder = os.path.join(root, grade, case_id)
            os.makedirs(folder)
            for modality in MODALITIES:
                volume = (rng.normal(100, 10, (size,) * 3) + 80 * tumour * (grade == "HGG")) * head
                image = nib.Nifti1Image(volume.astype(np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
                nib.save(image, os.path.join(folder, f"{case_id}_{modality}.nii.gz"))
    return root


@contextlib.contextmanager
def bundle_on_path(bundle_root: str):
    """The bundle's ``scripts`` importable (every bundle names its package ``scripts``: one at a time)."""
    cached = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "scripts"}
    sys.path.insert(0, bundle_root)
    try:
        yield
    finally:
        sys.path.remove(bundle_root)
        for name in [n for n in sys.modules if n.split(".")[0] == "scripts"]:
            del sys.modules[name]
        sys.modules.update(cached)
