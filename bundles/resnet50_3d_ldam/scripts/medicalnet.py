"""Load MedicalNet (Med3D, Chen et al. 2019) pretrained backbone weights from a local file.

Nothing is downloaded, ever: the checkpoint must already be on disk (e.g. MedicalNet's ``resnet_50.pth`` or
``resnet_50_23dataset.pth``, placed there by the user). Reading the file and adapting the 1-channel ``conv1``
are shared with the other bundles (:mod:`.common.pretrained_weights`); this module only knows MedicalNet's
key names (the new head ``fc.*``, the ignored segmentation head) and reports what was loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .common.pretrained_weights import adapt_input_channels, differs_only_in_input_channels, read_state_dict

__all__ = ["load_medicalnet_weights"]


def load_medicalnet_weights(
    model: nn.Module,
    path: str | Path,
    strict_backbone: bool = True,
    logger: logging.Logger | None = None,
    head_prefixes: Sequence[str] = ("fc.",),
    first_conv_key: str = "conv1.weight",
) -> dict[str, Any]:
    """Load a MedicalNet checkpoint into the backbone of ``model``; the head keeps its initialisation.

    The file is read by :func:`.common.pretrained_weights.read_state_dict`, which strips the ``module.``
    prefix MedicalNet's ``nn.DataParallel`` models were saved with; keys are then matched by name. Head keys
    (``fc.*``) missing from the checkpoint are expected; checkpoint keys the model lacks (e.g. MedicalNet's
    segmentation head ``conv_seg.*``) are reported as unexpected and ignored. ``*.num_batches_tracked``
    buffers missing from old checkpoints are tolerated (reported as missing). If the checkpoint's first conv
    has a different number of input channels than the model's (MedicalNet: 1), it is adapted by
    :func:`.common.pretrained_weights.adapt_input_channels` (kernel summed over its input channels, that sum
    divided by ``in_channels`` on every channel; for MedicalNet's 1 channel: repeated and scaled by
    ``1 / in_channels``).

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
        FileNotFoundError: ``path`` does not exist (the message says nothing is downloaded).
        ValueError: the file is unreadable, needs pickled code or is not a state dict (names the file); a
            shared key other than an adaptable first conv has a different shape (names the key and both
            shapes); or a backbone key is missing while ``strict_backbone``.
    """
    log = logger or logging.getLogger(__name__)
    source = read_state_dict(path, "MedicalNet checkpoint")
    target = model.state_dict()

    to_load: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    for key, tensor in source.items():
        if key not in target:
            continue
        expected = target[key].shape
        if tensor.shape != expected:
            if key == first_conv_key and differs_only_in_input_channels(tensor.shape, expected):
                tensor = adapt_input_channels(tensor, expected[1])
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
