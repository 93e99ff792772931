"""scripts/saliency_check.py: share of saliency inside the dilated tumour mask vs chance, on hand-made cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import REPO

from brats_grading.saliency_check import ball, check_saliency, tumour_share

SCRIPT = REPO / "scripts" / "saliency_check.py"
SPACING = (1.0, 1.0, 2.0)
SHAPE = (12, 12, 8)


def _volumes() -> tuple[np.ndarray, np.ndarray]:
    """A 8x8x6 brain (384 voxels) holding a 2x2x2 tumour (label 4, 8 voxels)."""
    flair = np.zeros(SHAPE, np.int16)
    flair[2:10, 2:10, 1:7] = 100
    seg = np.zeros(SHAPE, np.uint8)
    seg[5:7, 5:7, 3:5] = 4
    return flair, seg


def _write_case(tmp_path: Path, saliency: np.ndarray, case_id: str = "Case_000") -> tuple[Path, Path]:
    """BraTS layout ``data/HGG/<id>/<id>_{flair,seg}.nii.gz`` and ``saliency/<id>_saliency.nii.gz``."""
    affine = np.diag([*SPACING, 1.0])
    flair, seg = _volumes()
    case_dir = tmp_path / "data" / "HGG" / case_id
    case_dir.mkdir(parents=True)
    nib.save(nib.Nifti1Image(flair, affine), case_dir / f"{case_id}_flair.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), case_dir / f"{case_id}_seg.nii.gz")
    (tmp_path / "saliency").mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(saliency.astype(np.float32), affine), tmp_path / "saliency" / f"{case_id}_saliency.nii.gz")
    return tmp_path / "saliency", tmp_path / "data"


def test_ball_follows_the_voxel_spacing():
    assert ball(1.5, SPACING).shape == (3, 3, 1) and ball(1.5, SPACING).all()  # 2 mm slices: no z neighbour
    assert ball(1.0, (1.0, 1.0, 1.0)).sum() == 7  # the 6-neighbourhood and the centre
    assert ball(0.5, SPACING).sum() == 1


def test_saliency_equal_to_the_tumour_is_all_inside_and_chance_is_the_mask_share_of_the_brain(tmp_path):
    flair, seg = _volumes()
    saliency = (seg > 0).astype(np.float32)
    brain = flair != 0
    exact = tumour_share(saliency, seg, brain, SPACING, dilation_mm=0)
    assert exact["share_inside"] == 1.0
    assert exact["chance"] == pytest.approx(8 / 384)
    dilated = tumour_share(saliency, seg, brain, SPACING, dilation_mm=1.5)
    assert dilated["share_inside"] == 1.0
    assert dilated["chance"] == pytest.approx(4 * 4 * 2 / 384)  # grown by one voxel in-plane only
    report = check_saliency(*_write_case(tmp_path, saliency), dilation_mm=5.0)
    (case,) = report["cases"]
    region = case["region_voxels"]
    assert case["share_inside"] == pytest.approx(1.0)
    assert case["chance"] == pytest.approx(region / 384) and 8 < region < 384
    assert report["summary"]["share_inside"] == {"mean": pytest.approx(1.0), "std": 0.0, "n": 1}


def test_uniform_saliency_scores_exactly_chance(tmp_path):
    report = check_saliency(*_write_case(tmp_path, np.full(SHAPE, 0.3)))
    (case,) = report["cases"]
    assert case["share_inside"] == pytest.approx(case["chance"])
    assert case["lift"] == pytest.approx(1.0)


def test_negative_saliency_is_refused():
    flair, seg = _volumes()
    with pytest.raises(ValueError, match="non-negative"):
        tumour_share(-np.ones(SHAPE), seg, flair != 0, SPACING)


def test_cli_prints_a_table_writes_json_and_documents_every_option(tmp_path):
    saliency_dir, data_dir = _write_case(tmp_path, np.full(SHAPE, 1.0))
    cli = [sys.executable, str(SCRIPT), "--saliency-dir", str(saliency_dir), "--dataset-dir", str(data_dir)]
    result = subprocess.run([*cli, "--dilation-mm", "0"], capture_output=True, text=True, check=True)
    assert "Case_000" in result.stdout and "mean ± std" in result.stdout
    report = json.loads((saliency_dir / "saliency_check.json").read_text())
    assert report["dilation_mm"] == 0.0 and report["summary"]["lift"]["mean"] == pytest.approx(1.0)
    subprocess.run(cli, capture_output=True, text=True, check=True)
    assert (saliency_dir / "saliency_check_1.json").is_file()  # the first report is kept
    help_text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True)
    text = help_text.stdout + help_text.stderr
    for option, explained in (
        ("SALIENCY_DIR", "folder of <id>_saliency.nii.gz"),
        ("DATASET_DIR", "<id>_seg.nii.gz tumour mask"),
        ("--dilation_mm", "radius in millimetres"),
        ("--output", "JSON report"),
    ):
        assert option in text and explained in text, option
