"""3D ResNet50 classifier with MedicalNet's backbone layout, built on ``monai.networks.nets.ResNet``.

The backbone's parameter names are exactly MedicalNet's (``conv1.weight``, ``layer1.0.downsample.0.weight``,
...), so MedicalNet's pretrained weights load key-for-key; only the head (``fc.*``) is new.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBottleneck
from torch import nn

from .medicalnet import load_medicalnet_weights

__all__ = ["LAYOUTS", "MedicalNetResNet50", "NormedLinear"]

#: Allowed values of ``MedicalNetResNet50(layout=...)``.
LAYOUTS = ("medicalnet", "strided")

# MedicalNet's resnet.py keeps layer3/layer4 at layer2's resolution and dilates their 3x3x3 convs instead.
_MEDICALNET_DILATION = {"layer3": 2, "layer4": 4}
_FEATURES = 2048  # 512 planes x bottleneck expansion 4


def _unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows scaled to unit L2 norm, in float32, with a gradient that stays finite at a zero row.

    ``F.normalize`` back-propagates 0/0 = NaN through the norm of an all-zero row (a ReLU feature
    vector can be all zero, more often under bfloat16); eps inside the square root avoids that.
    """
    x = x.float()
    return x * torch.rsqrt((x * x).sum(dim=1, keepdim=True) + eps)


class NormedLinear(nn.Module):
    """Scaled cosine-similarity last layer, as in the LDAM paper (Cao et al., NeurIPS 2019).

    Returns ``scale * cos(x, w_j)`` for every class j: the input feature vector and each class's weight
    vector are L2-normalised, the cosine lies in [-1, 1] and ``scale`` (LDAM's ``s``) makes it a logit. The
    output is thus a logit whose softmax is the class probability, whatever loss is trained on it; the scale
    lives here only, so losses and post-processing need not know it (:class:`~.losses.LDAMLoss` takes
    these logits, with its ``s`` equal to this ``scale``).

    Dropout is applied to the *normalised* feature vector, before the dot product with the unit class
    vectors. Dropping before normalising (``Sequential(Dropout, NormedLinear)``) lets the normalisation undo
    dropout's 1/(1-p) compensation: a dropped vector's norm is ~1/sqrt(1-p) times too large, so training
    cosines shrink to ~sqrt(1-p) of the evaluation ones (0.77 at p=0.4) and the effective scale and margins
    at evaluation are ~1.29x those trained with. After normalisation the dot product is linear in the
    dropped vector and dropout is unbiased, so the expected training cosine equals the evaluation cosine.

    Computed in float32 with autocast disabled (inputs cast up): in bfloat16 the cosines would carry
    ~2e-3 error, ~0.06 after a scale of 30. Under TorchScript, which rejects a non-constant device for
    ``torch.autocast``, the guard is skipped; scripted exports are run in float32.

    Args:
        in_features: size of the input feature vector.
        out_features: number of classes.
        dropout: dropout probability on the normalised feature vector, in [0, 1).
        scale: logit scale ``s`` > 0 multiplying the cosines; 1 returns bare cosines. It is a buffer of the
            state dict (``<name>.scale``), so a checkpoint carries the scale it was trained with and a model
            loaded from it computes the same logits whatever scale it was built with.
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not (math.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        self.in_features = in_features
        self.out_features = out_features
        self.dropout = float(dropout)
        self.register_buffer("scale", torch.tensor(float(scale)))
        # (out, in) like nn.Linear, so a row is one class vector; the paper stores the transpose.
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.xavier_normal_(self.weight)

    def _scaled_cosines(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(_unit_rows(x), p=self.dropout, training=self.training)
        return self.scale * F.linear(x, _unit_rows(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._scaled_cosines(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._scaled_cosines(x)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"dropout={self.dropout}, scale={float(self.scale)}"
        )


class MedicalNetResNet50(ResNet):
    """ResNet50 (bottleneck, [3, 4, 6, 3]) in MedicalNet's layout with a dropout + linear classification head.

    Backbone as MedicalNet: 7^3 stride-2 first conv, 3^3 stride-2 max-pool, shortcut type B, no bias in the
    downsample convs. Head, after global average pooling:

        - default: ``fc = Sequential(Dropout(dropout), Linear(2048, num_classes))``;
        - ``normed_head``: ``fc = Sequential(Identity(), NormedLinear(2048, num_classes, dropout, logit_scale))``,
          which drops out the *normalised* features (dropout before the normalisation would shrink training
          cosines by ~sqrt(1-p), see :class:`NormedLinear`). The ``Identity`` keeps the head's state-dict
          key ``fc.1.weight``.

    ``forward`` always returns logits whose softmax is the class probability, whatever the loss: with the
    normed head these are ``logit_scale * cosine`` (float32 even under autocast).

    Layouts:
        - ``"medicalnet"``: MedicalNet's exact architecture. layer3 and layer4 keep stride 1 and use dilation
          2 and 4 in their 3x3x3 convs, so the final map is 1/8 of the input (2048 x 16^3 at 128^3). Needed
          for the pretrained weights to see the receptive fields they were trained with; ~4x costlier.
        - ``"strided"``: MONAI's default strides (layer3, layer4 stride 2; final map 1/32 of the input,
          2048 x 4^3 at 128^3). Same parameter names and shapes, much cheaper.

    Init: Kaiming normal (fan_out, relu) for every Conv3d, BatchNorm weight 1 / bias 0, Xavier normal for the
    head's weight and a zero head bias.

    Pretrained weights: pass ``pretrained_path`` (a local MedicalNet ``.pth``; ``None`` or ``""`` means
    none) to load the backbone in ``__init__`` through
    :func:`~.medicalnet.load_medicalnet_weights`, so a bundle config needs only this one ``_target_``.
    A 1-channel checkpoint is adapted to ``in_channels``; nothing is ever downloaded.

    Args:
        in_channels: number of input channels (MRI modalities), e.g. 4 for T1, T1ce, T2, FLAIR.
        num_classes: number of output logits.
        dropout: dropout probability in the head: before the linear layer, or on the normalised features
            inside the normed head.
        layout: ``"medicalnet"`` or ``"strided"`` (see above).
        normed_head: use a scaled cosine :class:`NormedLinear` last layer (for LDAM) instead of ``nn.Linear``.
        logit_scale: scale ``s`` > 0 of the normed head's cosines (LDAM's ``s``; give the loss the same value).
            Ignored by the plain linear head, whose logits are unbounded already.
        pretrained_path: local MedicalNet checkpoint to load into the backbone, or ``None``/``""``.
        strict_backbone: passed to the loader; require every backbone key to be in the checkpoint.
    """

    def __init__(
        self,
        in_channels: int = 4,
        num_classes: int = 2,
        dropout: float = 0.4,
        layout: str = "medicalnet",
        normed_head: bool = False,
        logit_scale: float = 30.0,
        pretrained_path: str | None = None,
        strict_backbone: bool = True,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(repr(x) for x in LAYOUTS)}")
        if int(in_channels) < 1 or int(num_classes) < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        super().__init__(
            block="bottleneck",
            layers=[3, 4, 6, 3],
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=3,
            n_input_channels=int(in_channels),
            conv1_t_size=7,
            conv1_t_stride=2,  # MONAI's default is 1; MedicalNet uses 2
            no_max_pool=False,
            shortcut_type="B",
            num_classes=int(num_classes),
            bias_downsample=False,
        )
        self.layout = layout
        if layout == "medicalnet":
            for name, dilation in _MEDICALNET_DILATION.items():
                _dilate_layer(getattr(self, name), dilation)
        if normed_head:
            # Dropout acts inside NormedLinear, on the normalised features; Identity keeps the key fc.1.weight.
            self.fc = nn.Sequential(
                nn.Identity(),
                NormedLinear(_FEATURES, int(num_classes), dropout=float(dropout), scale=float(logit_scale)),
            )
        else:
            linear = nn.Linear(_FEATURES, int(num_classes))
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            self.fc = nn.Sequential(nn.Dropout(float(dropout)), linear)
        if pretrained_path:
            load_medicalnet_weights(self, pretrained_path, strict_backbone=strict_backbone)

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediate maps ``stem`` (after conv1/bn/relu), ``layer1`` ... ``layer4``; for inspection/CAMs."""
        x = self.act(self.bn1(self.conv1(x)))
        maps = {"stem": x}
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        maps["layer1"] = x
        x = self.layer2(x)
        maps["layer2"] = x
        x = self.layer3(x)
        maps["layer3"] = x
        x = self.layer4(x)
        maps["layer4"] = x
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.feature_maps(x)["layer4"]
        return self.fc(torch.flatten(self.avgpool(features), 1))


