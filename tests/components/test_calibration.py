"""Temperature scaling, the calibration error, and the operating point read back for a model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from brats_grading.components.calibration import (
    DEFAULT_OPERATING_POINT,
    calibrated_probs,
    expected_calibration_error,
    fit_temperature,
    operating_point_path,
    read_operating_point,
    write_operating_point,
)


@pytest.fixture(scope="module")
def over_confident():
    """Labels drawn from sigmoid(true log-odds), and log-odds 5x too large, as an over-confident network gives."""
    rng = np.random.default_rng(0)
    true_log_odds = rng.normal(0.0, 1.5, 2000)
    labels = (rng.random(2000) < expit(true_log_odds)).astype(int)
    return 5.0 * true_log_odds, labels


def test_temperature_scaling_lowers_the_calibration_error(over_confident):
    log_odds, labels = over_confident
    temperature = fit_temperature(log_odds, labels)
    raw_ece = expected_calibration_error(labels, calibrated_probs(log_odds, 1.0))
    calibrated_ece = expected_calibration_error(labels, calibrated_probs(log_odds, temperature))
    assert calibrated_ece < raw_ece / 2


def test_the_fitted_temperature_undoes_the_over_confidence(over_confident):
    log_odds, labels = over_confident
    assert fit_temperature(log_odds, labels) == pytest.approx(5.0, rel=0.1)


def test_temperature_scaling_leaves_the_roc_auc_exactly_unchanged(over_confident):
    log_odds, labels = over_confident
    temperature = fit_temperature(log_odds, labels)
    raw_auc = roc_auc_score(labels, calibrated_probs(log_odds, 1.0))
    assert roc_auc_score(labels, calibrated_probs(log_odds, temperature)) == raw_auc


def _checkpoint(path, metrics=None):
    torch.save({"model": {}, "metrics": metrics or {}}, path)
    return path


def test_the_operating_point_side_file_is_preferred_over_the_checkpoint_metrics(tmp_path):
    checkpoint = _checkpoint(tmp_path / "model.pt", {"temperature": 2.0, "threshold": 0.4})
    write_operating_point(checkpoint, {"temperature": 3.0, "threshold": 0.7, "threshold_rule": "youden"})
    assert operating_point_path(checkpoint) == tmp_path / "model.operating_point.json"
    assert read_operating_point(checkpoint) == {"temperature": 3.0, "threshold": 0.7, "threshold_rule": "youden"}


def test_the_operating_point_falls_back_to_the_metrics_stored_in_the_checkpoint(tmp_path):
    metrics = {"temperature": 2.0, "threshold": 0.4, "threshold_rule": "f1", "auc": 0.9}
    checkpoint = _checkpoint(tmp_path / "best.pt", metrics)
    assert read_operating_point(checkpoint) == {"temperature": 2.0, "threshold": 0.4, "threshold_rule": "f1"}


def test_a_model_without_an_operating_point_gets_the_default_with_a_warning(tmp_path, caplog):
    checkpoint = _checkpoint(tmp_path / "old.pt", {"auc": 0.9})
    with caplog.at_level(logging.WARNING):
        point = read_operating_point(checkpoint)
    assert point == DEFAULT_OPERATING_POINT
    assert any(r.levelno == logging.WARNING and "no operating point" in r.getMessage() for r in caplog.records)
