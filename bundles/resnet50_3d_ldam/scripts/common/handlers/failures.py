"""Bad cases of a batch inference: skipped per batch, listed beside the predictions, and a failing exit at the end.

Cases come from :class:`..datasets.GuardedDataset`, which marks each with the reason it could not be
prepared ("" when good). One bad case must not cost the predictions of the others; it must not pass
unnoticed either, so the run still ends with an error once everything good is written.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ignite.engine import Engine

from ..datasets import FAILURE_KEY
from ..outputs import unused_path
from .engine_outputs import batch_ids

__all__ = ["BatchInferenceError", "CaseFailures"]

logger = logging.getLogger(__name__)


class BatchInferenceError(RuntimeError):
    """Some cases of a batch inference could not be graded (the others were written)."""


class CaseFailures:
    """Collect the bad cases of each batch; with ``strict``, stop at the first one.

    Args:
        strict: raise at the first bad case instead of going on with the others.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = bool(strict)
        self.reasons: dict[str, str] = {}

    def good_cases(self, engine: Engine) -> list[bool]:
        """Per case of the current batch: True when it was prepared; bad ones are recorded (or raised)."""
        ids = batch_ids(engine)
        batch = engine.state.batch  # a dict of lists, or a list of per-case dicts once MONAI decollated it
        if isinstance(batch, dict):
            reasons = batch.get(FAILURE_KEY) or [""] * len(ids)
        else:
            reasons = [item.get(FAILURE_KEY, "") for item in batch]
        good = []
        for case_id, reason in zip(ids, reasons, strict=True):
            if reason and self.strict:
                raise BatchInferenceError(f"{reason} (strict mode: stopped at the first bad case)")
            if reason:
                logger.error(f"skipped: {reason}")
                self.reasons[case_id] = reason
            good.append(not reason)
        return good

    def finish(self, predictions: Path, graded: int) -> None:
        """Write ``<predictions stem>_failed.csv`` (id, reason) and raise when any case failed."""
        if not self.reasons:
            return
        path = unused_path(predictions.with_name(f"{predictions.stem}_failed.csv"))
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "reason"])
            writer.writerows(self.reasons.items())
        first = next(iter(self.reasons.values()))
        raise BatchInferenceError(
            f"{len(self.reasons)} of {graded + len(self.reasons)} cases could not be graded (first: {first}); "
            f"reasons in {path}, the {graded} other predictions in {predictions}"
        )
