"""Cross-entropy and focal loss that take MONAI's integer labels as they come: (B,) or (B, 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import FocalLoss


def _weight(weight: Sequence[float] | None) -> torch.Tensor | None:
    return None if weight is None else torch.as_tensor(weight, dtype=torch.float32)


class LabelCrossEntropy(torch.nn.CrossEntropyLoss):
    """``CrossEntropyLoss`` on (B, C) logits and integer labels shaped (B,) or (B, 1); optional class weights."""

    def __init__(self, weight: Sequence[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(weight=_weight(weight), label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float(), target.reshape(-1).long())


class LabelFocalLoss(FocalLoss):
    """MONAI ``FocalLoss`` with softmax over (B, C) logits and integer labels shaped (B,) or (B, 1)."""

    def __init__(self, gamma: float = 2.0, weight: Sequence[float] | None = None) -> None:
        super().__init__(to_onehot_y=True, use_softmax=True, gamma=gamma, weight=_weight(weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float(), target.reshape(-1, 1).long())
