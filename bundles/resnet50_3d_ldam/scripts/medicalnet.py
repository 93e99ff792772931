"""Load MedicalNet (Med3D, Chen et al. 2019) pretrained backbone weights from a local file.

Nothing is downloaded, ever: the checkpoint must already be on disk (e.g. MedicalNet's ``resnet_50.pth`` or
``resnet_50_23dataset.pth``, placed there by the user).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["adapt_first_conv", "load_medicalnet_weights", "read_state_dict"]

_PREFIX = "module."  # MedicalNet saved nn.DataParallel models


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from MedicalNet's release format or a plain state dict, without key prefixes.

    MedicalNet's files hold ``{"state_dict": {"module.conv1.weight": ..., ...}}``; a plain
    ``{"conv1.weight": ...}`` is accepted too. Loaded with ``weights_only=True`` (no pickled code runs).

    Args:
        path: local checkpoint file.

    Raises:
        FileNotFoundError: the file does not exist (nothing is downloaded).
        TypeError: the file does not contain a mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"MedicalNet checkpoint not found: {path}. Nothing is downloaded; place the file there "
            "or leave the pretrained path empty to train from scratch."
        )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise TypeError(f"{path} does not contain a state dict (a mapping of parameter names to tensors)")
    return {(k[len(_PREFIX) :] if k.startswith(_PREFIX) else k): v for k, v in raw.items()}


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-conv kernel (out, c, *k) pretrained on ``c`` channels to ``in_channels`` channels.

    The kernel is averaged over its input channels, repeated ``in_channels`` times and scaled by
    ``1 / in_channels``: when all input channels carry similar signal (co-registered, z-normalised MRI
    modalities), the first-layer activations then keep the magnitude the pretrained network expects, so the
    pretrained BatchNorm statistics remain roughly valid.

    Args:
        weight: pretrained kernel, shape ``(out_channels, c, *kernel)``.
        in_channels: number of input channels of the target model.
    """
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, *([1] * (weight.dim() - 2))) / in_channels


def load_medicalnet_weights(
    model: nn.Module,
    path: str | Path,
    strict_backbone: bool = True,
    logger: logging.Logger | None = None,
    head_prefixes: Sequence[str] = ("fc.",),
    first_conv_key: str = "conv1.weight",
) -> dict[str, Any]:
    """Load a MedicalNet checkpoint into the backbone of ``model``; the head keeps its initialisation.

    Keys are matched by name after stripping MedicalNet's ``module.`` prefix. Head keys (``fc.*``) missing
    from the checkpoint are expected; checkpoint keys the model lacks (e.g. MedicalNet's segmentation head
    ``conv_seg.*``) are reported as unexpected and ignored. ``*.num_batches_tracked`` buffers missing from
    old checkpoints are tolerated (reported as missing). If the checkpoint's first conv has a different
    number of input channels than the model's (MedicalNet: 1), it is adapted by :func:`adapt_first_conv`
    (mean over input channels, repeated and scaled by ``1 / in_channels``).

    Args:
        model: the network, e.g. ``MedicalNetResNet50``.
        path: local checkpoint file; never downloaded.
        strict_backbone: raise if a backbone key (not head, not ``num_batches_tracked``) is missing.
        logger: where to log the summary; defaults to this module's logger.
        head_prefixes: key prefixes of the new head, expected to be missing.
        first_conv_key: name of the first conv weight, the only key whose input channels may differ.

    Returns:
        ``{"loaded": N, "total": M, "missing": [...], "unexpected": [...], "adapted": [...]}`` where
        ``total`` counts all keys of ``model.state_dict()`` (head included).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a shared key other than an adaptable first conv has a different shape (names the key
            and both shapes), or a backbone key is missing while ``strict_backbone``.
    """
    log = logger or logging.getLogger(__name__)
    source = read_state_dict(path)
    target = model.state_dict()

    to_load: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    for key, tensor in source.items():
        if key not in target:
            continue
        expected = target[key].shape
        if tensor.shape != expected:
            if key == first_conv_key and _differs_only_in_input_channels(tensor.shape, expected):
                tensor = adapt_first_conv(tensor, expected[1])
                adapted.append(key)
            else:
                raise ValueError(
                    f"shape mismatch for {key!r}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected)} "
                    f"(from {path})"
                )
        to_load[key] = tensor

    missing = [k for k in target if k not in to_load]
    unexpected = [k for k in source if k not in target]
    missing_backbone = [
        k for k in missing if not k.startswith(tuple(head_prefixes)) and not k.endswith("num_batches_tracked")
    ]
    if strict_backbone and missing_backbone:
        raise ValueError(
            f"{len(missing_backbone)} backbone keys missing from {path}: {missing_backbone[:10]}"
            f"{' ...' if len(missing_backbone) > 10 else ''} (wrong architecture or layout?)"
        )
    model.load_state_dict(to_load, strict=False)

    report = {
        "loaded": len(to_load),
        "total": len(target),
        "missing": missing,
        "unexpected": unexpected,
        "adapted": adapted,
    }
    log.info(
        "MedicalNet weights from %s: loaded %d/%d keys; missing %s; unexpected %s; adapted %s",
        path,
        report["loaded"],
        report["total"],
        missing,
        unexpected,
        adapted,
    )
    if missing_backbone:
        log.warning("backbone keys left at their initialisation: %s", missing_backbone)
    return report


def _differs_only_in_input_channels(source: torch.Size, target: torch.Size) -> bool:
    """True for conv kernels ``(out, c, *k)`` that agree everywhere except ``c``."""
    return len(source) == len(target) >= 3 and source[0] == target[0] and source[2:] == target[2:]
