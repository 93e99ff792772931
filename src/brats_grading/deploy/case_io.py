"""Read one case for the Deploy app, and write its grade: plain nibabel / JSON, no MONAI Deploy import.

The bundle's own preprocessing orients every case to RAS from the NIfTI affine. MONAI Deploy's bundle
operator passes the array on with an identity affine, so the case is put in RAS (nibabel's closest
canonical orientation) here, where the affine is still known: the network then sees the same voxels as
under ``monai.bundle run``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..components.data import find_modality_file
from ..components.validation import check_case_headers

__all__ = ["grade_result", "read_case", "write_result"]


def read_case(path: str | Path, modalities: Sequence[str]) -> np.ndarray:
    """A case as a channel-last float32 array (W, H, D, C) in RAS order.

    ``path`` is a case folder holding ``<id>_<modality>.nii.gz`` for each of ``modalities``, or one
    4-D NIfTI whose last axis holds the modalities in that order.
    """
    import nibabel as nib

    path = Path(path)
    if path.is_dir():  # the bundles' own rules: <id>_<modality>.nii[.gz], id = folder name, one voxel grid
        files = [find_modality_file(path, path.name, m) for m in modalities]
        images = [nib.as_closest_canonical(image) for image in check_case_headers(path.name, files)]
        return np.stack([np.asarray(img.dataobj, dtype=np.float32) for img in images], axis=-1)
    image = nib.as_closest_canonical(nib.load(path))
    if image.ndim != 4 or image.shape[-1] != len(modalities):
        raise ValueError(f"{path}: expected a 4-D NIfTI with {len(modalities)} channels last, got {image.shape}")
    return np.ascontiguousarray(np.asarray(image.dataobj, dtype=np.float32))  # canonical flips give negative strides


def grade_result(probabilities, class_names: dict, threshold: float) -> dict:
    """``{"result": "HGG"|"LGG", "probabilities": {...}}``: HGG when P(HGG) reaches the bundle's threshold."""
    values = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    names = [class_names[str(i)] for i in range(len(values))]
    by_name = {name: float(v) for name, v in zip(names, values, strict=True)}
    return {
        "result": "HGG" if by_name["HGG"] >= threshold else "LGG",
        "probabilities": by_name,
        "threshold": float(threshold),
    }


def write_result(result: dict, output_dir: str | Path, name: str = "result.json") -> Path:
    output = Path(output_dir) / name
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=4) + "\n")
    return output
