"""datalist.json: layouts, patient-level stratified folds, and clear errors on bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import REPO, failure_text

from brats_grading.components.data import CHANNEL_ORDER, DatasetError, load_records, scan_cases
from brats_grading.components.datalist import assign_folds, build_datalist, write_datalist


def _write_case(folder: Path, case_id: str, modalities=(*CHANNEL_ORDER, "seg")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for modality in modalities:
        image = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
        nib.save(image, folder / f"{case_id}_{modality}.nii.gz")


def _toy_2018(root: Path, n_hgg: int = 6, n_lgg: int = 5) -> Path:
    for i in range(n_hgg):
        _write_case(root / "HGG" / f"Case_{i:03d}", f"Case_{i:03d}")
    for i in range(n_hgg, n_hgg + n_lgg):
        _write_case(root / "LGG" / f"Case_{i:03d}", f"Case_{i:03d}")
    return root


def test_datalist_has_every_case_once_with_paths_in_channel_order(small_brats, small_datalist):
    ids = [r["id"] for r in small_datalist["training"]]
    cases_on_disk = sorted(p.name for grade in ("HGG", "LGG") for p in (small_brats / grade).iterdir())
    assert sorted(ids) == cases_on_disk and len(set(ids)) == len(ids)
    assert small_datalist["channel_order"] == ["t1", "t1ce", "t2", "flair"]
    for record in small_datalist["training"]:
        assert record["image"] == [f"{record['grade']}/{record['id']}/{record['id']}_{m}.nii.gz" for m in CHANNEL_ORDER]
        assert record["label"] == (1 if record["grade"] == "HGG" else 0)
        assert (small_brats / record["image"][0]).is_file()


def test_folds_are_stratified_and_cover_each_patient_once(small_datalist):
    records = small_datalist["training"]
    assert sorted({r["fold"] for r in records}) == [0, 1, 2, 3, 4]
    per_fold = Counter((r["fold"], r["label"]) for r in records)
    totals = Counter(r["label"] for r in records)
    for label, total in totals.items():
        sizes = [per_fold[(f, label)] for f in range(5)]
        assert sum(sizes) == total and max(sizes) - min(sizes) <= 1, sizes


def test_folds_are_stable_for_a_seed_and_change_with_it(small_brats):
    first = build_datalist(small_brats, check_readable=False)
    again = build_datalist(small_brats, check_readable=False)
    other = build_datalist(small_brats, seed=3, check_readable=False)
    folds = lambda d: {r["id"]: r["fold"] for r in d["training"]}  # noqa: E731
    assert folds(first) == folds(again)
    assert folds(first) != folds(other)


def test_train_and_val_records_partition_the_patients(small_brats):
    train = load_records(small_brats / "datalist.json", fold=2, split="train")
    val = load_records(small_brats / "datalist.json", fold=2, split="val")
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    assert len(train) + len(val) == len(load_records(small_brats / "datalist.json"))
    assert all(Path(p).is_absolute() and Path(p).is_file() for r in val for p in r["image"])


def test_modalities_select_channels_in_the_order_asked(small_brats):
    records = load_records(small_brats / "datalist.json", modalities=["flair", "t1ce"])
    assert [Path(p).name.rsplit("_", 1)[1] for p in records[0]["image"]] == ["flair.nii.gz", "t1ce.nii.gz"]
    with pytest.raises(DatasetError, match="subset"):
        load_records(small_brats / "datalist.json", modalities=["dwi"])


def test_brats_2020_layout_reads_grades_from_name_mapping(tmp_path, small_brats):
    flat = tmp_path / "MICCAI_BraTS2020_TrainingData"
    rows = []
    for grade in ("HGG", "LGG"):
        for case in (small_brats / grade).iterdir():
            shutil.copytree(case, flat / case.name)
            rows.append({"Grade": grade, "BraTS_2020_subject_ID": case.name})
    with open(flat / "name_mapping.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Grade", "BraTS_2020_subject_ID"])
        writer.writeheader()
        writer.writerows(rows)
    datalist = build_datalist(flat)
    reference = build_datalist(small_brats)
    assert {r["id"]: r["label"] for r in datalist["training"]} == {r["id"]: r["label"] for r in reference["training"]}
    assert all(r["image"][0] == f"{r['id']}/{r['id']}_t1.nii.gz" for r in datalist["training"])


def test_folder_without_grades_asks_for_them(tmp_path):
    _write_case(tmp_path / "BraTS2021_00000", "BraTS2021_00000")
    with pytest.raises(DatasetError, match="grades"):
        build_datalist(tmp_path)
    # inference needs no grade
    assert "label" not in scan_cases(tmp_path, require_grades=False)[0]


def test_missing_modality_names_case_and_modality(tmp_path):
    root = _toy_2018(tmp_path)
    (root / "HGG" / "Case_002" / "Case_002_t1ce.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"Case_002.*t1ce"):
        build_datalist(root)


def test_duplicate_case_id_is_an_error(tmp_path):
    root = _toy_2018(tmp_path)
    _write_case(root / "LGG" / "Case_001", "Case_001")
    with pytest.raises(DatasetError, match="duplicate case id 'Case_001'"):
        build_datalist(root)


def test_unreadable_file_names_the_case(tmp_path):
    root = _toy_2018(tmp_path)
    (root / "LGG" / "Case_007" / "Case_007_flair.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DatasetError, match=r"Case_007.*Case_007_flair"):
        build_datalist(root)


def test_class_too_small_for_the_folds_names_its_cases(tmp_path):
    root = _toy_2018(tmp_path, n_hgg=6, n_lgg=3)
    with pytest.raises(DatasetError, match=r"LGG has 3 case\(s\).*Case_006"):
        build_datalist(root)
    assert {r["fold"] for r in assign_folds(scan_cases(root), num_folds=3)} == {0, 1, 2}


def test_existing_datalist_with_other_content_is_kept(tmp_path):
    root = _toy_2018(tmp_path)
    target = tmp_path / "datalist.json"
    target.write_text('{"mine": true}')
    with pytest.raises(FileExistsError):
        write_datalist(build_datalist(root), target)
    assert json.loads(target.read_text()) == {"mine": True}


def test_cli_writes_datalist_and_reports_errors(tmp_path):
    root = _toy_2018(tmp_path / "data")
    ok = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_datalist.py"), str(root)], capture_output=True, text=True
    )
    assert ok.returncode == 0, failure_text(ok)
    assert json.loads((root / "datalist.json").read_text())["numTraining"] == 11
    (root / "HGG" / "Case_000" / "Case_000_t2.nii.gz").unlink()
    bad = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_datalist.py"), str(root), "--output", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Case_000" in bad.stderr and "t2" in bad.stderr
