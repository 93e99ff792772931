"""Ignite handlers the bundles need beyond what MONAI and ignite ship, one concept per module.

Library parts are used where they exist (ignite's ``EMAHandler`` and ``Checkpoint``, MONAI's
``EarlyStopHandler`` and ``CheckpointLoader``); each class here adds the missing piece. Names follow
MONAI's: what the handler does, ending in ``Handler``, ``Saver`` or ``Loader``. A handler is switched
off in a config in one way only: ``"_disabled_"``.
"""

from .checkpoints import BestCheckpointSaver, LastCheckpointSaver, StoredMetricCheckHandler, TrainerCheckpointLoader
from .early_stopping import MinEpochsEarlyStopHandler
from .ema import OptimizerStepEMAHandler, ema_copy
from .engine_outputs import batch_ids, case_items, hgg_log_odds, hgg_probability_output
from .failures import BatchInferenceError, CaseFailures
from .faults import InterruptHandler, NonFiniteLossError, NonFiniteLossHandler
from .metrics import EpochMetricsHandler
from .predictions import PredictionSaver
from .publishing import BestModelSaver
from .run_report import RunReportSaver
from .saliency import SaliencySaver
from .training_controls import EpochSeedHandler, GradientClipHandler, StopAtEpochHandler, is_optimizer_step

__all__ = [
    "BatchInferenceError",
    "BestCheckpointSaver",
    "BestModelSaver",
    "CaseFailures",
    "InterruptHandler",
    "NonFiniteLossError",
    "NonFiniteLossHandler",
    "EpochMetricsHandler",
    "EpochSeedHandler",
    "GradientClipHandler",
    "LastCheckpointSaver",
    "MinEpochsEarlyStopHandler",
    "OptimizerStepEMAHandler",
    "PredictionSaver",
    "RunReportSaver",
    "SaliencySaver",
    "StopAtEpochHandler",
    "StoredMetricCheckHandler",
    "TrainerCheckpointLoader",
    "batch_ids",
    "case_items",
    "ema_copy",
    "hgg_log_odds",
    "hgg_probability_output",
    "is_optimizer_step",
]
