"""Metrics against hand-computed values, numpy-safe JSON, prediction files and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import read_csv

from brats_grading.components.report import RunReport
from brats_grading.components.reporting import (
    classification_metrics,
    plot_evaluation,
    plot_history,
    selection_score,
    to_jsonable,
    write_json,
    write_predictions,
)

LABELS = [1, 1, 1, 1, 0, 0, 0]
PROBS = [0.9, 0.8, 0.4, 0.7, 0.6, 0.2, 0.1]


def test_metrics_match_hand_computation():
    m = classification_metrics(LABELS, PROBS)
    # predictions at 0.5: 1 1 0 1 | 1 0 0 -> TP 3, FN 1, FP 1, TN 2
    assert (m["true_positives"], m["false_negatives"], m["false_positives"], m["true_negatives"]) == (
        3,
        1,
        1,
        2,
    )
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["sensitivity"] == pytest.approx(3 / 4) and m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    # AUC: pairs (pos, neg) ranked correctly: 0.9,0.8,0.7 beat all 3; 0.4 beats 0.2, 0.1 -> 11/12
    assert m["auc"] == pytest.approx(11 / 12)
    hgg_f1 = 2 * 0.75 * 0.75 / 1.5
    lgg_f1 = 2 * (2 / 3) * (2 / 3) / (4 / 3)
    assert m["per_class"]["HGG"]["f1"] == pytest.approx(hgg_f1)
    assert m["f1"] == pytest.approx((hgg_f1 + lgg_f1) / 2)
    assert m["per_class"]["LGG"]["support"] == 3


def test_one_class_set_gives_null_auc_in_json(tmp_path):
    m = classification_metrics([1, 1], [0.3, 0.9])
    assert m["auc"] is None
    path = write_json(
        tmp_path / "m.json", {"m": m, "arr": np.arange(3), "f": np.float32(0.5), "nan": float("nan")}
    )
    loaded = json.loads(path.read_text())
    assert loaded["arr"] == [0, 1, 2] and loaded["f"] == 0.5 and loaded["nan"] is None


def test_selection_score_prefers_auc_and_breaks_ties_with_f1():
    assert selection_score(0.80, 0.1) > selection_score(0.7999, 1.0)
    assert selection_score(0.80, 0.6) > selection_score(0.80, 0.5)


def test_to_jsonable_handles_nested_numpy():
    value = to_jsonable({"a": [np.int64(2), {"b": np.array([[1.5]])}], "c": np.bool_(True)})
    assert json.loads(json.dumps(value)) == {"a": [2, {"b": [[1.5]]}], "c": True}


def test_predictions_files_one_row_per_patient(tmp_path):
    ids = [f"case{i}" for i in range(len(LABELS))]
    csv_path = write_predictions(tmp_path, ids, LABELS, PROBS, prefix="val")
    rows = read_csv(csv_path)
    assert [r["id"] for r in rows] == ids
    assert rows[2]["predicted_grade"] == "LGG" and rows[2]["true_grade"] == "HGG"
    assert np.load(tmp_path / "val_probs.npy").tolist() == PROBS
    assert np.load(tmp_path / "val_labels.npy").tolist() == LABELS


def test_plots_are_written(tmp_path):
    history = {
        "train_loss": [[1, 1.0], [2, 0.8]],
        "val_loss": [[1, 1.1], [2, 0.9]],
        "val_auc": [[1, 0.6], [2, 0.7]],
    }
    written = plot_history(history, tmp_path) + plot_evaluation(LABELS, PROBS, tmp_path)
    assert {p.name for p in written} == {
        "loss_curve.png",
        "learning_curves.png",
        "confusion_matrix.png",
        "roc_curve.png",
        "pr_curve.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


def test_run_report_keeps_best_epoch_and_round_trips(tmp_path):
    report = RunReport(tmp_path)
    ids = [str(i) for i in range(len(LABELS))]
    report.record("val", 1, classification_metrics(LABELS, PROBS), ids, LABELS, PROBS)
    worse = [0.5] * len(LABELS)
    report.record("val", 2, classification_metrics(LABELS, worse), ids, LABELS, worse)
    assert report.best["val"]["epoch"] == 1 and report.latest["val"]["epoch"] == 2
    restored = RunReport(tmp_path)
    restored.load_state_dict(json.loads(json.dumps(report.state_dict())))
    assert restored.summary() == report.summary()
    report.finalize()
    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert metrics["final"]["source"] == "val" and metrics["final"]["epoch"] == 1
    assert [e for e, _ in metrics["history"]["val_auc"]] == [1, 2]
    assert (tmp_path / "predictions" / "val_predictions.csv").is_file()


def test_final_result_is_the_better_evaluator_with_ema_winning_ties(tmp_path):
    report = RunReport(tmp_path, primary=("val_ema", "val"))
    ids = [str(i) for i in range(len(LABELS))]
    flat = [0.5] * len(LABELS)
    report.record("val_ema", 1, classification_metrics(LABELS, flat), ids, LABELS, flat)
    report.record("val", 1, classification_metrics(LABELS, PROBS), ids, LABELS, PROBS)
    assert report.final_prefix() == "val"
    report.record("val_ema", 2, classification_metrics(LABELS, PROBS), ids, LABELS, PROBS)
    assert report.final_prefix() == "val_ema"
