"""The ignite glue: EMA, early stopping with a minimum, clipping, seeding, checkpoints."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer

from brats_grading.components.handlers import (
    EMA,
    CheckpointMetricCheck,
    EarlyStopping,
    EpochSeeding,
    GradientClipping,
    StopAtEpoch,
)


def _linear_trainer(model, lr=0.1, epochs=1, batches=4, accumulation_steps=1, handlers=()):
    data = [{"image": torch.randn(2, 3), "label": torch.tensor([0, 1])} for _ in range(batches)]
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=data,
        network=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=list(handlers),
        accumulation_steps=accumulation_steps,
        decollate=False,
    )


def test_ema_follows_the_decay_and_differs_from_raw_weights():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    trainer = _linear_trainer(model)
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


def test_ema_updates_once_per_optimiser_step_under_accumulation():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5, every=2)
    calls = []
    trainer = _linear_trainer(model, batches=6, accumulation_steps=2)
    ema.attach(trainer)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=2), lambda e: calls.append(e.state.iteration))
    trainer.run()
    assert calls == [2, 4, 6] and trainer.state.ema_momentum == 0.5


def test_ema_state_round_trips_with_warmup_position():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.999, warmup_decay=0.5, warmup_iters=10)
    trainer = _linear_trainer(model, batches=3)
    ema.attach(trainer)
    trainer.run()
    state = ema.state_dict()
    other = EMA(torch.nn.Linear(3, 2), decay=0.999, warmup_decay=0.5, warmup_iters=10)
    other.attach(_linear_trainer(other.model))
    other.load_state_dict(state)
    assert other.momentum_scheduler.event_index == ema.momentum_scheduler.event_index == 3
    assert torch.equal(other.ema_model.weight, ema.ema_model.weight)


def _fake_validation(scores):
    """A trainer whose 'evaluator' reports the given score at each epoch."""
    trainer = Engine(lambda e, b: None)
    evaluator = Engine(lambda e, b: None)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine):
        evaluator.state.epoch = engine.state.epoch
        evaluator.state.metrics["val_selection_score"] = scores[engine.state.epoch - 1]

    return trainer, evaluator


def test_early_stopping_waits_for_min_epochs():
    scores = [0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    trainer, evaluator = _fake_validation(scores)
    EarlyStopping(evaluator, patience=2, min_epochs=6).attach(trainer)
    trainer.run([0], max_epochs=len(scores))
    assert trainer.state.epoch == 6


def test_early_stopping_stops_after_patience_once_past_minimum():
    scores = [0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    trainer, evaluator = _fake_validation(scores)
    EarlyStopping(evaluator, patience=3, min_epochs=2).attach(trainer)
    trainer.run([0], max_epochs=len(scores))
    assert trainer.state.epoch == 6


def test_gradient_clipping_bounds_the_norm_before_the_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    norms = []
    trainer = _linear_trainer(model, lr=0.0, handlers=[GradientClipping(max_norm=0.01)])

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(_):
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item())

    trainer.run()
    assert max(norms) <= 0.01 + 1e-6


def test_epoch_seeding_makes_an_epoch_depend_only_on_seed_and_epoch():
    draws = {}

    def run(epochs):
        engine = Engine(lambda e, b: None)
        EpochSeeding(seed=5).attach(engine)
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
    StopAtEpoch(2).attach(engine)
    engine.run([0], max_epochs=5)
    assert engine.state.epoch == 2


def test_checkpoint_metric_check_catches_a_mismatch(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "metrics": {"auc": 0.8}}, path)
    engine = Engine(lambda e, b: None)
    CheckpointMetricCheck(str(path), tolerance=1e-3).attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_auc=0.8))
    engine.run([0])
    engine = Engine(lambda e, b: None)
    CheckpointMetricCheck(str(path), tolerance=1e-3).attach(engine)
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(val_auc=0.7))
    try:
        engine.run([0])
    except RuntimeError as err:
        assert "0.7" in str(err) and "0.8" in str(err)
    else:
        raise AssertionError("a mismatching AUC must fail")


def test_epoch_metrics_fail_clearly_when_training_diverged(tmp_path):
    from brats_grading.components.handlers import EpochMetrics
    from brats_grading.components.report import RunReport

    outputs = iter([[{"pred": torch.tensor([float("nan"), 0.0]), "label": torch.tensor(1)}]])
    engine = Engine(lambda e, b: next(outputs))
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: setattr(e.state, "batch", [{"id": "c1"}]))
    EpochMetrics(RunReport(tmp_path), "train").attach(engine)
    try:
        engine.run([0])
    except FloatingPointError as err:
        assert "train epoch 1" in str(err) and "non-finite" in str(err)
    else:
        raise AssertionError("non-finite outputs must stop training with a clear error")
