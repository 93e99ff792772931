"""The MONAI Deploy example app on a synthetic case: same grade and probabilities as the bundle's own inference.

Runs in the deploy environment only (``make test-deploy``): the SDK pulls holoscan, kept out of the main one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import copy_bundle, failure_text, only_run_dir, read_csv, run_bundle

from brats_grading.zoo.export import export_bundle

pytestmark = pytest.mark.deploy

SMALL = ["--spatial_size", "[32,32,32]", "--feature_size", "12", "--num_workers", "0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, small_brats) -> Path:
    """A Swin bundle trained for one epoch on the small set, then exported (model.pt, model.ts, zip)."""
    work = tmp_path_factory.mktemp("deploy")
    bundle = copy_bundle("swin_unetr_cls", work)
    run_bundle(bundle, ["train.json"], "--dataset_dir", str(small_brats), *SMALL, "--epochs", "1")
    export_bundle(bundle, only_run_dir(work / "swin_unetr_cls_runs"), work / "dist")
    return bundle


def _deploy(case: Path, model: Path, output: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "brats_grading.deploy", "-i", str(case), "-o", str(output), "-m", str(model)],
        cwd=output.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, failure_text(result)
    return json.loads((output / "result.json").read_text())


def _four_channel_nifti(case_dir: Path, target: Path) -> Path:
    files = [next(case_dir.glob(f"*_{m}.nii.gz")) for m in ("t1", "t1ce", "t2", "flair")]
    first = nib.load(files[0])
    stacked = np.stack([np.asarray(nib.load(f).dataobj, dtype=np.float32) for f in files], axis=-1)
    nib.save(nib.Nifti1Image(stacked, first.affine), target)
    return target


def test_the_deploy_app_grades_a_case_as_the_bundle_does(exported, small_brats, tmp_path):
    case = sorted((small_brats / "HGG").iterdir())[0]
    bundle_out = tmp_path / "bundle_predictions"
    run_bundle(exported, ["inference.json"], "--input", str(case.parent), "--output_dir", str(bundle_out),
               "--num_workers", "0")  # fmt: skip
    row = next(r for r in read_csv(bundle_out / "predictions.csv") if r["id"] == case.name)

    folder_result = _deploy(case, exported / "models" / "model.ts", tmp_path / "out_folder")
    assert set(folder_result) == {"result", "probabilities", "threshold"}
    assert folder_result["result"] in ("HGG", "LGG")
    probabilities = folder_result["probabilities"]
    assert set(probabilities) == {"LGG", "HGG"} and sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert probabilities["HGG"] == pytest.approx(float(row["prob_hgg"]), abs=1e-4)
    assert folder_result["result"] == row["predicted_grade"]

    stacked = _four_channel_nifti(case, tmp_path / "case_4ch.nii.gz")
    stacked_result = _deploy(stacked, exported / "models" / "model.ts", tmp_path / "out_4ch")
    assert stacked_result["probabilities"]["HGG"] == pytest.approx(probabilities["HGG"], abs=1e-5)
    assert stacked_result["result"] == folder_result["result"]


def test_a_case_missing_a_modality_fails_naming_it(exported, small_brats, tmp_path):
    case = tmp_path / "Brats18_X_1"
    case.mkdir()
    source = sorted((small_brats / "LGG").iterdir())[0]
    for modality in ("t1", "t1ce", "t2"):
        target = case / f"Brats18_X_1_{modality}.nii.gz"
        target.write_bytes(next(source.glob(f"*_{modality}.nii.gz")).read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "brats_grading.deploy", "-i", str(case), "-o", str(tmp_path / "out"),
         "-m", str(exported / "models" / "model.ts")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0 or not (tmp_path / "out" / "result.json").exists()
    assert "missing modality 'flair'" in result.stdout + result.stderr
