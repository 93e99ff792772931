"""Global pooling and classification heads of the Swin encoder classifier.

Pooling turns the encoder's channel-first feature map into one vector per case; the head maps it to
logits. Kept apart from the network so each can be chosen by name in the bundle config.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "HEAD_TYPES",
    "POOLING_TYPES",
    "AttentionPool3d",
    "GlobalAvgPool3d",
    "GlobalMaxPool3d",
    "build_head",
    "build_pool",
]

POOLING_TYPES = ("avg", "max", "attention")
HEAD_TYPES = ("linear", "mlp")


class GlobalAvgPool3d(nn.Module):
    """Mean over all voxels: (B, C, D, H, W) -> (B, C). Parameter-free, so it adds nothing to the head group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


class GlobalMaxPool3d(nn.Module):
    """Maximum over all voxels: (B, C, D, H, W) -> (B, C).

    A small, bright finding (an enhancing rim) decides the grade; averaging dilutes it over the whole brain,
    the maximum keeps it whatever its size. Parameter-free.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3, 4))


class AttentionPool3d(nn.Module):
    """Learned attention pooling: (B, C, D, H, W) -> (B, C).

    A 1x1x1 convolution scores every voxel, a softmax over all voxels turns the scores into weights and the
    output is the weighted sum of the voxel features. Unlike averaging, the network can concentrate on the
    tumour region, which is usually a small part of the volume.

    Args:
        channels: number of input feature channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv3d(channels, 1, kernel_size=1)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel weights (B, 1, D*H*W) summing to one over the voxels; useful for inspection."""
        return torch.softmax(self.score(x).flatten(2), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.attention_weights(x)  # (B, 1, N)
        return torch.bmm(x.flatten(2), weights.transpose(1, 2)).squeeze(-1)  # (B, C, N) @ (B, N, 1)


def build_pool(kind: str, channels: int) -> nn.Module:
    """Create a global pooling module.

    Args:
        kind: ``"avg"`` (mean over voxels), ``"max"`` (maximum over voxels) or ``"attention"``
            (:class:`AttentionPool3d`).
        channels: number of feature channels entering the pooling.
    """
    if kind == "avg":
        return GlobalAvgPool3d()
    if kind == "max":
        return GlobalMaxPool3d()
    if kind == "attention":
        return AttentionPool3d(channels)
    raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {kind!r}.")


def build_head(kind: str, in_features: int, num_classes: int, dropout: float, hidden: int = 256) -> nn.Sequential:
    """Create the classification head that maps pooled features to logits.

    Args:
        kind: ``"linear"`` (Dropout + Linear) or ``"mlp"`` (Linear(hidden) + ReLU + Dropout + Linear).
        in_features: size of the pooled feature vector.
        num_classes: number of output logits.
        dropout: dropout probability inside the head.
        hidden: width of the hidden layer of the ``"mlp"`` head.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"head_dropout must be in [0, 1), got {dropout}.")
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )
    raise ValueError(f"head must be one of {HEAD_TYPES}, got {kind!r}.")
