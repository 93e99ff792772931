"""Checkpoint handlers of a run: save ``last.pt`` every epoch, resume the trainer from it, keep the best
model across a resume, and check that a loaded checkpoint reproduces the AUC stored with it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from ..checkpoints import load_weights, stored_metrics

__all__ = ["BestCheckpointSaver", "LastCheckpointSaver", "StoredMetricCheckHandler", "TrainerCheckpointLoader"]

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
        load_weights(load_path, "resume checkpoint")  # refuses pickled code with a message naming the file
        super().__init__(load_path=load_path, load_dict=dict(load_dict), map_location=map_location)

    def attach(self, engine: Engine) -> None:
        self.load_dict["trainer"] = engine
        super().attach(engine)


class LastCheckpointSaver:
    """Save ``save_dict`` and the trainer to ``<save_dir>/<filename>`` after every epoch (atomic write).

    Uses ignite's ``Checkpoint`` with a ``DiskSaver(atomic=True)``: the file is written to a temporary
    name and renamed, so an interruption leaves the previous complete checkpoint.

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
            DiskSaver(self.save_dir, require_empty=False, atomic=True),
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
        existing = Path(save_dir) / key_metric_filename
        score = stored_metrics(existing).get(stored_score_key) if existing.is_file() else None
        if score is not None:
            self.load_state_dict({"_saved": [(float(score), key_metric_filename)]})
            logger.info(f"{existing} holds {stored_score_key} {score}: replaced only by a better model")


class StoredMetricCheckHandler:
    """Fail evaluation when the AUC it computes differs from the AUC stored with the checkpoint.

    A checkpoint must reproduce the number it was selected on; a mismatch means wrong weights, wrong
    fold or wrong preprocessing, and must not pass silently.

    Args:
        checkpoint_path: the evaluated checkpoint (holding ``{"model", "metrics"}``).
        metric_name: the engine metric to compare with the stored ``auc``.
        tolerance: largest accepted absolute difference, >= 0.
    """

    def __init__(self, checkpoint_path: str, metric_name: str = "val_auc", tolerance: float = 1e-3) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.checkpoint_path = checkpoint_path
        self.metric_name = metric_name
        self.tolerance = tolerance

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        stored = stored_metrics(self.checkpoint_path).get("auc")
        if stored is None:
            logger.warning(f"{self.checkpoint_path} stores no AUC: nothing to check against")
            return
        computed = engine.state.metrics.get(self.metric_name)
        if computed is None or abs(computed - stored) > self.tolerance:
            raise RuntimeError(
                f"evaluation AUC {computed} differs from the AUC {stored} stored in {self.checkpoint_path} "
                f"(tolerance {self.tolerance}): wrong checkpoint, fold, data or preprocessing?"
            )
        logger.info(f"AUC {computed:.4f} matches the {stored:.4f} stored in {self.checkpoint_path}")
