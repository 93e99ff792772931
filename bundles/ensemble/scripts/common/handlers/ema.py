"""Exponential moving average (EMA) of the weights, updated once after every optimiser step.

ignite's ``EMAHandler`` does the averaging (``ema = (1 - momentum) * ema + momentum * weights``,
momentum = 1 - decay). What is added: updates follow optimiser steps under gradient accumulation,
and the momentum warm-up is a function of the trainer's own position, so a resumed run continues
the same average with nothing but the EMA weights saved.
"""

from __future__ import annotations

import copy
import math

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

from .training_controls import is_optimizer_step

__all__ = ["OptimizerStepEMAHandler", "ema_copy"]


def ema_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` (of its ``module`` under DDP) to hold the average, in eval mode."""
    averaged = copy.deepcopy(getattr(model, "module", model))
    for param in averaged.parameters():
        param.requires_grad_(False)
    return averaged.eval()


def optimizer_steps_done(engine: Engine) -> int:
    """Optimiser steps taken so far, this iteration's included, from the trainer's epoch and iteration."""
    acc = max(1, getattr(engine, "accumulation_steps", 1))
    length = engine.state.epoch_length
    local = (engine.state.iteration - 1) % length + 1
    return (engine.state.epoch - 1) * math.ceil(length / acc) + math.ceil(local / acc)


class OptimizerStepEMAHandler(EMAHandler):
    """ignite's ``EMAHandler`` updating ``ema_model`` exactly once after each optimiser step.

    Momentum warm-up: for the first ``warmup_steps`` optimiser steps the momentum moves linearly from
    ``1 - warmup_decay`` to ``1 - decay`` (as ignite's warm-up), so early averages follow the weights
    instead of remembering the random initialisation. Buffers (BatchNorm statistics) are averaged too,
    as timm does (``handle_buffers="update"``).

    Args:
        model: the trained network (DDP-wrapped or not).
        ema_model: the module holding the average, e.g. :func:`ema_copy` of ``model``; the config
            shares it with the EMA evaluator and the checkpoints.
        decay: EMA decay in (0, 1); 0.999 averages over about 1000 steps.
        warmup_decay: decay at the first step, in (0, 1); None for no warm-up.
        warmup_steps: optimiser steps of the warm-up, >= 0.
        handle_buffers: ignite's buffer policy: ``"update"``, ``"copy"`` or ``"ema_train"``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        ema_model: torch.nn.Module,
        decay: float = 0.999,
        warmup_decay: float | None = None,
        warmup_steps: int = 0,
        handle_buffers: str = "update",
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        if warmup_decay is not None and not 0.0 < warmup_decay < 1.0:
            raise ValueError(f"EMA warmup_decay must be in (0, 1) or None, got {warmup_decay}")
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"EMA warmup_steps must be a non-negative integer, got {warmup_steps}")
        super().__init__(model, momentum=1.0 - decay, handle_buffers=handle_buffers)
        source = getattr(model, "module", model)
        if [k for k, _ in source.named_parameters()] != [k for k, _ in ema_model.named_parameters()]:
            raise ValueError("ema_model must have the same parameters as model (use ema_copy(model))")
        self.ema_model = ema_model  # replaces ignite's own copy, so the config can share this module
        self.warmup_momentum = None if warmup_decay is None or warmup_steps == 0 else 1.0 - warmup_decay
        self.warmup_steps = int(warmup_steps)

    def momentum_at(self, step: int) -> float:
        """Momentum of the ``step``-th optimiser step (1-based)."""
        if self.warmup_momentum is None or step >= self.warmup_steps:
            return self.momentum
        fraction = (step - 1) / max(1, self.warmup_steps - 1)
        return self.warmup_momentum + (self.momentum - self.warmup_momentum) * fraction

    def attach(self, engine: Engine, name: str = "ema_momentum", warn_if_exists: bool = False, event=None) -> None:
        """Update on ``ITERATION_COMPLETED`` of stepping iterations; the momentum is set just before."""
        event = event or Events.ITERATION_COMPLETED(event_filter=is_optimizer_step)
        engine.add_event_handler(event, self._set_momentum, name)
        super().attach(engine, name, warn_if_exists, event)

    def _set_momentum(self, engine: Engine, name: str) -> None:
        setattr(engine.state, name, self.momentum_at(optimizer_steps_done(engine)))
