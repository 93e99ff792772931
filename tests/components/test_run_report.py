"""The run report: best epoch per evaluator, its state round trip, the final result, the plots."""

from __future__ import annotations

import json

from helpers import LABELS, PROBS
from scipy.special import logit

from brats_grading.components.metrics import classification_metrics
from brats_grading.components.plots import plot_evaluation, plot_history
from brats_grading.components.run_report import RunReport

LOGITS = logit(PROBS).tolist()
IDS = [str(i) for i in range(len(LABELS))]


def _record(report: RunReport, prefix: str, epoch: int, probs: list[float]) -> None:
    report.record(prefix, epoch, classification_metrics(LABELS, probs), IDS, LABELS, probs, logit(probs).tolist())


def test_plots_are_written(tmp_path):
    history = {"train_loss": [[1, 1.0], [2, 0.8]], "val_loss": [[1, 1.1], [2, 0.9]], "val_auc": [[1, 0.6], [2, 0.7]]}
    written = plot_history(history, tmp_path) + plot_evaluation(LABELS, PROBS, tmp_path)
    assert {p.name for p in written} == {
        "loss_curve.png",
        "learning_curves.png",
        "confusion_matrix.png",
        "roc_curve.png",
        "pr_curve.png",
        "reliability_diagram.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


def test_run_report_keeps_best_epoch_and_round_trips(tmp_path):
    report = RunReport(tmp_path)
    _record(report, "val", 1, PROBS)
    worse = [0.5] * len(LABELS)
    _record(report, "val", 2, worse)
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
    flat = [0.5] * len(LABELS)
    _record(report, "val_ema", 1, flat)
    _record(report, "val", 1, PROBS)
    assert report.final_prefix() == "val"
    _record(report, "val_ema", 2, PROBS)
    assert report.final_prefix() == "val_ema"
