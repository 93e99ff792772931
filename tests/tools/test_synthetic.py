"""Synthetic BraTS 2018 generator: layout, geometry, determinism and measurable grade phenotypes.

Everything runs on coarse grids (3-6 mm voxels) so the whole file stays fast on 2 CPU cores.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("nilearn", reason="the synthetic generator needs nilearn's MNI152 template")

from helpers import REPO

from brats_grading.synthetic import (  # noqa: E402
    DATASET_DIRNAME,
    MNI152_NOTICE,
    MODALITIES,
    assign_grades,
    brats_affine,
    generate_case,
    generate_dataset,
    grid_shape,
)

CLI = REPO / "scripts" / "make_synthetic_brats.py"
ID_PATTERN = re.compile(r"^Brats18_SYN_\d{4}_1$")
FILE_KEYS = (*MODALITIES, "seg")

MAIN = {"n_hgg": 10, "n_lgg": 6, "seed": 3, "difficulty": 0.5, "voxel_mm": 3.0}
PHENO = {"n_hgg": 12, "n_lgg": 12, "seed": 11, "voxel_mm": 4.0}


def _cases(root: Path) -> dict[str, tuple[str, Path]]:
    """``{case_id: (grade, folder)}`` as found on disk."""
    return {p.name: (grade, p) for grade in ("HGG", "LGG") if (root / grade).is_dir() for p in (root / grade).iterdir()}


def _load(folder: Path, key: str) -> np.ndarray:
    return np.asarray(nib.load(folder / f"{folder.name}_{key}.nii.gz").dataobj)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("syn_main"), workers=2, **MAIN)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """Three tiny datasets: seed 5 serial, seed 5 parallel, seed 6 parallel."""
    tiny = {"n_hgg": 2, "n_lgg": 1, "voxel_mm": 5.0, "difficulty": 0.5}
    return {
        "serial": generate_dataset(tmp_path_factory.mktemp("serial"), seed=5, workers=1, **tiny),
        "parallel": generate_dataset(tmp_path_factory.mktemp("parallel"), seed=5, workers=2, **tiny),
        "other_seed": generate_dataset(tmp_path_factory.mktemp("other"), seed=6, workers=2, **tiny),
    }


@pytest.fixture(scope="module")
def enhancement_by_difficulty(tmp_path_factory) -> dict[float, dict[str, float]]:
    """Fraction of cases with enhancing tumour (label 4) per grade, read from the files."""
    result = {}
    for difficulty in (0.0, 1.0):
        root = generate_dataset(tmp_path_factory.mktemp(f"d{difficulty}"), difficulty=difficulty, workers=2, **PHENO)
        has_enh: dict[str, list[bool]] = {"HGG": [], "LGG": []}
        for grade, folder in _cases(root).values():
            has_enh[grade].append(bool((_load(folder, "seg") == 4).any()))
        result[difficulty] = {g: float(np.mean(v)) for g, v in has_enh.items()}
    return result


def test_layout_folders_files_and_survival_csv(dataset):
    assert dataset.name == DATASET_DIRNAME
    assert sorted(p.name for p in dataset.iterdir()) == ["HGG", "LGG", "MNI152_NOTICE.txt", "survival_data.csv"]
    cases = _cases(dataset)
    grades = [g for g, _ in cases.values()]
    assert grades.count("HGG") == MAIN["n_hgg"] and grades.count("LGG") == MAIN["n_lgg"]
    n = MAIN["n_hgg"] + MAIN["n_lgg"]
    assert sorted(cases) == [f"Brats18_SYN_{i:04d}_1" for i in range(1, n + 1)]
    for cid, (_, folder) in cases.items():
        assert ID_PATTERN.match(cid)
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{cid}_{k}.nii.gz" for k in FILE_KEYS)
    with open(dataset / "survival_data.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["BraTS18ID", "Age", "Survival", "ResectionStatus"]
    hgg = sorted(cid for cid, (g, _) in cases.items() if g == "HGG")
    assert sorted(r[0] for r in rows[1:]) == hgg
    for _, age, survival, status in rows[1:]:
        assert 20.0 <= float(age) <= 85.0
        assert int(survival) > 0
        assert status in {"GTR", "STR", "NA"}


def test_mni_notice_is_copied_into_the_dataset(dataset):
    text = (dataset / "MNI152_NOTICE.txt").read_text()
    assert text == MNI152_NOTICE
    assert "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre" in text
    assert (REPO / "docs" / "MNI152_NOTICE.txt").read_text() == MNI152_NOTICE


def test_geometry_orientation_dtypes_and_labels(dataset):
    v = MAIN["voxel_mm"]
    assert grid_shape(v) == (80, 80, 52)
    for _, folder in _cases(dataset).values():
        for key in FILE_KEYS:
            img = nib.load(folder / f"{folder.name}_{key}.nii.gz")
            assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
            np.testing.assert_allclose(img.affine, brats_affine(v))
            assert img.header.get_zooms() == (v, v, v)
            assert img.shape == grid_shape(v)
            expected = np.uint8 if key == "seg" else np.int16
            assert img.get_data_dtype() == expected
            assert np.asarray(img.dataobj).dtype == expected
        assert set(np.unique(_load(folder, "seg"))) <= {0, 1, 2, 4}


def test_full_size_affine_is_brats_sri24():
    assert grid_shape(1.0) == (240, 240, 155)
    expected = np.array([[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_array_equal(brats_affine(1.0), expected)


def test_background_is_exactly_zero_outside_the_brain(dataset):
    for _, folder in _cases(dataset).values():
        images = [_load(folder, m) for m in MODALITIES]
        brain = images[0] != 0
        for img in images:
            assert np.array_equal(img != 0, brain), "modalities disagree on the brain mask"
            assert img.min() >= 0
        assert 0.08 < brain.mean() < 0.35  # a skull-stripped brain, not a filled box
        for axis in (0, 1):  # the in-plane border is background (the brainstem may reach slice 0)
            assert not brain.take([0, -1], axis=axis).any()
        assert not _load(folder, "seg")[~brain].any(), "tumour labels outside the brain"


def test_same_seed_gives_byte_identical_files(tmp_path, tiny_runs):
    again = generate_dataset(tmp_path, seed=5, workers=2, n_hgg=2, n_lgg=1, voxel_mm=5.0, difficulty=0.5)
    first, second = _files(tiny_runs["parallel"]), _files(again)
    assert first.keys() == second.keys()
    assert first == second


def test_different_seed_gives_different_data(tiny_runs):
    a, b = _files(tiny_runs["serial"]), _files(tiny_runs["other_seed"])
    shared = [k for k in a.keys() & b.keys() if k.endswith("_t1.nii.gz")]
    assert shared, "no case files in common"
    assert all(a[k] != b[k] for k in shared)


def test_serial_and_parallel_generation_are_identical(tiny_runs):
    assert _files(tiny_runs["serial"]) == _files(tiny_runs["parallel"])


def test_generate_case_matches_the_written_files(tiny_runs):
    root = tiny_runs["serial"]
    cid, (grade, folder) = sorted(_cases(root).items())[0]
    arrays = generate_case(cid, grade, 5, 0.5, 5.0)
    assert sorted(arrays) == sorted(FILE_KEYS)
    for key in FILE_KEYS:
        np.testing.assert_array_equal(arrays[key], _load(folder, key))


def test_case_ids_do_not_reveal_grade(dataset):
    grades = [g for _, (g, _) in sorted(_cases(dataset).items())]
    assert grades != sorted(grades) and grades != sorted(grades, reverse=True)
    many = [g for _, g in assign_grades(210, 75, seed=0)]
    assert many.count("HGG") == 210 and many[:210] != ["HGG"] * 210
    assert [g for _, g in assign_grades(210, 75, seed=1)] != many


def test_enhancement_nearly_separates_grades_at_difficulty_zero(enhancement_by_difficulty):
    frac = enhancement_by_difficulty[0.0]
    assert frac["HGG"] >= 0.9
    assert frac["LGG"] <= 0.2


def test_enhancement_gap_shrinks_at_difficulty_one(enhancement_by_difficulty):
    gap0 = enhancement_by_difficulty[0.0]["HGG"] - enhancement_by_difficulty[0.0]["LGG"]
    gap1 = enhancement_by_difficulty[1.0]["HGG"] - enhancement_by_difficulty[1.0]["LGG"]
    assert gap1 < gap0
    assert gap1 > -0.5  # overlapping, not inverted


def _normal_tissue(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Images plus WM-like (brightest T1 quartile) and CSF-like (darkest 5 % T1) normal voxels."""
    images = {m: _load(folder, m).astype(np.float64) for m in MODALITIES}
    seg = _load(folder, "seg")
    normal = (images["t1"] > 0) & (seg == 0)
    t1 = images["t1"][normal]
    wm = normal & (images["t1"] >= np.quantile(t1, 0.75))
    csf = normal & (images["t1"] <= np.quantile(t1, 0.05))
    return images, wm, csf


