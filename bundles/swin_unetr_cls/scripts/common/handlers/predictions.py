"""Write batch inference's per-case predictions: calibrated P(HGG), the grade at the stored threshold, the logit."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..calibration import calibrated_probs
from ..outputs import unused_path, write_prediction_csv
from .engine_outputs import batch_ids, case_items, case_label_tensor, hgg_log_odds
from .failures import CaseFailures

__all__ = ["PredictionSaver"]

logger = logging.getLogger(__name__)


class PredictionSaver:
    """Write one CSV row per case when inference completes; never overwrite an existing file.

    An existing ``predictions.csv`` makes ``predictions_1.csv``, ``predictions_2.csv``... The engine's
    ``pred`` must be the network's logits (2 classes).

    Cases the dataset could not prepare get no row: they go to ``<stem>_failed.csv`` with their reason,
    and the run ends with :class:`.failures.BatchInferenceError` once the good ones are written.

    Args:
        output_file: the CSV to write.
        operating_point: ``{"temperature", "threshold"}`` of the model (:func:`..calibration.read_operating_point`).
        strict: stop at the first bad case instead.
    """

    def __init__(self, output_file: str, operating_point: dict | None = None, strict: bool = False) -> None:
        point = operating_point or {"temperature": 1.0, "threshold": 0.5}
        if not point["temperature"] > 0 or not 0.0 <= point["threshold"] <= 1.0:
            raise ValueError(f"operating_point needs temperature > 0 and threshold in [0, 1], got {point}")
        self.output_file = Path(output_file)
        self.temperature = float(point["temperature"])
        self.threshold = float(point["threshold"])
        # tensors until inference completes: reading them per iteration would sync the host with the device
        self.ids: list[str] = []
        self.log_odds: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.failures = CaseFailures(strict)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._save_partial)

    def _collect(self, engine: Engine) -> None:
        good = self.failures.good_cases(engine)
        items = case_items(engine.state.output)
        for case_id, item, keep in zip(batch_ids(engine), items, good, strict=True):
            if not keep:
                continue
            self.ids.append(case_id)
            self.log_odds.append(hgg_log_odds(item["pred"].detach().reshape(-1)).reshape(()))
            if item.get("label") is not None:
                self.labels.append(case_label_tensor(item))

    def _save_partial(self, _engine: Engine, error: BaseException) -> None:
        """A crash late in a batch keeps the rows computed before it: ``<stem>_partial.csv``; the error goes on."""
        if self.ids and not isinstance(error, (KeyboardInterrupt, SystemExit)):
            path = unused_path(self.output_file.with_name(f"{self.output_file.stem}_partial.csv"))
            self._write(path)
            logger.error(f"inference failed after {len(self.ids)} cases; their predictions are in {path}")
        raise error

    def _write(self, path: Path) -> None:
        log_odds = [float(x) for x in self.log_odds]
        labels = [int(x) for x in self.labels] if len(self.labels) == len(self.ids) else None
        write_prediction_csv(
            path, self.ids, calibrated_probs(log_odds, self.temperature), log_odds, self.threshold, labels
        )

    def __call__(self, _engine: Engine) -> None:
        path = unused_path(self.output_file)
        self._write(path)
        logger.info(f"wrote {len(self.ids)} predictions to {path} (threshold {self.threshold:.6g})")
        self.failures.finish(path, len(self.ids))
