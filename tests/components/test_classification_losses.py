"""Cross-entropy / focal wrappers and class statistics shared by the bundles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brats_grading.components.classification_losses import LabelCrossEntropy, LabelFocalLoss
from brats_grading.components.data import DatasetError, balancing_weights, class_counts


def test_cross_entropy_takes_column_labels_and_class_weights():
    logits, labels = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([2.0, 1.0]))
    loss = LabelCrossEntropy(weight=[2.0, 1.0])
    assert torch.allclose(loss(logits, labels[:, None]), expected)
    assert torch.allclose(loss(logits, labels), expected)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1])
    focal = LabelFocalLoss(gamma=0.0)(logits, labels)
    # MONAI's focal loss averages over classes too: sum over one-hot / (B * C)
    assert torch.allclose(focal, F.cross_entropy(logits, labels) / 2, atol=1e-6)
    assert LabelFocalLoss(gamma=2.0)(logits, labels) < focal


def test_class_counts_and_balancing_weights():
    records = [{"label": 1}] * 28 + [{"label": 0}] * 10
    assert class_counts(records) == [10, 28]
    weights = balancing_weights(records)
    assert sum(w for w, r in zip(weights, records, strict=True) if r["label"] == 1) == pytest.approx(1.0)
    assert sum(w for w, r in zip(weights, records, strict=True) if r["label"] == 0) == pytest.approx(1.0)
    with pytest.raises(DatasetError, match="LGG"):
        class_counts([{"label": 1}])
