"""Publish the run's model at the end of training: the weights a user downloads and their operating point.

The published file is a plain state dict, what the model zoo's ``ckpt_export`` expects; the temperature
and threshold chosen on validation go next to it as JSON (:mod:`..calibration`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..calibration import operating_point_path, write_operating_point
from ..checkpoints import load_weights, select_checkpoint, stored_metrics
from ..outputs import unused_path

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)

#: what the published model's operating-point file keeps: the point, and the epoch and cases that chose it
OPERATING_POINT_KEYS: tuple[str, ...] = (
    "temperature", "threshold", "threshold_rule", "source", "epoch", "auc", "balanced_accuracy", "selection_ids"
)  # fmt: skip


class BestModelSaver:
    """When training completes, copy the best-validated checkpoint's weights to ``publish_path``.

    The candidate with the best stored validation score wins (``best_ema.pt`` before ``best.pt`` on
    ties when listed first). A model already at ``publish_path`` is not lost: it and its operating point
    move to ``backup_dir`` (the run's checkpoints) as ``replaced_<name>``, so the bundle folder holds one
    model, never a pile of previous ones.

    Args:
        candidates: checkpoints holding ``{"model", "metrics"}``, in order of preference on ties.
        publish_path: where the plain state dict goes, e.g. ``<bundle>/models/model.pt``.
        backup_dir: where a replaced model goes.
    """

    def __init__(self, candidates: Sequence[str], publish_path: str, backup_dir: str) -> None:
        if not candidates:
            raise ValueError("candidates must name at least one checkpoint")
        if not str(publish_path).endswith(".pt"):
            raise ValueError(f"publish_path must end in .pt, got {publish_path!r}")
        self.candidates = list(candidates)
        self.publish_path = Path(publish_path)
        self.backup_dir = Path(backup_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, _engine: Engine) -> None:
        source = select_checkpoint(self.candidates)
        if source is None:
            logger.warning(f"no best checkpoint among {self.candidates}: nothing published")
            return
        state = load_weights(source, "checkpoint")
        target = self.publish_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            self._back_up(target)
        torch.save(state.get("model", state), target)
        metrics = stored_metrics(source)
        point = {k: metrics[k] for k in (*OPERATING_POINT_KEYS, "network") if k in metrics}
        write_operating_point(target, {**point, "checkpoint": str(source)})
        logger.info(
            f"published {source} as {target} (threshold {point.get('threshold')}, T {point.get('temperature')})"
        )

    def _back_up(self, target: Path) -> None:
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        point = operating_point_path(target)
        for path in (target, point):
            if path.exists():
                backup = unused_path(self.backup_dir / f"replaced_{path.name}", suffix="".join(path.suffixes))
                shutil.move(str(path), backup)
                logger.info(f"moved the model it replaces, {path}, to {backup}")