def test_enhancing_tumour_is_brighter_than_white_matter_on_t1ce(dataset):
    ratios = []
    for grade, folder in _cases(dataset).values():
        enh = _load(folder, "seg") == 4
        if grade != "HGG" or enh.sum() < 3:
            continue
        images, wm, _ = _normal_tissue(folder)
        ratios.append(images["t1ce"][enh].mean() / images["t1ce"][wm].mean())
    assert len(ratios) >= 5
    assert min(ratios) > 1.0
    assert np.median(ratios) > 1.15


def test_csf_is_dark_on_flair_and_bright_on_t2_relative_to_white_matter(dataset):
    for _, folder in _cases(dataset).values():
        images, wm, csf = _normal_tissue(folder)
        assert images["flair"][csf].mean() < images["flair"][wm].mean()
        assert images["t2"][csf].mean() > 1.3 * images["t2"][wm].mean()
        assert images["t1"][csf].mean() < images["t1"][wm].mean()


def test_refuses_to_write_into_non_empty_dataset_root(tmp_path):
    root = tmp_path / DATASET_DIRNAME
    root.mkdir()
    (root / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match=re.escape(str(root))):
        generate_dataset(tmp_path, n_hgg=1, n_lgg=0, voxel_mm=6.0, workers=1)
    assert (root / "keep.txt").read_text() == "user data"
    generate_dataset(tmp_path, n_hgg=1, n_lgg=0, voxel_mm=6.0, workers=1, overwrite=True)
    assert not (root / "keep.txt").exists()
    assert len(_cases(root)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"difficulty": 1.5}, {"voxel_mm": 0.0}, {"n_hgg": -1}, {"n_hgg": 0, "n_lgg": 0}, {"seed": -3}, {"workers": 0}],
)
def test_invalid_arguments_are_rejected_before_writing(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, **{"n_hgg": 1, "n_lgg": 1, "voxel_mm": 6.0, **kwargs})
    assert not (tmp_path / DATASET_DIRNAME).exists()


