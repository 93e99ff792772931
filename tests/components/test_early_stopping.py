"""Early stopping on the validation score, never before the run's minimum length."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from brats_grading.components.handlers import MinEpochsEarlyStopHandler


def _fake_validation(scores):
    """A trainer whose 'evaluator' reports the given score at each epoch."""
    trainer = Engine(lambda e, b: None)
    evaluator = Engine(lambda e, b: None)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.state.epoch = engine.state.epoch
        evaluator.state.metrics["val_selection_score"] = scores[engine.state.epoch - 1]

    return trainer, evaluator


@pytest.mark.parametrize(
    ("scores", "patience", "min_epochs", "stop_epoch"),
    [
        ([0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 2, 6, 6),  # waits for the minimum
        ([0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7], 3, 2, 6),  # stops after patience once past it
        ([0.5] * 8, 2, 0, 3),  # a constant score stops after patience without deferred re-weighting
    ],
)
def test_early_stopping_stops_after_patience_and_not_before_the_minimum(scores, patience, min_epochs, stop_epoch):
    trainer, evaluator = _fake_validation(scores)
    MinEpochsEarlyStopHandler(evaluator, patience=patience, min_epochs=min_epochs).attach(trainer)
    trainer.run([0], max_epochs=len(scores))
    assert trainer.state.epoch == stop_epoch


def test_deferred_reweighting_gets_a_full_patience_window_before_a_stop():
    # patience runs out at epoch 3 already; re-weighting starts at 3, so the floor is 3 + 2 = 5
    scores = [0.5] * 8
    trainer, evaluator = _fake_validation(scores)
    MinEpochsEarlyStopHandler(evaluator, patience=2, min_epochs=0, reweighting_start_epoch=3).attach(trainer)
    trainer.run([0], max_epochs=len(scores))
    assert trainer.state.epoch == 5
