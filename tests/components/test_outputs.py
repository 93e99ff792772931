"""Numpy-safe JSON and the per-case prediction files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import LABELS, PROBS
from scipy.special import logit

from brats_grading.components.metrics import classification_metrics
from brats_grading.components.outputs import to_jsonable, write_json, write_prediction_arrays, write_prediction_csv


def _read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_class_set_gives_null_auc_in_json(tmp_path):
    m = classification_metrics([1, 1], [0.3, 0.9])
    assert m["auc"] is None
    path = write_json(tmp_path / "m.json", {"m": m, "arr": np.arange(3), "f": np.float32(0.5), "nan": float("nan")})
    loaded = json.loads(path.read_text())
    assert loaded["arr"] == [0, 1, 2] and loaded["f"] == 0.5 and loaded["nan"] is None


def test_to_jsonable_handles_nested_numpy():
    value = to_jsonable({"a": [np.int64(2), {"b": np.array([[1.5]])}], "c": np.bool_(True)})
    assert json.loads(json.dumps(value)) == {"a": [2, {"b": [[1.5]]}], "c": True}


def test_predictions_files_one_row_per_patient(tmp_path):
    ids = [f"case{i}" for i in range(len(LABELS))]
    logits = logit(PROBS).tolist()
    csv_path = write_prediction_arrays(tmp_path, ids, LABELS, PROBS, logits, prefix="val")
    rows = _read_rows(csv_path)
    assert [r["id"] for r in rows] == ids
    assert rows[2]["predicted_grade"] == "LGG" and rows[2]["true_grade"] == "HGG"
    assert np.load(tmp_path / "val_probs.npy").tolist() == PROBS
    assert np.load(tmp_path / "val_labels.npy").tolist() == LABELS
    assert np.load(tmp_path / "val_logits.npy").tolist() == logits


def test_a_prediction_csv_round_trips_probability_and_logit_exactly(tmp_path):
    probs = [1 / 3, 1e-17, 0.1 + 0.2, 1 - 1e-16]
    logits = [-0.6931471805599453, -39.14394658089878, 1 / 7, 36.7368005696771]
    path = write_prediction_csv(tmp_path / "predictions.csv", ["a", "b", "c", "d"], probs, logits)
    rows = _read_rows(path)
    assert [float(r["prob_hgg"]) for r in rows] == probs
    assert [float(r["logit"]) for r in rows] == logits
    assert list(rows[0]) == ["id", "prob_hgg", "predicted_grade", "logit"]


def test_a_prediction_csv_grades_at_the_given_threshold(tmp_path):
    probs = [0.2, 0.35, 0.4, 0.6]
    path = write_prediction_csv(tmp_path / "p.csv", ["a", "b", "c", "d"], probs, [0.0] * 4, threshold=0.35)
    assert [r["predicted_grade"] for r in _read_rows(path)] == ["LGG", "HGG", "HGG", "HGG"]  # HGG when P >= t
    path = write_prediction_csv(tmp_path / "q.csv", ["a", "b", "c", "d"], probs, [0.0] * 4)
    assert [r["predicted_grade"] for r in _read_rows(path)] == ["LGG", "LGG", "LGG", "HGG"]


def test_unused_path_numbers_a_taken_name_before_its_suffix(tmp_path):
    from brats_grading.components.outputs import unused_path

    assert unused_path(tmp_path / "predictions.csv") == tmp_path / "predictions.csv"
    (tmp_path / "predictions.csv").write_text("")
    (tmp_path / "predictions_1.csv").write_text("")
    assert unused_path(tmp_path / "predictions.csv") == tmp_path / "predictions_2.csv"
    (tmp_path / "case.1_saliency.nii.gz").write_text("")
    assert unused_path(tmp_path / "case.1_saliency.nii.gz", ".nii.gz") == tmp_path / "case.1_saliency_1.nii.gz"
    with pytest.raises(ValueError, match="does not end in"):
        unused_path(tmp_path / "run_1", ".csv")
