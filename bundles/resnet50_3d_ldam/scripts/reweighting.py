"""Deferred re-weighting (DRW) of the LDAM loss, after Cao et al., NeurIPS 2019.

Training starts unweighted, so the features are learnt from every case as it comes; from a late epoch on,
class-balanced weights make the rare class count more. The switch is a trainer handler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from .losses import validated_counts

__all__ = ["DRW_RULES", "DeferredReweightingHandler", "drw_class_weights"]

#: Allowed values of ``rule`` in :func:`drw_class_weights` and :class:`DeferredReweightingHandler`.
DRW_RULES = ("sqrt_inverse", "effective_number")


def drw_class_weights(class_counts: Sequence[int], rule: str = "sqrt_inverse", beta: float = 0.9999) -> torch.Tensor:
    """Class weights used once deferred re-weighting starts.

    Rules:
        - ``"sqrt_inverse"`` (default): w_j = sqrt(n_max / n_j), unnormalised, so the majority class keeps
          weight 1 and a class 4x rarer gets weight 2. Milder than inverse frequency.
        - ``"effective_number"`` (Cui et al., CVPR 2019, as used by the LDAM-DRW paper):
          w_j = (1 - beta) / (1 - beta^n_j), normalised to sum to the number of classes.

    Args:
        class_counts: training samples per class.
        rule: one of :data:`DRW_RULES`.
        beta: effective-number hyper-parameter in [0, 1); ignored by ``"sqrt_inverse"``.

    Returns:
        float32 tensor of shape (num_classes,).
    """
    counts = validated_counts(class_counts)
    if rule == "sqrt_inverse":
        n_max = max(counts)
        weights = [math.sqrt(n_max / c) for c in counts]
    elif rule == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        raw = [(1.0 - beta) / (1.0 - beta**c) for c in counts]
        weights = [len(counts) * r / sum(raw) for r in raw]
    else:
        raise ValueError(f"unknown DRW rule {rule!r}; allowed: {', '.join(repr(r) for r in DRW_RULES)}")
    return torch.tensor(weights, dtype=torch.float32)


class DeferredReweightingHandler:
    """Ignite handler of deferred re-weighting (DRW): no class weights before ``start_epoch``, DRW weights from it on.

    At every ``Events.EPOCH_STARTED`` it calls ``loss.set_class_weights(None)`` if
    ``engine.state.epoch < start_epoch``, else ``loss.set_class_weights(drw_class_weights(...))``. Ignite
    epochs are 1-based, so weights are active from epoch ``start_epoch`` inclusive (``start_epoch=1``:
    always weighted). The decision depends only on ``engine.state.epoch``, so the handler is stateless and
    resuming from a checkpoint restores the right weights at the next epoch start. Note that if the same
    loss object also computes validation losses, those are weighted too from ``start_epoch``.

    Args:
        loss: object with ``set_class_weights(weights | None)``, e.g. :class:`.losses.LDAMLoss`.
        class_counts: training samples per class (training fold only).
        start_epoch: first (1-based) epoch trained with weights, >= 1.
        rule: weight rule, see :func:`drw_class_weights`.
        beta: parameter of the ``"effective_number"`` rule.
    """

    def __init__(
        self,
        loss: Any,
        class_counts: Sequence[int],
        start_epoch: int = 15,
        rule: str = "sqrt_inverse",
        beta: float = 0.9999,
    ) -> None:
        if not callable(getattr(loss, "set_class_weights", None)):
            raise TypeError(f"loss must have a set_class_weights method, got {type(loss).__name__}")
        if isinstance(start_epoch, bool) or int(start_epoch) != start_epoch or start_epoch < 1:
            raise ValueError(f"start_epoch must be an integer >= 1 (ignite epochs are 1-based), got {start_epoch}")
        self.loss = loss
        self.start_epoch = int(start_epoch)
        self.rule = rule
        self.beta = float(beta)
        self.weights = drw_class_weights(class_counts, rule=rule, beta=beta)

    def weights_for_epoch(self, epoch: int) -> torch.Tensor | None:
        """The class weights in force during the given 1-based epoch (``None`` = unweighted)."""
        return None if epoch < self.start_epoch else self.weights.clone()

    def attach(self, engine: Engine) -> None:
        """Register on ``Events.EPOCH_STARTED`` of the trainer (as MONAI workflows call for ``train_handlers``)."""
        if not engine.has_event_handler(self, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        self.loss.set_class_weights(self.weights_for_epoch(engine.state.epoch))

    def state_dict(self) -> dict[str, Any]:
        """Configuration only, for ``CheckpointSaver``; nothing needs restoring (the handler is stateless)."""
        return {"start_epoch": self.start_epoch, "rule": self.rule, "beta": self.beta}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Accept and ignore a saved configuration: the bundle config stays authoritative."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"expected a mapping, got {type(state_dict).__name__}")
