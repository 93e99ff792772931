"""Early stopping on a validation metric that never ends a run before its minimum length.

MONAI's ``EarlyStopHandler`` (ignite's ``EarlyStopping`` underneath) counts validations without
improvement. Two floors are added: ``min_epochs``, and, for a loss with deferred re-weighting,
``reweighting_start_epoch + patience``, so the re-weighted phase always gets a full patience window
(otherwise a run can stop before re-weighting ever starts).
"""

from __future__ import annotations

import logging

from ignite.engine import Engine
from monai.handlers import EarlyStopHandler

__all__ = ["MinEpochsEarlyStopHandler"]

logger = logging.getLogger(__name__)


class MinEpochsEarlyStopHandler(EarlyStopHandler):
    """Stop training when ``evaluator``'s metric has not improved for ``patience`` validations, not too early.

    Attached to the trainer (so the config has no trainer <-> evaluator cycle); it acts only on
    epochs where ``evaluator`` ran. Patience still counts before the floor; a stop it would trigger
    is deferred to the first validation at or after :attr:`min_epochs`.

    Args:
        evaluator: the engine whose ``state.metrics`` holds ``metric_name``.
        metric_name: metric to maximise, e.g. ``val_selection_score``.
        patience: validations without improvement before stopping; 0 never stops.
        min_epochs: no stop before this epoch.
        reweighting_start_epoch: first epoch of deferred re-weighting (0: none); no stop before
            ``reweighting_start_epoch + patience``.
        min_delta: smallest change that counts as an improvement, >= 0.
    """

    def __init__(
        self,
        evaluator: Engine,
        metric_name: str = "val_selection_score",
        patience: int = 7,
        min_epochs: int = 10,
        reweighting_start_epoch: int = 0,
        min_delta: float = 0.0,
    ) -> None:
        if int(patience) != patience or patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (0: never stop), got {patience}")
        if min_epochs < 0 or reweighting_start_epoch < 0:
            raise ValueError(
                f"min_epochs and reweighting_start_epoch must be >= 0, got {min_epochs}, {reweighting_start_epoch}"
            )
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.evaluator = evaluator
        self.metric_name = metric_name
        floor = reweighting_start_epoch + patience if reweighting_start_epoch > 0 else 0
        self.min_epochs = max(int(min_epochs), int(floor))
        self.enabled = patience > 0
        super().__init__(patience=max(1, int(patience)), score_function=self._score, trainer=None, min_delta=min_delta)

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            self.set_trainer(engine)
            super().attach(engine)

    def state_dict(self) -> dict:
        """The count of validations without improvement and the best score: saved in ``last.pt`` for resuming."""
        return self._handler.state_dict() if self._handler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if state and self._handler is not None:
            self._handler.load_state_dict(state)

    def _score(self, _engine: Engine) -> float:
        metrics = self.evaluator.state.metrics
        if self.metric_name not in metrics:
            raise KeyError(f"early stopping: metric '{self.metric_name}' not in {sorted(metrics)}")
        return float(metrics[self.metric_name])

    def __call__(self, engine: Engine) -> None:
        if self.evaluator.state.epoch != engine.state.epoch:  # no validation this epoch (val_interval > 1)
            return
        super().__call__(engine)
        if engine.should_terminate and engine.state.epoch < self.min_epochs:
            engine.should_terminate = False
            logger.info(f"early stopping deferred: epoch {engine.state.epoch} < minimum {self.min_epochs}")
