"""Every handler checks its arguments when built, so a bad config fails before training starts."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from brats_grading.components.handlers import (
    EpochMetricsHandler,
    GradientClipHandler,
    MinEpochsEarlyStopHandler,
    OptimizerStepEMAHandler,
    StopAtEpochHandler,
    ema_copy,
)
from brats_grading.components.run_report import RunReport


def _ema_with_decay_one(_tmp_path):
    model = torch.nn.Linear(3, 2)
    return OptimizerStepEMAHandler(model, ema_copy(model), decay=1.0)


BAD_ARGUMENTS = {
    "decay": _ema_with_decay_one,
    "patience": lambda _tmp_path: MinEpochsEarlyStopHandler(Engine(lambda e, b: None), patience=-1),
    "epoch": lambda _tmp_path: StopAtEpochHandler(0),
    "max_norm": lambda _tmp_path: GradientClipHandler(max_norm=0),
    "threshold_rule": lambda tmp_path: EpochMetricsHandler(RunReport(tmp_path), "val", threshold_rule="median"),
}


@pytest.mark.parametrize("argument", list(BAD_ARGUMENTS))
def test_a_handler_rejects_a_bad_argument_with_an_error_naming_it(argument, tmp_path):
    with pytest.raises(ValueError, match=argument):
        BAD_ARGUMENTS[argument](tmp_path)
