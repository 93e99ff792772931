"""Case and volume checks on real NIfTI files: each fault is found and named by file, never as a stray exception."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from brats_grading.components.data import DatasetError
from brats_grading.components.datasets import FAILURE_KEY, GuardedDataset
from brats_grading.components.preprocessing import preprocessing_transforms
from brats_grading.components.validation import (
    DataValidationError,
    check_case_data,
    check_case_headers,
    check_cases,
    check_volume,
)

MODALITIES = ("t1", "t1ce", "t2", "flair")


def _volume(seed: int = 0, shape=(12, 14, 10)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(1, 100, shape).astype(np.float32)


def write_case(folder: Path, case_id: str, volumes: dict | None = None, affines: dict | None = None) -> list[Path]:
    """A case as four .nii.gz files; ``volumes`` / ``affines`` replace some modalities' data or affine."""
    volumes, affines = volumes or {}, affines or {}
    case_dir = folder / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, modality in enumerate(MODALITIES):
        path = case_dir / f"{case_id}_{modality}.nii.gz"
        data = volumes.get(modality, _volume(zlib.crc32(case_id.encode()) + i))  # each case its own voxels
        nib.save(nib.Nifti1Image(data, affines.get(modality, np.diag([2.0, 2.0, 2.0, 1.0]))), path)
        paths.append(path)
    return paths


def truncate(path: Path) -> None:
    """Cut a .nii.gz in half: the header still reads, the voxels do not."""
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with gzip.open(path) as handle:  # the header part is still readable
        handle.read(348)


@pytest.mark.parametrize(
    ("fault", "named"),
    [
        ("missing", "missing file"),
        ("truncated", "truncated or corrupt"),
        ("shape", "shape"),
        ("affine", "affine"),
        ("nan", "NaN or Inf"),
        ("inf", "NaN or Inf"),
        ("zero", "every voxel is 0"),
    ],
)
def test_each_fault_of_a_case_is_found_and_names_the_file(tmp_path, fault, named):
    volumes, affines = {}, {}
    if fault == "shape":
        volumes["flair"] = _volume(3, (12, 14, 11))
    if fault == "affine":
        affines["flair"] = np.diag([2.0, 2.0, 2.5, 1.0])
    if fault in ("nan", "inf"):
        broken = _volume(3)
        broken[2:5, 2:5, 2:5] = np.nan if fault == "nan" else np.inf
        volumes["flair"] = broken
    if fault == "zero":
        volumes["flair"] = np.zeros((12, 14, 10), np.float32)
    paths = write_case(tmp_path, "case_1", volumes, affines)
    if fault == "missing":
        paths[3].unlink()
    if fault == "truncated":
        truncate(paths[3])
    with pytest.raises(DataValidationError) as info:
        check_case_data("case_1", paths)
    message = str(info.value)
    assert named in message and "case_1_flair.nii.gz" in message and "case 'case_1'" in message
    assert "\n" not in message


def test_a_good_case_passes_and_header_checks_do_not_read_the_voxels(tmp_path):
    paths = write_case(tmp_path, "good")
    check_case_data("good", paths)
    truncate(paths[0])
    check_case_headers("good", paths)  # headers alone cannot see a truncated body: the full check must
    with pytest.raises(DataValidationError, match="truncated or corrupt"):
        check_case_data("good", paths)


def test_check_cases_lists_every_bad_case_and_skips_files_unchanged_since_they_passed(tmp_path):
    records = []
    for i in range(4):
        records.append({"id": f"c{i}", "image": [str(p) for p in write_case(tmp_path, f"c{i}")]})
    truncate(Path(records[1]["image"][0]))
    Path(records[3]["image"][2]).unlink()
    stamps = tmp_path / "stamps.json"
    bad = check_cases(records, stamps, raise_on_error=False)
    assert sorted(bad) == ["c1", "c3"]
    with pytest.raises(DataValidationError, match=r"and 1 more bad cases: c3"):
        check_cases(records, stamps)
    # the good cases were stamped: damaging one without changing size or time is not re-read (documented limit)
    assert len(json.loads(stamps.read_text())) == 8


def test_guarded_dataset_turns_a_bad_case_into_a_placeholder_with_its_reason(tmp_path):
    good = {"id": "good", "label": 1, "image": [str(p) for p in write_case(tmp_path, "good")]}
    paths = write_case(tmp_path, "bad")
    truncate(paths[1])
    bad = {"id": "bad", "label": 0, "image": [str(p) for p in paths]}
    placeholder = {"image": torch.zeros(4, 8, 8, 8)}
    dataset = GuardedDataset([good, bad], preprocessing_transforms(8), placeholder)
    item_good, item_bad = dataset[0], dataset[1]
    assert item_good[FAILURE_KEY] == "" and item_good["image"].shape == (4, 8, 8, 8)
    assert "bad_t1ce.nii.gz" in item_bad[FAILURE_KEY] and "truncated" in item_bad[FAILURE_KEY]
    assert item_bad["label"] == 0 and torch.equal(item_bad["image"], placeholder["image"])
    strict = GuardedDataset([bad], preprocessing_transforms(8), None)
    with pytest.raises(DataValidationError, match="bad_t1ce.nii.gz"):
        strict[0]


def test_nan_voxels_are_refused_by_the_preprocessing_itself(tmp_path):
    broken = _volume(1)
    broken[0, 0, 0] = np.nan
    paths = write_case(tmp_path, "nan_case", {"t2": broken})
    dataset = GuardedDataset([{"id": "nan_case", "image": [str(p) for p in paths]}], preprocessing_transforms(8), {})
    assert "nan_case_t2.nii.gz" in dataset[0][FAILURE_KEY]


def test_a_validation_error_is_caught_by_callers_catching_dataset_or_value_errors():
    assert issubclass(DataValidationError, DatasetError) and issubclass(DataValidationError, ValueError)


_DTYPES = st.one_of(
    hnp.scalar_dtypes(),
    st.sampled_from([np.dtype("U3"), np.dtype("O"), np.dtype("M8[s]"), np.dtype("c8"), np.dtype("?")]),
)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=_DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
        elements=None,
        fill=st.nothing(),
    )
)
def test_volume_check_raises_only_its_own_error_on_any_array(array):
    try:
        check_volume(array, "case 'x': file.nii.gz")
    except DataValidationError as err:
        assert str(err).startswith("case 'x': file.nii.gz") and "\n" not in str(err)
        return
    assert array.ndim == 3 and array.size and array.dtype.kind in "biuf" and np.asarray(array).any()


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=5), st.integers(), st.lists(st.floats(), max_size=4), st.floats()))
def test_volume_check_raises_only_its_own_error_on_non_arrays(value):
    with pytest.raises(DataValidationError):
        check_volume(value, "where")
