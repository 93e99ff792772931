"""Training faults: a non-finite loss fails naming where; best models and early stopping survive a resume; no NaN
reaches metrics.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer

from brats_grading.components.handlers import (
    BestCheckpointSaver,
    MinEpochsEarlyStopHandler,
    NonFiniteLossError,
    NonFiniteLossHandler,
)
from brats_grading.components.metrics import classification_metrics
from brats_grading.components.outputs import write_json


def _trainer(loss_function, handlers, epochs: int = 2, decollate: bool = False) -> SupervisedTrainer:
    generator = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(2, 3, generator=generator), "label": torch.tensor([0, 1])} for _ in range(3)]
    model = torch.nn.Linear(3, 2)
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=data,
        network=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loss_function=loss_function,
        train_handlers=handlers,
        decollate=decollate,
    )


@pytest.mark.parametrize("decollate", [False, True], ids=["batch output", "per-case output (MONAI's default)"])
def test_a_nan_loss_stops_training_naming_epoch_iteration_and_last_checkpoint(decollate, tmp_path):
    last = tmp_path / "last.pt"
    last.write_bytes(b"saved")
    calls = {"n": 0}

    def loss(pred, label):
        calls["n"] += 1
        value = torch.nn.functional.cross_entropy(pred, label)
        return value * float("nan") if calls["n"] == 5 else value  # epoch 2, iteration 2

    trainer = _trainer(loss, [NonFiniteLossHandler(str(last))], decollate=decollate)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    message = str(info.value)
    assert "nan at epoch 2, iteration 2 of 3" in message and str(last) in message and "--resume True" in message


def test_a_finite_run_is_untouched_and_without_a_checkpoint_the_message_says_so(tmp_path):
    _trainer(torch.nn.CrossEntropyLoss(), [NonFiniteLossHandler(str(tmp_path / "last.pt"))]).run()
    trainer = _trainer(lambda p, y: torch.tensor(float("inf"), requires_grad=True), [NonFiniteLossHandler("x.pt")])
    with pytest.raises(NonFiniteLossError, match="inf at epoch 1, iteration 1 .* none yet"):
        trainer.run()


def _stopper_after(scores: list[float], state: dict | None = None) -> MinEpochsEarlyStopHandler:
    evaluator = Engine(lambda e, b: None)
    stopper = MinEpochsEarlyStopHandler(evaluator, "score", patience=3, min_epochs=0)
    trainer = Engine(lambda e, b: None)
    stopper.attach(trainer)
    if state:
        stopper.load_state_dict(state)
    for epoch, score in enumerate(scores, start=1):
        evaluator.state.epoch = trainer.state.epoch = epoch
        evaluator.state.metrics = {"score": score}
        stopper(trainer)
    return stopper


def test_early_stopping_state_round_trips_so_a_resumed_run_stops_when_the_uninterrupted_one_would():
    whole = _stopper_after([0.5, 0.7, 0.6, 0.6])
    first = _stopper_after([0.5, 0.7])
    resumed = _stopper_after([0.6, 0.6], state=first.state_dict())
    assert resumed.state_dict() == whole.state_dict() and whole.state_dict()["counter"] == 2
    fresh = _stopper_after([0.6, 0.6])
    assert fresh.state_dict()["counter"] != whole.state_dict()["counter"]  # forgetting the state would differ


def test_patience_zero_never_stops_and_has_nothing_to_save():
    evaluator, trainer = Engine(lambda e, b: None), Engine(lambda e, b: None)
    stopper = MinEpochsEarlyStopHandler(evaluator, patience=0)
    stopper.attach(trainer)
    assert not trainer.has_event_handler(stopper, Events.EPOCH_COMPLETED) and stopper.state_dict() == {}


class _Score:
    """Stands for the bundles' stored metrics: saved beside the weights, with the selection score."""

    def __init__(self) -> None:
        self.value = 0.0

    def state_dict(self) -> dict:
        return {"selection_score": self.value}

    def load_state_dict(self, state: dict) -> None:
        pass


def _validate(folder, model: torch.nn.Linear, score: _Score, weight: float, value: float) -> None:
    """One validation in a new process: a new saver, which only the file on disk can tell about the best so far."""
    evaluator = Engine(lambda e, b: None)
    BestCheckpointSaver(str(folder), {"model": model, "metrics": score}, "val_score", "best.pt").attach(evaluator)
    torch.nn.init.constant_(model.weight, weight)
    score.value = value
    evaluator.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_score=value))
    evaluator.run([0])


def test_a_resumed_best_model_saver_keeps_a_better_earlier_best(tmp_path):
    model, score = torch.nn.Linear(1, 1), _Score()
    _validate(tmp_path, model, score, 1.0, 0.9)
    _validate(tmp_path, model, score, 2.0, 0.8)  # worse: best.pt keeps the first model
    assert torch.load(tmp_path / "best.pt", weights_only=True)["model"]["weight"].item() == 1.0
    _validate(tmp_path, model, score, 3.0, 0.95)  # better: replaced
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["model"]["weight"].item() == 3.0 and best["metrics"]["selection_score"] == 0.95


def test_metrics_on_one_grade_are_null_with_a_reason_and_json_never_holds_nan(tmp_path):
    metrics = classification_metrics([1, 1, 1], [0.9, 0.2, 0.7], threshold=0.5)
    assert metrics["auc"] is None and "HGG only (3 cases)" in metrics["undefined"]["auc"]
    assert set(metrics["undefined"]) >= {"auc", "average_precision", "balanced_accuracy", "specificity"}
    path = write_json(tmp_path / "metrics.json", {"m": metrics, "x": float("nan")})
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["x"] is None
    assert not math.isnan(json.loads(text)["m"]["accuracy"])
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # the temporary file is gone
