"""Does a saliency map point at the tumour? Share of saliency mass inside the dilated tumour mask, vs chance.

For one case, within the brain (non-zero FLAIR voxels):

* ``share_inside`` = saliency mass inside the tumour mask (``seg > 0``) dilated by ``dilation_mm``, divided by
  the saliency mass in the brain;
* ``chance`` = the dilated mask's share of the brain volume: the share a map spread uniformly over the brain
  would get;
* ``lift`` = ``share_inside / chance`` (1 = no better than chance).

The dilation uses a ball in millimetres built from the voxel spacing, so anisotropic images are dilated by the
same physical distance along every axis. Saliency maps are the ``<id>_saliency.nii.gz`` files the bundles'
inference writes with ``--saliency True``: same shape and affine as the case's images.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import binary_dilation

from brats_grading.components.data import DatasetError, find_modality_file, scan_cases
from brats_grading.components.outputs import unused_path

SALIENCY_FILE = re.compile(r"^(?P<id>.+)_saliency(?:_(?P<n>\d+))?\.nii(?:\.gz)?$")
METRICS = ("share_inside", "chance", "lift")


def ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean structuring element: the voxel offsets within ``radius_mm`` of the centre, given voxel ``spacing``."""
    if radius_mm < 0 or not math.isfinite(radius_mm):
        raise ValueError(f"dilation radius must be a finite number >= 0 mm, got {radius_mm}")
    spacing = np.asarray(spacing, dtype=float)
    if spacing.ndim != 1 or not np.all(spacing > 0):
        raise ValueError(f"voxel spacing must be positive, got {spacing.tolist()}")
    half = np.floor(radius_mm / spacing + 1e-9).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def tumour_share(
    saliency: np.ndarray, seg: np.ndarray, brain: np.ndarray, spacing: Sequence[float], dilation_mm: float = 5.0
) -> dict:
    """``share_inside``, ``chance`` and ``lift`` of one case (None where undefined), with the voxel counts.

    ``saliency`` must be non-negative and finite; ``seg > 0`` is the tumour, ``brain`` (bool) the voxels counted.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != seg.shape or saliency.shape != brain.shape:
        raise ValueError(f"shapes differ: saliency {saliency.shape}, seg {seg.shape}, brain {brain.shape}")
    if not np.all(np.isfinite(saliency)):
        raise ValueError("saliency has non-finite values")
    if np.any(saliency < 0):
        raise ValueError(f"saliency must be non-negative (min {saliency.min():.4g}): mass shares need it")
    brain = np.asarray(brain, dtype=bool)
    tumour = np.asarray(seg) > 0
    region = binary_dilation(tumour, structure=ball(dilation_mm, spacing)) if dilation_mm > 0 else tumour
    region = region & brain
    mass = float(saliency[brain].sum())
    brain_voxels = int(brain.sum())
    share = float(saliency[region].sum()) / mass if mass > 0 else None
    chance = int(region.sum()) / brain_voxels if brain_voxels else None
    lift = share / chance if share is not None and chance else None
    return {
        "share_inside": share,
        "chance": chance,
        "lift": lift,
        "brain_voxels": brain_voxels,
        "tumour_voxels": int(tumour.sum()),
        "region_voxels": int(region.sum()),
        "saliency_mass_in_brain": mass,
    }


def saliency_files(saliency_dir: str | Path) -> dict[str, Path]:
    """``case id -> file`` for the ``<id>_saliency[_<n>].nii[.gz]`` files; of several runs, the highest ``n``."""
    folder = Path(saliency_dir)
    if not folder.is_dir():
        raise DatasetError(f"saliency folder {folder} does not exist")
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = SALIENCY_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        n = int(match["n"] or 0)
        if match["id"] not in found or n > found[match["id"]][0]:
            found[match["id"]] = (n, path)
    if not found:
        raise DatasetError(f"{folder} holds no <id>_saliency.nii.gz file")
    return {case_id: path for case_id, (_, path) in sorted(found.items())}


def _load(path: Path, reference: nib.Nifti1Image | None = None) -> nib.Nifti1Image:
    image = nib.load(str(path))
    if reference is not None and (
        image.shape[:3] != reference.shape[:3] or not np.allclose(image.affine, reference.affine, atol=1e-3)
    ):
        raise DatasetError(
            f"{path}: shape {image.shape} / affine differ from {reference.get_filename()} {reference.shape}: "
            "the saliency map must be in the case's image space"
        )
    return image


def check_saliency(saliency_dir: str | Path, dataset_dir: str | Path, dilation_mm: float = 5.0) -> dict:
    """Score every saliency file against its case's tumour mask; ``{"cases": [...], "summary": {...}}``.

    ``summary`` holds mean and standard deviation (population, ``ddof=0``) over the cases where each metric is
    defined, and how many cases that is.
    """
    ball(dilation_mm, (1.0, 1.0, 1.0))  # validates the radius before any file is read
    files = saliency_files(saliency_dir)
    root = Path(dataset_dir)
    case_dirs = {
        r["id"]: (root / r["image"][0]).parent for r in scan_cases(root, modalities=("flair",), require_grades=False)
    }
    unknown = sorted(set(files) - set(case_dirs))
    if unknown:
        raise DatasetError(f"no case folder in {root} for saliency maps of {unknown[:10]}")
    cases = []
    for case_id, path in files.items():
        seg_image = nib.load(str(find_modality_file(case_dirs[case_id], case_id, "seg")))
        flair = _load(find_modality_file(case_dirs[case_id], case_id, "flair"), seg_image)
        saliency = _load(path, seg_image)
        scores = tumour_share(
            np.squeeze(saliency.get_fdata(dtype=np.float32)),
            np.asarray(seg_image.dataobj),
            np.asarray(flair.dataobj) != 0,
            seg_image.header.get_zooms()[:3],
            dilation_mm,
        )
        cases.append({"id": case_id, "file": str(path), **scores})
    summary = {}
    for metric in METRICS:
        values = [c[metric] for c in cases if c[metric] is not None]
        summary[metric] = {
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None,
            "n": len(values),
        }
    return {
        "saliency_dir": str(saliency_dir),
        "dataset_dir": str(dataset_dir),
        "dilation_mm": float(dilation_mm),
        "cases": cases,
        "summary": summary,
    }


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(report: dict) -> str:
    """Plain-text table: one row per case, then mean ± std over cases."""
    width = max([len("case"), *(len(c["id"]) for c in report["cases"])])
    lines = [f"{'case':<{width}}  {'share_inside':>12}  {'chance':>8}  {'lift':>8}"]
    for case in report["cases"]:
        lines.append(
            f"{case['id']:<{width}}  {_cell(case['share_inside']):>12}  {_cell(case['chance']):>8}  "
            f"{_cell(case['lift']):>8}"
        )
    lines.append("")
    for metric in METRICS:
        s = report["summary"][metric]
        spread = "n/a" if s["mean"] is None else f"{s['mean']:.3f} ± {s['std']:.3f}"
        lines.append(f"{metric:<12} mean ± std over {s['n']} case(s): {spread}")
    lines.append(f"(tumour mask dilated by {report['dilation_mm']:g} mm; brain = non-zero FLAIR voxels)")
    return "\n".join(lines)


def write_report(report: dict, output: str | Path) -> Path:
    """Write the report as JSON; an existing file is kept and ``<name>_1.json``, ``_2``... is written instead."""
    path = unused_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
