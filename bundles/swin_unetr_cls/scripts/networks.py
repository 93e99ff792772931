"""Swin UNETR encoder classifier for HGG vs LGG grading.

Only the Swin transformer encoder of :class:`monai.networks.nets.SwinUNETR` is built (no UNETR decoder, so
no memory or parameters are spent on it). It is stored under the attribute ``swinViT`` so its state-dict keys
(``swinViT.patch_embed...``, ``swinViT.layers1.0...``) are the same as in a full SwinUNETR and in MONAI's
published self-supervised weights, which :mod:`.ssl_weights` can load.

Parameter names: every encoder parameter starts with ``swinViT.``; the classifier part is ``pools.*``
(only with attention pooling) and ``head.*``. The bundle's ``train.json`` builds two optimiser groups from
these names with MONAI's ``generate_param_groups`` (its ``param_groups`` entry): the encoder at
``encoder_learning_rate``, everything else at ``learning_rate``.

TorchScript *scripting* fails on the Swin encoder (torch.utils.checkpoint, einops, dynamic Python code);
export with ``torch.jit.trace`` at a fixed input shape instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.swin_unetr import MERGING_MODE, SwinTransformer
from monai.utils import ensure_tuple_rep
from torch import nn

from .heads import HEAD_TYPES, POOLING_TYPES, AttentionPool3d, GlobalAvgPool3d, GlobalMaxPool3d, build_head, build_pool
from .ssl_weights import ENCODER_PREFIX, load_ssl_weights

__all__ = [
    "ENCODER_PREFIX",
    "AttentionPool3d",
    "GlobalAvgPool3d",
    "GlobalMaxPool3d",
    "SwinEncoderClassifier",
    "build_head",
    "build_pool",
]

#: Swin stages after the patch embedding. The encoder's hidden states are 0..NUM_STAGES: 0 is the patch
#: embedding (feature_size channels, 1/patch_size resolution), state i > 0 has ``feature_size * 2**i`` channels
#: at half the resolution of state i - 1. SwinUNETR's classifier default pools only the deepest; ``(2, 3, 4)``
#: fuses the last three.
NUM_STAGES = 4


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")


def _check_stages(stages: Sequence[int]) -> tuple[int, ...]:
    chosen = tuple(int(s) for s in stages)
    if not chosen or len(set(chosen)) != len(chosen) or any(not 0 <= s <= NUM_STAGES for s in chosen):
        raise ValueError(f"pooled_stages must be distinct stages in 0..{NUM_STAGES}, got {list(stages)}.")
    return tuple(sorted(chosen))


class SwinEncoderClassifier(nn.Module):
    """Swin UNETR encoder (``swinViT``) + global pooling + classification head; returns logits (B, num_classes).

    Input: (B, in_channels, D, H, W) with every spatial size divisible by ``patch_size * 2**max(pooled_stages)``
    (32 for the defaults), because each encoder stage after the patch embedding halves the resolution.

    Args:
        in_channels: number of MRI modalities (4: T1, T1ce, T2, FLAIR).
        num_classes: number of output logits (2: LGG, HGG).
        feature_size: embedding width of the first stage; must be divisible by 12 (as in SwinUNETR). The deepest
            hidden state has ``16 * feature_size`` channels (768 for 48).
        patch_size: patch-embedding size.
        window_size: local attention window size (int or 3 ints).
        depths: number of Swin blocks in each of the four stages.
        num_heads: attention heads in each of the four stages.
        mlp_ratio: hidden width ratio of the transformer MLPs.
        qkv_bias: learnable bias for query, key and value.
        drop_rate: dropout inside the encoder (0.1 is the usual regularised setting).
        attn_drop_rate: attention dropout inside the encoder.
        dropout_path_rate: maximum stochastic-depth rate, linearly increasing over the blocks.
        normalize: layer-normalise every hidden state returned by the encoder (SwinUNETR default).
        use_checkpoint: gradient checkpointing in every Swin block: recompute activations in the backward pass
            to trade time for memory (measured in docs/README.md, Memory).
        use_v2: SwinUNETR-v2 encoder (adds a residual conv block before each stage).
        downsample: patch-merging variant, ``"merging"`` (SwinUNETR default) or ``"mergingv2"``.
        pooling: ``"avg"``, ``"max"`` (keeps a small bright finding) or ``"attention"`` (learned 1x1x1-conv
            attention over voxels).
        head: ``"linear"`` (Dropout + Linear) or ``"mlp"`` (Linear(head_hidden) + ReLU + Dropout + Linear).
        head_dropout: dropout probability in the head.
        head_hidden: hidden width of the ``"mlp"`` head.
        pooled_stages: hidden states (0..4) pooled and concatenated before the head. The encoder runs only up
            to the deepest one: with ``(0, 1)`` stages 2-4 are neither built nor computed, so no parameter goes
            without a gradient (DistributedDataParallel needs that) and the state dict holds only the layers used.
        use_flash_attention: compute window attention with PyTorch's fused ``scaled_dot_product_attention``
            when autograd is off (inference under ``torch.no_grad()``); same result. Training is unaffected.
        pretrained_path: optional path of Swin UNETR self-supervised weights; when non-empty the encoder is
            initialised from it with :func:`.ssl_weights.load_ssl_weights` (the report is kept in
            ``self.pretrained_report``). Nothing is downloaded.
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 2,
        feature_size: int = 48,
        patch_size: int = 2,
        window_size: int | Sequence[int] = 7,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        dropout_path_rate: float = 0.0,
        normalize: bool = True,
        use_checkpoint: bool = False,
        use_v2: bool = False,
        downsample: str = "merging",
        pooling: str = "avg",
        head: str = "linear",
        head_dropout: float = 0.4,
        head_hidden: int = 256,
        pooled_stages: Sequence[int] = (NUM_STAGES,),
        use_flash_attention: bool = False,
        pretrained_path: str | None = "",
    ) -> None:
        super().__init__()
        if feature_size <= 0 or feature_size % 12 != 0:
            raise ValueError(
                f"feature_size must be a positive multiple of 12 (e.g. 24, 48, 96) as in SwinUNETR, got {feature_size}."
            )
        if len(depths) != NUM_STAGES or len(num_heads) != NUM_STAGES:
            raise ValueError(f"depths and num_heads need {NUM_STAGES} entries, got {list(depths)}, {list(num_heads)}.")
        if pooling not in POOLING_TYPES:
            raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {pooling!r}.")
        if head not in HEAD_TYPES:
            raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}.")
        if downsample not in MERGING_MODE:
            raise ValueError(f"downsample must be one of {tuple(MERGING_MODE)}, got {downsample!r}.")
        for name, rate in (
            ("drop_rate", drop_rate),
            ("attn_drop_rate", attn_drop_rate),
            ("dropout_path_rate", dropout_path_rate),
        ):
            _check_rate(name, rate)

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feature_size = feature_size
        self.patch_size = patch_size
        self.normalize = normalize
        self.pooled_stages = _check_stages(pooled_stages)
        self.encoded_stages = max(self.pooled_stages)
        self.size_divisor = patch_size * 2**self.encoded_stages

        # Same arguments as SwinUNETR.__init__ passes to its encoder, so weights are interchangeable.
        self.swinViT = SwinTransformer(
            in_chans=in_channels,
            embed_dim=feature_size,
            window_size=ensure_tuple_rep(window_size, 3),
            patch_size=ensure_tuple_rep(patch_size, 3),
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=dropout_path_rate,
            norm_layer=nn.LayerNorm,
            patch_norm=False,
            use_checkpoint=use_checkpoint,
            spatial_dims=3,
            downsample=MERGING_MODE[downsample],
            use_v2=use_v2,
            use_flash_attention=use_flash_attention,
        )

        for stage in range(self.encoded_stages + 1, NUM_STAGES + 1):  # never run: not built
            setattr(self.swinViT, f"layers{stage}", nn.ModuleList())
            if use_v2:
                setattr(self.swinViT, f"layers{stage}c", nn.ModuleList())
        stage_channels = [self.stage_channels(i) for i in self.pooled_stages]
        self.pools = nn.ModuleList([build_pool(pooling, c) for c in stage_channels])
        self.num_features = sum(stage_channels)
        self.head = build_head(head, self.num_features, num_classes, head_dropout, head_hidden)

        self.pretrained_report: dict | None = None
        if pretrained_path:
            self.pretrained_report = load_ssl_weights(self, pretrained_path)

    def stage_channels(self, index: int) -> int:
        """Channels of encoder hidden state ``index`` (0..4): ``feature_size * 2**index``."""
        return self.feature_size << index

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError that says what is wrong when ``x`` cannot go through the encoder."""
        if x.ndim != 5:
            raise ValueError(f"expected input of shape (B, C, D, H, W), got {tuple(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]} ({tuple(x.shape)}).")
        spatial = tuple(int(s) for s in x.shape[2:])
        if any(s % self.size_divisor for s in spatial):
            raise ValueError(
                f"every spatial size must be divisible by {self.size_divisor} (patch_size {self.patch_size} x "
                f"2**{self.encoded_stages} patch merges), got spatial shape {spatial}; crop or pad the input, e.g. to "
                "128x128x128."
            )

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's hidden states 0..max(pooled_stages), stage i with ``feature_size * 2**i`` channels.

        The same steps as ``SwinTransformer.forward``, stopped after the deepest pooled stage.
        """
        encoder = self.swinViT
        x = encoder.pos_drop(encoder.patch_embed(x))
        hidden = [encoder.proj_out(x, self.normalize)]
        for stage in range(1, self.encoded_stages + 1):
            if encoder.use_v2:
                x = getattr(encoder, f"layers{stage}c")[0](x.contiguous())
            x = getattr(encoder, f"layers{stage}")[0](x.contiguous())
            hidden.append(encoder.proj_out(x, self.normalize))
        return hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.jit.is_scripting():
            self.check_input(x)
        hidden = self.encode(x)
        pooled = [pool(hidden[stage]) for stage, pool in zip(self.pooled_stages, self.pools, strict=True)]
        features = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
        return self.head(features)
