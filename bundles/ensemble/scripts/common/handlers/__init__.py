"""Ignite handlers the bundles need beyond what MONAI and ignite ship, one concept per module.

Library parts are used where they exist (ignite's ``EMAHandler`` and ``Checkpoint``, MONAI's
``EarlyStopHandler`` and ``CheckpointLoader``); each class here adds the missing piece. Names follow
MONAI's: what the handler does, ending in ``Handler``, ``Saver`` or ``Loader``. A handler is switched
off in a config in one way only: ``"_disabled_"``.
"""

from __future__ import annotations

import importlib

#: every exported name and the submodule defining it; imported on first use, so a bundle that runs
#: inference alone never imports (nor needs a copy of) the training handlers
_MODULE_OF = {
    "batch_ids": "engine_outputs",
    "BatchInferenceError": "failures",
    "BestCheckpointSaver": "checkpoints",
    "BestModelSaver": "publishing",
    "case_items": "engine_outputs",
    "CaseFailures": "failures",
    "ema_copy": "ema",
    "EpochMetricsHandler": "metrics",
    "EpochSeedHandler": "training_controls",
    "GradientClipHandler": "training_controls",
    "hgg_log_odds": "engine_outputs",
    "hgg_probability_output": "engine_outputs",
    "InterruptHandler": "faults",
    "is_optimizer_step": "training_controls",
    "LastCheckpointSaver": "checkpoints",
    "MinEpochsEarlyStopHandler": "early_stopping",
    "NonFiniteLossError": "faults",
    "NonFiniteLossHandler": "faults",
    "OptimizerStepEMAHandler": "ema",
    "PredictionSaver": "predictions",
    "RunReportSaver": "run_report",
    "SaliencySaver": "saliency",
    "StopAtEpochHandler": "training_controls",
    "StoredMetricCheckHandler": "checkpoints",
    "TrainerCheckpointLoader": "checkpoints",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
