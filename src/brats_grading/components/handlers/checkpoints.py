"""Checkpoint handlers of a run: save ``last.pt`` every epoch, resume the trainer from it, keep the best
model across a resume, and check that a loaded checkpoint reproduces the AUC stored with it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..checkpoints import load_weights, stored_metrics
from ..fault_injection import pause_point

__all__ = [
    "BestCheckpointSaver",
    "LastCheckpointSaver",
    "ReplacingSaver",
    "StoredMetricCheckHandler",
    "TrainerCheckpointLoader",
]

logger = logging.getLogger(__name__)


class TrainerCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` that also restores the trainer it is attached to (epoch, iteration).

    The trainer cannot be listed in the config's ``load_dict`` (it holds this handler: a cycle), so it
    is added at attach time under the key ``trainer``, as :class:`LastCheckpointSaver` saves it.

    Args:
        load_path: the ``last.pt`` to resume from.
        load_dict: objects to restore, by the names they were saved under.
        map_location: ``torch.load``'s map_location.
    """

    def __init__(self, load_path: str, load_dict: dict, map_location=None) -> None:
        if not load_path or not Path(load_path).is_file():
            raise FileNotFoundError(f"resume: checkpoint '{load_path}' does not exist")
        state = load_weights(load_path, "resume checkpoint")  # refuses pickled code with a message naming the file
        trainer = state.get("trainer", {}) if isinstance(state, dict) else {}
        message = (
            f"resume: continuing run {Path(load_path).resolve().parent.parent} from {load_path} "
            f"(epoch {trainer.get('epoch', '?')} complete, iteration {trainer.get('iteration', '?')})"
        )
        logger.warning(message)
        super().__init__(load_path=load_path, load_dict=dict(load_dict), map_location=map_location)

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        super().attach(engine)