def _dilate_layer(layer: nn.Module, dilation: int) -> None:
    """Turn a strided MONAI bottleneck stage into MedicalNet's dilated one (stride 1, dilated 3x3x3 convs).

    MONAI's ``ResNetBottleneck`` has no dilation argument; its only strided convs are ``conv2`` (3x3x3,
    padding 1) and the first block's 1x1x1 ``downsample[0]``, so these are patched in place. Weight shapes are
    unchanged, hence MedicalNet's weights still fit.
    """
    if not isinstance(layer, nn.Sequential):
        raise TypeError(f"expected an nn.Sequential of bottleneck blocks, got {type(layer).__name__}")
    for block in layer:
        if not isinstance(block, ResNetBottleneck) or not isinstance(block.conv2, nn.Conv3d):
            raise TypeError(f"expected MONAI ResNetBottleneck blocks with Conv3d conv2, got {type(block).__name__}")
        if tuple(block.conv2.kernel_size) != (3, 3, 3):
            raise TypeError(f"expected a 3x3x3 conv2, got kernel {block.conv2.kernel_size}")
        block.conv2.stride = (1, 1, 1)
        block.conv2.dilation = (dilation,) * 3
        block.conv2.padding = (dilation,) * 3  # keeps the spatial size for a 3-wide dilated kernel
        block.stride = 1
        if block.downsample is not None:
            conv = block.downsample[0]
            if not isinstance(conv, nn.Conv3d) or math.prod(conv.kernel_size) != 1:
                raise TypeError("expected a shortcut-B downsample starting with a 1x1x1 Conv3d")
            conv.stride = (1, 1, 1)
