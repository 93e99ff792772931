"""Handlers that steer a training run: gradient clipping, per-epoch seeding, stopping after an epoch.

:func:`is_optimizer_step` states once when MONAI's trainer steps the optimiser under gradient
accumulation; clipping and the EMA both follow it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from monai.engines import IterationEvents
from monai.utils import set_determinism

__all__ = ["EpochSeedHandler", "GradientClipHandler", "StopAtEpochHandler", "is_optimizer_step"]

logger = logging.getLogger(__name__)


def is_optimizer_step(engine: Engine, _event: int | None = None) -> bool:
    """True on iterations where MONAI's ``SupervisedTrainer`` calls ``optimizer.step()``.

    With ``accumulation_steps`` k it steps every k-th iteration of an epoch and flushes at the
    epoch's last iteration, so the count restarts each epoch (the rule of ``SupervisedTrainer``).
    Usable as an ignite event filter: ``Events.ITERATION_COMPLETED(event_filter=is_optimizer_step)``.
    """
    acc = getattr(engine, "accumulation_steps", 1)
    if acc <= 1:
        return True
    local = (engine.state.iteration - 1) % engine.state.epoch_length
    return (local + 1) % acc == 0 or local + 1 == engine.state.epoch_length


class GradientClipHandler:
    """Clip the gradient norm between backward and the optimiser step (MONAI's trainer has no option).

    Runs on ``BACKWARD_COMPLETED`` and only on iterations that step (:func:`is_optimizer_step`);
    with a CUDA ``GradScaler`` the gradients are unscaled first so the norm is in real units.

    Args:
        max_norm: largest allowed total gradient norm, > 0.
        parameters: parameters to clip; default the trainer network's.
    """

    def __init__(self, max_norm: float = 0.5, parameters: Sequence[torch.nn.Parameter] | None = None) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = max_norm
        self.parameters = parameters

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_optimizer_step(engine):
            return
        if getattr(engine, "scaler", None) is not None and engine.amp:
            engine.scaler.unscale_(engine.optimizer)
        params = self.parameters if self.parameters is not None else engine.network.parameters()
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)


class EpochSeedHandler:
    """Reseed every random source at each epoch start from ``seed + epoch``.

    Each epoch's augmentation, sampling and dropout then depend only on (seed, epoch), so a run
    resumed from ``last.pt`` draws the same numbers as an uninterrupted one (with ``num_workers``
    0 or non-persistent workers, whose seeds come from the main process).

    Args:
        seed: base seed of the run.
        datasets: datasets whose transforms are reseeded too (MONAI randomisable transforms).
    """

    def __init__(self, seed: int = 42, datasets: Sequence | None = None) -> None:
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.seed = int(seed)
        self.datasets = list(datasets or [])

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_seed = self.seed + engine.state.epoch
        set_determinism(seed=epoch_seed)
        for dataset in self.datasets:
            transform = getattr(dataset, "transform", None)
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed=epoch_seed)


class StopAtEpochHandler:
    """End training after ``epoch`` epochs without changing the schedule (time-limited or preemptible jobs).

    The learning-rate schedule and everything else still follow ``max_epochs``; resume later from
    ``last.pt``.

    Args:
        epoch: last epoch to run, >= 1.
    """

    def __init__(self, epoch: int) -> None:
        if int(epoch) != epoch or epoch < 1:
            raise ValueError(f"epoch must be an integer >= 1, got {epoch}")
        self.epoch = int(epoch)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch >= self.epoch:
            logger.info(f"stopping after epoch {engine.state.epoch} as asked (stop_epoch); resume from last.pt")
            engine.terminate()