class ReplacingSaver(BaseSaveHandler):
    """ignite save handler that replaces a checkpoint file without a moment in which none exists.

    ignite's ``Checkpoint`` removes the previous file before it saves the next one (``DiskSaver(atomic=True)``
    only makes the new file appear whole): a kill between the two leaves no checkpoint. Here the new file is
    written to ``.<name>.partial`` beside it, flushed to disk, then renamed over the old one (``os.replace`` is
    atomic on one file system); files ``Checkpoint`` asks to remove are deleted after that.

    Args:
        dirname: the folder of the checkpoints.
        filename: a fixed file name that overrides the one ``Checkpoint`` passes (MONAI's ``key_metric_filename``).
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        self.dirname = Path(dirname)
        self.filename = filename
        self.dirname.mkdir(parents=True, exist_ok=True)
        self._stale: set[str] = set()

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        path = self.dirname / (self.filename or filename)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        pause_point(f"replace_{path.name}")  # a fault-injection test kills the run here (fault_injection.py)
        os.replace(partial, path)
        for name in self._stale - {path.name}:
            (self.dirname / name).unlink(missing_ok=True)
        self._stale.clear()

    def remove(self, filename: str) -> None:
        """Deferred to the next save: deleting now would open the window this class closes."""
        self._stale.add(self.filename or filename)


class LastCheckpointSaver:
    """Save ``save_dict`` and the trainer to ``<save_dir>/<filename>`` after every epoch (atomic write).

    Uses ignite's ``Checkpoint`` with a :class:`ReplacingSaver`: the new file is complete before it replaces
    the old one, so a kill at any moment leaves the previous complete checkpoint.

    Args:
        save_dir: the run's ``checkpoints`` folder.
        save_dict: objects with ``state_dict`` (network, optimiser, scheduler, EMA model, report...).
        filename: name of the file, replaced every epoch.
    """

    def __init__(self, save_dir: str, save_dict: dict, filename: str = "last.pt") -> None:
        if not filename.endswith(".pt"):
            raise ValueError(f"filename must end in .pt, got {filename!r}")
        self.save_dir = save_dir
        self.save_dict = dict(save_dict)
        self.filename = filename

    def attach(self, engine: Engine) -> None:
        checkpoint = Checkpoint(
            {**self.save_dict, "trainer": engine},
            ReplacingSaver(self.save_dir),
            filename_pattern=self.filename,
            n_saved=1,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)


class BestCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` of the best model (``key_metric_filename``) that survives a resume.

    A resumed run starts with an empty record of what it saved, so MONAI's saver would replace ``best.pt``
    with the first model validated after the resume, better or not. This one reads the score stored in
    the existing file (``selection_score`` of its metrics) and only replaces it with a better model, as the
    uninterrupted run does.

    Args:
        save_dir: the run's ``checkpoints`` folder.
        save_dict: objects to save (``model`` and ``metrics``).
        key_metric_name: engine metric to maximise, e.g. ``val_selection_score``.
        key_metric_filename: the file, e.g. ``best.pt``.
        stored_score_key: name of that score in the metrics stored in the file.
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        key_metric_name: str,
        key_metric_filename: str,
        stored_score_key: str = "selection_score",
    ) -> None:
        super().__init__(
            save_dir=save_dir,
            save_dict=save_dict,
            save_key_metric=True,
            key_metric_name=key_metric_name,
            key_metric_filename=key_metric_filename,
        )
        self._key_metric_checkpoint.save_handler = ReplacingSaver(save_dir, filename=key_metric_filename)
        existing = Path(save_dir) / key_metric_filename
        score = stored_metrics(existing).get(stored_score_key) if existing.is_file() else None
        if score is not None:
            self.load_state_dict({"_saved": [(float(score), key_metric_filename)]})
            logger.info(f"{existing} holds {stored_score_key} {score}: replaced only by a better model")


class StoredMetricCheckHandler:
    """Fail evaluation when the AUC it computes differs from the AUC stored with the checkpoint.

    A checkpoint must reproduce the number it was selected on; a mismatch means wrong weights, wrong
    fold or wrong preprocessing, and must not pass silently. The check needs the cases it was selected
    on: when the checkpoint names its selection cases and they are not the evaluated ones (a
    selection-free evaluation), the two AUCs measure different cases and nothing is compared.

    Args:
        checkpoint_path: the evaluated checkpoint (holding ``{"model", "metrics"}``).
        metric_name: the engine metric to compare with the stored ``auc``.
        tolerance: largest accepted absolute difference, >= 0.
        case_ids: the evaluated cases' ids (compared with the stored ``selection_ids``).
    """

    def __init__(
        self,
        checkpoint_path: str,
        metric_name: str = "val_auc",
        tolerance: float = 1e-3,
        case_ids: Sequence[str] | None = None,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.checkpoint_path = checkpoint_path
        self.metric_name = metric_name
        self.tolerance = tolerance
        self.case_ids = None if case_ids is None else {str(c) for c in case_ids}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        stored = stored_metrics(self.checkpoint_path).get("auc")
        if stored is None:
            logger.warning(f"{self.checkpoint_path} stores no AUC: nothing to check against")
            return
        selection = stored_metrics(self.checkpoint_path).get("selection_ids")
        if self.case_ids is not None and selection is not None and set(selection) != self.case_ids:
            logger.info(
                f"{self.checkpoint_path} was selected on {len(selection)} other cases (AUC {stored:.4f}); "
                f"these {len(self.case_ids)} cases chose nothing about it, so its stored AUC is not compared"
            )
            return
        computed = engine.state.metrics.get(self.metric_name)
        if computed is None or abs(computed - stored) > self.tolerance:
            raise RuntimeError(
                f"evaluation AUC {computed} differs from the AUC {stored} stored in {self.checkpoint_path} "
                f"(tolerance {self.tolerance}): wrong checkpoint, fold, data or preprocessing?"
            )
        logger.info(f"AUC {computed:.4f} matches the {stored:.4f} stored in {self.checkpoint_path}")
