"""Checkpoint handlers: the stored-metric check of evaluation and the model published after training."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from brats_grading.components.handlers import BestModelSaver, StoredMetricCheckHandler


def test_checkpoint_metric_check_catches_a_mismatch(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "metrics": {"auc": 0.8}}, path)
    engine = Engine(lambda e, b: None)
    StoredMetricCheckHandler(str(path), tolerance=1e-3).attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_auc=0.8))
    engine.run([0])
    engine = Engine(lambda e, b: None)
    StoredMetricCheckHandler(str(path), tolerance=1e-3).attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_auc=0.7))
    with pytest.raises(RuntimeError) as err:
        engine.run([0])
    assert "0.7" in str(err.value) and "0.8" in str(err.value)


def _check(path, auc: float, case_ids=None) -> None:
    engine = Engine(lambda e, b: None)
    StoredMetricCheckHandler(str(path), tolerance=1e-3, case_ids=case_ids).attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_auc=auc))
    engine.run([0])


def test_the_stored_auc_is_compared_only_on_the_cases_it_was_selected_on(tmp_path, caplog):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "metrics": {"auc": 0.8, "selection_ids": ["a", "b"]}}, path)
    with pytest.raises(RuntimeError, match="differs from the AUC 0.8"):
        _check(path, 0.7, case_ids=["b", "a"])  # the selection cases again: must reproduce
    with caplog.at_level("INFO"):
        _check(path, 0.7, case_ids=["c", "d"])  # other cases, which chose nothing: another figure
    assert "chose nothing about it, so its stored AUC is not compared" in caplog.text
    with pytest.raises(RuntimeError):
        _check(path, 0.7)  # evaluated cases unknown: compared, as before


def _candidate(path, seed: int, score: float, threshold: float, temperature: float) -> dict:
    """Save a training checkpoint of a seeded linear model with its validation metrics; return its weights."""
    torch.manual_seed(seed)
    weights = torch.nn.Linear(3, 2).state_dict()
    metrics = {"selection_score": score, "threshold": threshold, "temperature": temperature}
    torch.save({"model": weights, "metrics": metrics}, path)
    return weights


def _publish(candidates, publish_path) -> None:
    engine = Engine(lambda e, b: None)
    BestModelSaver([str(c) for c in candidates], str(publish_path), str(publish_path.parent.parent / "run")).attach(
        engine
    )
    engine.run([0])


def _assert_same_weights(state: dict, expected: dict) -> None:
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_best_model_saver_publishes_the_better_candidate_with_its_operating_point(tmp_path):
    ema_path, raw_path = tmp_path / "best_ema.pt", tmp_path / "best.pt"
    _candidate(ema_path, seed=1, score=0.80, threshold=0.30, temperature=1.5)
    raw_weights = _candidate(raw_path, seed=2, score=0.90, threshold=0.62, temperature=2.5)
    published = tmp_path / "models" / "model.pt"
    _publish([ema_path, raw_path], published)
    state = torch.load(published, weights_only=True)
    _assert_same_weights(state, raw_weights)  # a plain state dict, no {"model", "metrics"} wrapper
    torch.nn.Linear(3, 2).load_state_dict(state)
    point = json.loads((tmp_path / "models" / "model.operating_point.json").read_text())
    assert point["threshold"] == 0.62 and point["temperature"] == 2.5
    assert point["checkpoint"] == str(raw_path)


def test_publishing_again_moves_the_previous_model_out_of_the_bundle(tmp_path):
    ema_path, raw_path = tmp_path / "best_ema.pt", tmp_path / "best.pt"
    first_weights = _candidate(ema_path, seed=1, score=0.80, threshold=0.30, temperature=1.5)
    published = tmp_path / "models" / "model.pt"
    _publish([ema_path], published)
    second_weights = _candidate(raw_path, seed=2, score=0.90, threshold=0.62, temperature=2.5)
    _publish([ema_path, raw_path], published)
    _assert_same_weights(torch.load(published, weights_only=True), second_weights)
    _assert_same_weights(torch.load(tmp_path / "run" / "replaced_model.pt", weights_only=True), first_weights)
    assert json.loads((tmp_path / "run" / "replaced_model.operating_point.json").read_text())["threshold"] == 0.30
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.operating_point.json", "model.pt"]