def test_cli_help_lists_every_option():
    proc = subprocess.run([sys.executable, str(CLI), "--help"], capture_output=True, text=True, check=True)
    for option in (
        "--output-dir",
        "--n-hgg",
        "--n-lgg",
        "--seed",
        "--difficulty",
        "--voxel-mm",
        "--workers",
        "--overwrite",
        "--site",
    ):
        assert option in proc.stdout


def test_cli_generates_a_tiny_dataset(tmp_path):
    cmd = [sys.executable, str(CLI), "--output-dir", str(tmp_path), "--hgg", "1", "--lgg", "1", "--voxel-mm", "6"]
    proc = subprocess.run([*cmd, "--workers", "1"], capture_output=True, text=True, check=True)
    root = tmp_path / DATASET_DIRNAME
    assert proc.stdout.strip().splitlines()[-1] == str(root)
    assert sorted(g for g, _ in _cases(root).values()) == ["HGG", "LGG"]
    refused = subprocess.run(cmd, capture_output=True, text=True)
    assert refused.returncode != 0 and str(root) in refused.stderr


# sha256 over every file (relative path, then bytes) of the dataset below, as the single-module
# generator wrote it; any change to a random draw, the rendering or the file encoding changes it.
PINNED_DIGEST = "0791dcb598b866f49d36856a80133ac48fccfe9a4670275f88adb5ebfda90b87"


def test_generator_output_is_byte_identical_to_the_pinned_digest(tmp_path):
    import hashlib

    root = generate_dataset(tmp_path, n_hgg=1, n_lgg=1, seed=3, difficulty=0.5, voxel_mm=5.0, workers=1)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == PINNED_DIGEST


@pytest.fixture(scope="module")
def two_sites() -> dict[str, dict[str, np.ndarray]]:
    """One HGG patient imaged at the reference and the shifted site."""
    case = ("Brats18_SYN_0004_1", "HGG", 7, 0.5, 3.0)
    return {site: generate_case(*case, site=site) for site in ("reference", "shifted")}


def test_a_site_images_the_same_patient_differently(two_sites):
    """Same brain and tumour placement, other intensity scale, contrast and slice blur."""
    ref, shifted = two_sites["reference"], two_sites["shifted"]
    assert np.array_equal(ref["t1"] > 0, shifted["t1"] > 0)  # the same brain mask: the same patient
    ref_core, shifted_core = np.argwhere(ref["seg"] > 0).mean(0), np.argwhere(shifted["seg"] > 0).mean(0)
    assert np.abs(ref_core - shifted_core).max() < 3.0  # the tumour grows at the same place (3 mm voxels)
    brain = ref["t1"] > 0
    scale = {m: np.median(shifted[m][brain]) / np.median(ref[m][brain]) for m in MODALITIES}
    assert 1.8 < scale["t1"] < 3.5 and 0.4 < scale["t2"] < 0.85, scale  # the site's intensity scales


def test_thick_slices_blur_across_slices_only():
    """A bright voxel spreads to its neighbouring slices (the last axis), not within its slice."""
    from brats_grading.synthetic.rendering import _thick_slices

    shape = (5, 5, 7)
    flat = np.arange(np.prod(shape))
    image = np.zeros(shape, dtype=np.float32)
    image[2, 2, 3] = 1.0
    blurred = _thick_slices(image.ravel(), flat, shape, slices=2.0).reshape(shape)
    assert blurred[2, 2, 2] > 0.1 and blurred[2, 2, 4] > 0.1 and blurred[2, 2, 3] < 0.8
    assert blurred[1, 2, 3] == 0 and blurred[2, 1, 3] == 0
    assert blurred.sum() == pytest.approx(1.0, abs=1e-3)


def test_an_unknown_site_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="site must be one of \\['reference', 'shifted'\\], got 'scanner_x'"):
        generate_dataset(tmp_path, n_hgg=1, n_lgg=1, voxel_mm=6.0, site="scanner_x")
    assert not (tmp_path / DATASET_DIRNAME).exists()
