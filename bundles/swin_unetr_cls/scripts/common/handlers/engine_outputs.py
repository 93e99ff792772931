"""Reading an Ignite engine's output and batch per case: the glue every handler here shares.

MONAI engines decollate their output into a list of per-case dicts unless ``decollate=False``;
the case ids stay in ``engine.state.batch``.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine

__all__ = ["batch_ids", "case_items", "case_label_tensor", "hgg_log_odds", "hgg_probability_output"]


def case_items(output) -> list[dict]:
    """Engine output as a list of per-case dicts, whether or not MONAI decollated it."""
    if isinstance(output, dict):
        batch = output["pred"].shape[0]
        return [
            {k: (v[i] if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in output.items()} for i in range(batch)
        ]
    return list(output)


def batch_ids(engine: Engine) -> list[str]:
    """Case ids of the current batch: engine outputs hold only image / label / pred, the batch keeps ``id``."""
    batch = engine.state.batch
    if isinstance(batch, dict):
        ids = batch.get("id")
        return [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(batch["image"]))]
    return [str(item.get("id", i)) for i, item in enumerate(batch)]


def case_label_tensor(item: dict) -> torch.Tensor:
    """The label of one case (an int, a 0-d or a (1,) tensor) as a 0-d long tensor on its device: collecting it
    costs no host sync."""
    return torch.as_tensor(item["label"]).reshape(-1)[0].long()


def hgg_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """``logit[HGG] - logit[LGG]`` of (2,) or (B, 2) logits: P(HGG) = sigmoid of it."""
    logits = logits.float()
    return logits[..., 1] - logits[..., 0]


def hgg_probability_output(output) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``output_transform`` for MONAI's ROCAUC: P(HGG) and the label, per case."""
    items = case_items(output)
    probs = [torch.softmax(item["pred"].float(), dim=0)[1:] for item in items]
    labels = [torch.as_tensor(item["label"]).reshape(1).float() for item in items]
    return probs, labels
