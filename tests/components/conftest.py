"""Fixtures of the component tests: a tiny MONAI trainer to attach training handlers to."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer


@pytest.fixture
def linear_trainer():
    """Factory of a CPU ``SupervisedTrainer`` fitting a linear model with SGD.

    The data are ``batches`` batches of two random 3-feature cases (one per class) drawn from
    ``data_seed``, so two trainers built with the same arguments see the same data.
    """

    def build(
        model: torch.nn.Module,
        lr: float = 0.1,
        epochs: int = 1,
        batches: int = 4,
        accumulation_steps: int = 1,
        handlers=(),
        data_seed: int = 0,
    ) -> SupervisedTrainer:
        generator = torch.Generator().manual_seed(data_seed)
        data = [
            {"image": torch.randn(2, 3, generator=generator), "label": torch.tensor([0, 1])} for _ in range(batches)
        ]
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

    return build
