"""The per-epoch metrics handler: divergence is an error, a stored operating point is used as given."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events
from scipy.special import expit

from brats_grading.components.handlers import EpochMetricsHandler
from brats_grading.components.run_report import RunReport

#: HGG log-odds of six cases and their labels: a healthy model that ranks one LGG case (1.5) among the HGG
LOG_ODDS = [-2.0, -1.0, 0.5, 1.0, 1.5, 3.0]
LABELS = [0, 0, 1, 1, 0, 1]


def _one_batch(log_odds: list[float], labels: list[int]) -> list[dict]:
    """The cases as one batch of two-class logits with ``logit[HGG] - logit[LGG]`` = the log-odds."""
    pred = torch.tensor([[0.0, z] for z in log_odds])
    return [{"id": [f"c{i}" for i in range(len(labels))], "pred": pred, "label": torch.tensor(labels)}]


def _replaying_engine() -> Engine:
    """An engine whose output is each batch's ``pred`` / ``label``; the batch keeps the case ids."""
    return Engine(lambda engine, batch: {"pred": batch["pred"], "label": batch["label"]})


def test_epoch_metrics_fail_clearly_when_training_diverged(tmp_path):
    outputs = iter([[{"pred": torch.tensor([float("nan"), 0.0]), "label": torch.tensor(1)}]])
    engine = Engine(lambda e, b: next(outputs))
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: setattr(e.state, "batch", [{"id": "c1"}]))
    EpochMetricsHandler(RunReport(tmp_path), "train").attach(engine)
    with pytest.raises(FloatingPointError) as err:
        engine.run([0])
    assert "train epoch 1" in str(err.value) and "non-finite" in str(err.value)


def test_a_given_operating_point_is_used_instead_of_a_fitted_one(tmp_path):
    log_odds, labels = LOG_ODDS, LABELS
    pred = torch.tensor([[0.0, z] for z in log_odds])  # logit[HGG] - logit[LGG] = z
    batches = [
        {"id": [f"case{i}" for i in range(k, k + 3)], "pred": pred[k : k + 3], "label": torch.tensor(labels[k : k + 3])}
        for k in (0, 3)
    ]
    report = RunReport(tmp_path)
    engine = _replaying_engine()
    point = {"temperature": 2.0, "threshold": 0.7}
    EpochMetricsHandler(report, "val", operating_point=point).attach(engine)
    engine.run(batches)
    assert engine.state.metrics["val_temperature"] == 2.0 and engine.state.metrics["val_threshold"] == 0.7
    recorded = report.latest["val"]
    assert recorded["ids"] == [f"case{i}" for i in range(6)]
    assert recorded["probs"] == pytest.approx(expit([z / 2.0 for z in log_odds]).tolist(), abs=1e-6)
    # P(HGG) = sigmoid(z / 2) >= 0.7 only for z = 3.0 (sigmoid(1.5) = 0.82; sigmoid(0.75) = 0.68)
    assert recorded["metrics"]["true_positives"] == 1 and recorded["metrics"]["false_positives"] == 0
    assert recorded["metrics"]["threshold_rule"] == "stored"


@pytest.mark.parametrize("operating_point", [None, {"temperature": 0.0025, "threshold": 0.5}])
def test_a_collapsed_model_is_flagged_whatever_the_temperature(tmp_path, operating_point, caplog):
    """Log-odds within 0.003 of each other (raw P(HGG) spread 0.00075) that still rank the cases perfectly:
    the fitted temperature runs to its lower bound and stretches them over [0, 1], which must not hide the
    collapse; a stored tiny temperature must not either."""
    log_odds = [0.0006 * i for i in range(-3, 3)]  # -0.0018 ... 0.0012, increasing
    labels = [0, 0, 0, 1, 1, 1]
    report = RunReport(tmp_path)
    engine = _replaying_engine()
    EpochMetricsHandler(report, "val", operating_point=operating_point).attach(engine)
    with caplog.at_level("WARNING"):
        engine.run(_one_batch(log_odds, labels))
    metrics = report.latest["val"]["metrics"]
    probs = report.latest["val"]["probs"]
    assert max(probs) - min(probs) > 0.1  # scaled, the spread no longer looks collapsed
    assert metrics["collapsed"] and "before temperature scaling" in metrics["collapse_reason"]
    assert engine.state.metrics["val_selection_score"] < 0  # ranked below any healthy epoch
    if operating_point is None:
        assert metrics["temperature_at_bound"] and "at a bound of its search range" in caplog.text
    else:
        assert not metrics["temperature_at_bound"]


def test_a_healthy_model_is_not_flagged(tmp_path, caplog):
    report = RunReport(tmp_path)
    engine = _replaying_engine()
    EpochMetricsHandler(report, "val").attach(engine)
    with caplog.at_level("WARNING"):
        engine.run(_one_batch(LOG_ODDS, LABELS))
    metrics = report.latest["val"]["metrics"]
    assert not metrics["collapsed"] and not metrics["temperature_at_bound"] and "collapsed" not in caplog.text


@pytest.mark.parametrize("rule", ["prior", "youden"])
def test_the_fitted_operating_point_minimises_the_log_loss_and_follows_its_threshold_rule(tmp_path, rule):
    """Without a stored operating point the handler fits T on these cases and picks the threshold by its rule."""
    log_odds, labels = LOG_ODDS, LABELS
    report = RunReport(tmp_path)
    engine = _replaying_engine()
    EpochMetricsHandler(report, "val", threshold_rule=rule, hgg_prior=0.6).attach(engine)
    engine.run(_one_batch(log_odds, labels))
    temperature = engine.state.metrics["val_temperature"]

    def log_loss(t: float) -> float:
        p = expit([z / t for z in log_odds])
        return -sum(y * math.log(q) + (1 - y) * math.log(1 - q) for y, q in zip(labels, p, strict=True))

    assert temperature != 1.0 and log_loss(temperature) <= min(log_loss(temperature * 0.9), log_loss(temperature * 1.1))
    assert report.latest["val"]["probs"] == pytest.approx(expit([z / temperature for z in log_odds]).tolist(), abs=1e-6)
    # prior: the HGG share of the training cases; Youden: z = 0.5 keeps every HGG case for one LGG false positive
    expected = 0.6 if rule == "prior" else float(expit(0.5 / temperature))
    assert engine.state.metrics["val_threshold"] == pytest.approx(expected, abs=1e-6)
    assert report.latest["val"]["metrics"]["threshold_rule"] == rule
