"""Handlers steering a run: gradient clipping, per-epoch seeding, stopping after a given epoch."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from brats_grading.components.handlers import EpochSeedHandler, GradientClipHandler, StopAtEpochHandler


def test_gradient_clipping_bounds_the_norm_before_the_step(linear_trainer):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    norms = []
    trainer = linear_trainer(model, lr=0.0, handlers=[GradientClipHandler(max_norm=0.01)])

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(_):
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item())

    trainer.run()
    assert max(norms) <= 0.01 + 1e-6


def test_epoch_seeding_makes_an_epoch_depend_only_on_seed_and_epoch():
    draws = {}

    def run(epochs):
        engine = Engine(lambda e, b: None)
        EpochSeedHandler(seed=5).attach(engine)
        engine.add_event_handler(
            Events.EPOCH_STARTED, lambda e: draws.setdefault(epochs, []).append(torch.rand(1).item())
        )
        engine.run([0], max_epochs=epochs)

    run(3)
    torch.rand(10)  # disturb the global generator
    run(2)
    assert draws[3][:2] == draws[2]


def test_stop_at_epoch_ends_early():
    engine = Engine(lambda e, b: None)
    StopAtEpochHandler(2).attach(engine)
    engine.run([0], max_epochs=5)
    assert engine.state.epoch == 2
