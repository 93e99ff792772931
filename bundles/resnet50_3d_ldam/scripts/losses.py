"""The LDAM loss (label-distribution-aware margins), after Cao et al., NeurIPS 2019.

LDAM gives rarer classes a larger margin, m_j proportional to n_j^(-1/4). Its deferred re-weighting (DRW),
which switches on class-balanced weights late in training, lives in :mod:`.reweighting`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .networks import NormedLinear

__all__ = ["LDAMLoss", "NormedLinear", "ldam_margins", "validated_counts"]


def validated_counts(class_counts: Sequence[int] | torch.Tensor) -> list[int]:
    counts = [int(c) for c in (class_counts.tolist() if isinstance(class_counts, torch.Tensor) else class_counts)]
    if len(counts) < 2:
        raise ValueError(f"class_counts needs at least 2 classes, got {counts}")
    bad = [j for j, c in enumerate(counts) if c <= 0]
    if bad:
        raise ValueError(f"class_counts must be positive; class(es) {bad} have counts {[counts[j] for j in bad]}")
    return counts


def ldam_margins(class_counts: Sequence[int], max_m: float = 0.5) -> torch.Tensor:
    """Per-class LDAM margins m_j = c * n_j^(-1/4), with c chosen so the rarest class gets ``max_m``.

    Args:
        class_counts: training samples per class.
        max_m: largest margin (>= 0); 0 turns LDAM into plain cross-entropy.

    Returns:
        float32 tensor of shape (num_classes,).
    """
    counts = validated_counts(class_counts)
    if not max_m >= 0:
        raise ValueError(f"max_m must be >= 0, got {max_m}")
    raw = [c**-0.25 for c in counts]
    return torch.tensor([max_m * r / max(raw) for r in raw], dtype=torch.float32)


def _target_indices(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (B,) from (B,) or (B, 1) labels, or from one-hot / probability targets (B, C) by argmax."""
    if target.dim() == 2 and target.shape[1] == num_classes and num_classes > 1:
        return target.argmax(dim=1)
    if target.dim() == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 1:
        raise ValueError(f"target must be (B,), (B, 1) or (B, {num_classes}); got shape {tuple(target.shape)}")
    if target.is_floating_point() and not torch.equal(target, target.round()):
        raise ValueError("floating-point class labels must be whole numbers")
    return target.long()


def _as_weight_tensor(weights: Sequence[float] | torch.Tensor, num_classes: int) -> torch.Tensor:
    tensor = torch.as_tensor(weights, dtype=torch.float32).detach().clone().flatten()
    if tensor.numel() != num_classes:
        raise ValueError(f"expected {num_classes} class weights, got {tensor.numel()}")
    if not bool(torch.isfinite(tensor).all()) or bool((tensor < 0).any()):
        raise ValueError(f"class weights must be finite and non-negative, got {tensor.tolist()}")
    return tensor


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin (LDAM) loss: ``cross_entropy(logits - s * m_y * onehot(y))``.

    Takes the logits of a scaled cosine head, ``logits = s * cos`` (``MedicalNetResNet50(normed_head=True,
    logit_scale=s)``, whose :class:`NormedLinear` carries the scale), and lowers the target logit by
    ``s * m_y``. That is exactly the paper's ``cross_entropy(s * (cos - m_y * onehot(y)))``, with the scale
    kept in one place, the head, so the softmax of the network's output is the class probability whatever
    the loss (cross-entropy or focal loss on the same head train on the same logits). ``s`` must therefore
    equal the head's ``logit_scale``; the bundle config passes one value to both. Only the true class's
    margin m_y is used; rarer classes get larger margins (see :func:`ldam_margins`). With ``max_m=0`` and no
    weight this is ``F.cross_entropy(logits, y)``. With an ordinary linear head the loss still runs, but the
    margin ``s * m_y`` is then in arbitrary logit units.

    Computed in float32 even under autocast (logits are cast up, autocast is disabled inside ``forward``).

    Targets: class indices (B,) or (B, 1) (integer, or floating with whole values, as MONAI loaders may
    give), or one-hot / probability targets (B, C), reduced to their argmax (no label smoothing).

    Args:
        class_counts: training samples per class (from the training fold only).
        max_m: margin of the rarest class (in cosine units), >= 0.
        s: the head's logit scale, > 0; margins are applied as ``s * m_y`` to the logits.
        weight: per-class cross-entropy weights, or ``None``; can be changed later with
            :meth:`set_class_weights` (used by :class:`.reweighting.DeferredReweightingHandler`).
        reduction: ``"mean"`` (weighted mean, as ``F.cross_entropy``), ``"sum"`` or ``"none"``.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        class_counts: Sequence[int],
        max_m: float = 0.5,
        s: float = 30.0,
        weight: Sequence[float] | torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not s > 0:
            raise ValueError(f"s must be > 0, got {s}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"unknown reduction {reduction!r}; allowed: 'mean', 'sum', 'none'")
        margins = ldam_margins(class_counts, max_m)
        self.num_classes = len(margins)
        self.max_m = float(max_m)
        self.s = float(s)
        self.reduction = reduction
        # Derived from the arguments, hence not persistent: the loss has an empty state dict.
        self.register_buffer("margins", margins, persistent=False)
        self.register_buffer("weight", None, persistent=False)
        self.set_class_weights(weight)

    def set_class_weights(self, weights: Sequence[float] | torch.Tensor | None) -> None:
        """Set (or with ``None`` clear) the per-class cross-entropy weights.

        Args:
            weights: ``num_classes`` non-negative finite values, or ``None`` for an unweighted loss.
        """
        device = self.margins.device
        self.weight = None if weights is None else _as_weight_tensor(weights, self.num_classes).to(device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args:
        logits: (B, C) logits, ``s * cos`` from a scaled cosine head.
        target: (B,), (B, 1) class indices or (B, C) one-hot.
        """
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (B, {self.num_classes}), got shape {tuple(logits.shape)}")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            labels = _target_indices(target, self.num_classes).to(logits.device)
            onehot = F.one_hot(labels, self.num_classes).to(logits.dtype)
            adjusted = logits - onehot * (self.s * self.margins.to(logits.device))
            weight = None if self.weight is None else self.weight.to(logits.device)
            return F.cross_entropy(adjusted, labels, weight=weight, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"margins={self.margins.tolist()}, s={self.s}, reduction={self.reduction!r}"
