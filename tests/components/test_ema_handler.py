"""The EMA of the weights: its average, its update schedule under accumulation, its warm-up, its resume."""

from __future__ import annotations

import torch
from ignite.engine import Events

from brats_grading.components.handlers import (
    LastCheckpointSaver,
    OptimizerStepEMAHandler,
    StopAtEpochHandler,
    TrainerCheckpointLoader,
    ema_copy,
)


def _record_ema_updates(trainer, ema_model: torch.nn.Module) -> list[int]:
    """Iterations after which ``ema_model``'s weights changed (attach after the EMA handler)."""
    updates: list[int] = []
    previous = [p.detach().clone() for p in ema_model.parameters()]

    @trainer.on(Events.ITERATION_COMPLETED)
    def compare(engine):
        current = [p.detach().clone() for p in ema_model.parameters()]
        if any(not torch.equal(a, b) for a, b in zip(previous, current, strict=True)):
            updates.append(engine.state.iteration)
        previous[:] = current

    return updates


def _zeroed_ema_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An EMA copy starting from zero, so that every update moves it, even one before the first step."""
    ema_model = ema_copy(model)
    with torch.no_grad():
        for param in ema_model.parameters():
            param.zero_()
    return ema_model


def test_ema_follows_the_decay_and_differs_from_raw_weights(linear_trainer):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = OptimizerStepEMAHandler(model, ema_copy(model), decay=0.9)
    trainer = linear_trainer(model)
    expected = [p.detach().clone() for p in model.parameters()]

    @trainer.on(Events.ITERATION_COMPLETED)
    def track(_):
        for e, p in zip(expected, model.parameters(), strict=True):
            e.mul_(0.9).add_(p.detach(), alpha=0.1)

    ema.attach(trainer)
    trainer.run()
    for e, p_ema, p in zip(expected, ema.ema_model.parameters(), model.parameters(), strict=True):
        assert torch.allclose(p_ema, e, atol=1e-6)
        assert not torch.allclose(p_ema, p)


def test_ema_updates_once_per_optimiser_step_under_accumulation(linear_trainer):
    model = torch.nn.Linear(3, 2)
    ema_model = _zeroed_ema_copy(model)
    trainer = linear_trainer(model, batches=6, accumulation_steps=2)
    OptimizerStepEMAHandler(model, ema_model, decay=0.5).attach(trainer)
    updates = _record_ema_updates(trainer, ema_model)
    trainer.run()
    assert updates == [2, 4, 6] and trainer.state.ema_momentum == 0.5


def test_ema_updates_at_the_epoch_end_flush_when_batches_do_not_divide_by_accumulation(linear_trainer):
    # 5 batches, accumulation 2: the optimiser steps at local iterations 2, 4 and 5 (flush) of each epoch
    model = torch.nn.Linear(3, 2)
    ema_model = _zeroed_ema_copy(model)
    trainer = linear_trainer(model, epochs=2, batches=5, accumulation_steps=2)
    OptimizerStepEMAHandler(model, ema_model, decay=0.5).attach(trainer)
    updates = _record_ema_updates(trainer, ema_model)
    trainer.run()
    assert updates == [2, 4, 5, 7, 9, 10]


def test_ema_warmup_momentum_starts_at_warmup_decay_and_ends_at_decay():
    model = torch.nn.Linear(3, 2)
    ema = OptimizerStepEMAHandler(model, ema_copy(model), decay=0.999, warmup_decay=0.5, warmup_steps=10)
    assert ema.momentum_at(1) == 1 - 0.5
    assert ema.momentum_at(10) == 1 - 0.999


def _ema_run(linear_trainer, tmp_path, stop_epoch=None, resume_from=None) -> torch.nn.Module:
    """Train 3 epochs (3 batches, accumulation 2, EMA warm-up over 5 of its 6 steps); return the EMA model.

    ``stop_epoch`` ends the run early after saving ``last.pt``; ``resume_from`` continues from one.
    """
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema_model = ema_copy(model)
    trainer = linear_trainer(model, epochs=3, accumulation_steps=2, batches=3, data_seed=1)
    saved = {"model": model, "ema_model": ema_model, "optimizer": trainer.optimizer}
    if resume_from is not None:
        TrainerCheckpointLoader(str(resume_from), saved).attach(trainer)
    OptimizerStepEMAHandler(model, ema_model, decay=0.9, warmup_decay=0.2, warmup_steps=5).attach(trainer)
    if stop_epoch is not None:
        LastCheckpointSaver(str(tmp_path), saved).attach(trainer)
        StopAtEpochHandler(stop_epoch).attach(trainer)
    trainer.run()
    return ema_model


def test_a_resumed_run_ends_with_the_same_ema_weights_as_an_uninterrupted_one(linear_trainer, tmp_path):
    uninterrupted = _ema_run(linear_trainer, tmp_path)
    _ema_run(linear_trainer, tmp_path, stop_epoch=1)  # the warm-up is mid-way (step 2 of 5) at the stop
    resumed = _ema_run(linear_trainer, tmp_path, resume_from=tmp_path / "last.pt")
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
