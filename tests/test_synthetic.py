"""The synthetic BraTS generator: layout, file format, determinism, and measurable phenotypes."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats_grading.synthetic import DATASET_DIRNAME, MODALITIES, case_list, generate_case, generate_dataset

REPO = Path(__file__).resolve().parents[1]
FILES = (*MODALITIES, "seg")


def _enhancing_fraction(root: Path, grade: str) -> float:
    cases = sorted((root / grade).iterdir())
    present = [np.any(np.asarray(nib.load(c / f"{c.name}_seg.nii.gz").dataobj) == 4) for c in cases]
    return float(np.mean(present))


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("easy"), 12, 12, seed=1, difficulty=0.0, voxel_mm=4.0, workers=2
    )


@pytest.fixture(scope="module")
def hard(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("hard"), 12, 12, seed=1, difficulty=1.0, voxel_mm=4.0, workers=2
    )


def test_layout_and_naming_are_brats_2018(small_brats):
    assert small_brats.name == DATASET_DIRNAME
    assert sorted(p.name for p in small_brats.iterdir() if p.is_dir()) == ["HGG", "LGG"]
    for grade in ("HGG", "LGG"):
        for case in (small_brats / grade).iterdir():
            assert case.name.startswith("Brats18_SYN_") and case.name.endswith("_1")
            assert sorted(p.name for p in case.iterdir()) == sorted(f"{case.name}_{f}.nii.gz" for f in FILES)
    assert (small_brats / "MNI152_NOTICE.txt").read_text().count("McConnell Brain Imaging Centre") == 1


def test_survival_csv_lists_hgg_cases_only(small_brats):
    with open(small_brats / "survival_data.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["BraTS18ID", "Age", "Survival", "ResectionStatus"]
    assert sorted(r[0] for r in rows[1:]) == sorted(p.name for p in (small_brats / "HGG").iterdir())
    assert all(20 <= float(r[1]) <= 85 and int(r[2]) > 0 and r[3] in {"GTR", "STR", "NA"} for r in rows[1:])


def test_affine_orientation_dtypes_and_labels(small_brats):
    case = next((small_brats / "HGG").iterdir())
    for name in FILES:
        image = nib.load(case / f"{case.name}_{name}.nii.gz")
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert image.shape == (80, 80, 52) and image.header.get_zooms() == (3.0, 3.0, 3.0)
        assert np.allclose(image.affine, [[-3, 0, 0, 0], [0, -3, 0, 239], [0, 0, 3, 0], [0, 0, 0, 1]])
        assert image.get_data_dtype() == (np.uint8 if name == "seg" else np.int16)
    seg = np.asarray(nib.load(case / f"{case.name}_seg.nii.gz").dataobj)
    assert set(np.unique(seg)) <= {0, 1, 2, 4}


def test_full_size_grid_is_240_240_155_at_1mm():
    arrays = generate_case("Brats18_SYN_0001_1", "HGG", seed=0, difficulty=0.5, voxel_mm=1.0)
    assert {a.shape for a in arrays.values()} == {(240, 240, 155)}


def test_background_is_exactly_zero_and_shared_by_all_modalities(small_brats):
    case = next((small_brats / "LGG").iterdir())
    masks = [np.asarray(nib.load(case / f"{case.name}_{m}.nii.gz").dataobj) > 0 for m in MODALITIES]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    assert 0.05 < masks[0].mean() < 0.5  # a brain, not the whole box
    seg = np.asarray(nib.load(case / f"{case.name}_seg.nii.gz").dataobj)
    assert not np.any(seg[~masks[0]])  # tumour labels inside the brain only


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = generate_dataset(tmp_path / "a", 1, 1, seed=3, voxel_mm=5.0, workers=1)
    b = generate_dataset(tmp_path / "b", 1, 1, seed=3, voxel_mm=5.0, workers=2)  # parallel == serial
    c = generate_dataset(tmp_path / "c", 1, 1, seed=4, voxel_mm=5.0, workers=1)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.nii.gz")) and len(files_a) == 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert (a / "survival_data.csv").read_bytes() == (b / "survival_data.csv").read_bytes()
    t1_a = next(a.rglob("*_t1.nii.gz")).read_bytes()
    t1_c = next(c.rglob("*_t1.nii.gz")).read_bytes()
    assert t1_a != t1_c


def test_ids_do_not_reveal_the_grade():
    cases = case_list(210, 75, seed=0)
    grades = [g for _, g in cases]
    assert grades.count("HGG") == 210 and grades.count("LGG") == 75
    assert grades != sorted(grades) and grades != sorted(grades, reverse=True)
    first_lgg = grades.index("LGG")
    assert first_lgg < 30  # LGG ids are spread over the range, not all after the HGG ones


def test_enhancement_separates_grades_at_low_difficulty(easy):
    assert _enhancing_fraction(easy, "HGG") >= 0.9
    assert _enhancing_fraction(easy, "LGG") <= 0.2


def test_grade_gap_shrinks_as_difficulty_rises(easy, hard):
    easy_gap = _enhancing_fraction(easy, "HGG") - _enhancing_fraction(easy, "LGG")
    hard_gap = _enhancing_fraction(hard, "HGG") - _enhancing_fraction(hard, "LGG")
    assert hard_gap < easy_gap


def test_tissue_contrasts_follow_mri_physics():
    arrays = generate_case("Brats18_SYN_0005_1", "HGG", seed=2, difficulty=0.0, voxel_mm=2.0)
    seg = arrays["seg"]
    brain = arrays["t1"] > 0
    t1 = arrays["t1"].astype(float)
    # normal tissue classes from T1 (no template needed): darkest third ~ CSF, brightest ~ WM
    normal = brain & (seg == 0)
    low, high = np.percentile(t1[normal], [15, 85])
    csf, wm = normal & (t1 < low), normal & (t1 > high)
    assert arrays["t2"][csf].mean() > arrays["t2"][wm].mean()  # CSF bright on T2
    assert arrays["flair"][csf].mean() < arrays["flair"][wm].mean() * 1.2  # CSF dark on FLAIR
    if np.any(seg == 4):
        assert arrays["t1ce"][seg == 4].mean() > 1.3 * arrays["t1ce"][wm].mean()  # enhancing rim
    assert arrays["flair"][seg == 2].mean() > arrays["flair"][normal].mean()  # edema bright on FLAIR


def test_existing_dataset_is_not_overwritten(tmp_path):
    generate_dataset(tmp_path, 1, 1, seed=0, voxel_mm=6.0, workers=1)
    with pytest.raises(FileExistsError, match=DATASET_DIRNAME):
        generate_dataset(tmp_path, 1, 1, seed=0, voxel_mm=6.0, workers=1)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="difficulty"):
        generate_dataset(tmp_path, 1, 1, difficulty=1.5)
    with pytest.raises(ValueError, match="grade"):
        generate_case("Brats18_SYN_0001_1", "GBM", seed=0, difficulty=0.5, voxel_mm=4.0)


def test_cli_help_and_tiny_dataset(tmp_path):
    script = str(REPO / "scripts" / "make_synthetic_brats.py")
    help_text = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--hgg", "--lgg", "--seed", "--difficulty", "--voxel-mm", "--workers", "--overwrite"):
        assert option in help_text
    args = ["--output-dir", str(tmp_path), "--hgg", "2", "--lgg", "1", "--voxel-mm", "6", "--workers", "1"]
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / DATASET_DIRNAME).rglob("*_flair.nii.gz"))) == 3
    again = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    assert again.returncode == 2 and "already holds data" in again.stderr


def test_the_shipped_notice_is_the_one_written_into_datasets():
    from brats_grading.synthetic import MNI_NOTICE

    assert (REPO / "docs" / "MNI152_NOTICE.txt").read_text() == MNI_NOTICE
