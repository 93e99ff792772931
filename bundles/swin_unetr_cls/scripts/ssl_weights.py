"""Load MONAI's published Swin UNETR self-supervised (SSL) pre-training weights into the encoder.

The published checkpoint (``model_swinvit.pt`` of the Swin UNETR SSL work) is a ``torch.save``-d
``{"state_dict": {...}}`` that holds the Swin encoder only, saved from ``DataParallel`` and with the MLP names of
older MONAI releases, e.g.::

    module.patch_embed.proj.weight                  -> swinViT.patch_embed.proj.weight
    module.layers1.0.blocks.0.mlp.fc1.weight        -> swinViT.layers1.0.blocks.0.mlp.linear1.weight
    module.layers1.0.downsample.reduction.weight    -> swinViT.layers1.0.downsample.reduction.weight

Keys are mapped onto the model's ``swinViT.*`` entries (checkpoints that already use ``swinViT.`` keys, the
older ``swin_vit.`` name, or a plain state dict without the ``state_dict`` wrapper are accepted too). Anything
that does not map onto an encoder key (the SSL ``rotation_head``, ``contrastive_head``, ``conv`` decoder, a
SwinUNETR decoder, ...) is reported as unexpected and ignored.

Reading the file (``module.`` prefixes stripped, no pickled code run) and adapting the input channels are
shared with the other bundles (:mod:`.common.pretrained_weights`); this module only maps the SSL key names and
reports what was loaded. Input channels: the published weights were trained on 1-channel CT, the grading model
takes 4 MRI modalities. When only the input-channel dimension of ``swinViT.patch_embed.proj.weight`` differs,
the kernel is adapted by :func:`.common.pretrained_weights.adapt_input_channels` (summed over its input
channels, that sum divided by 4 on each of the 4 channels).

The published weights are an *initialisation*, not an exact reproduction of the pre-trained encoder: MONAI 1.5
changed the Swin patch-merging layer, so the tensors load with matching shapes but the current encoder does
not compute the same function as the one they were trained in; fine-tuning is expected.

Nothing is ever downloaded here; the file must already exist locally.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from .common.pretrained_weights import adapt_input_channels, differs_only_in_input_channels, read_state_dict

__all__ = ["ENCODER_PREFIX", "load_ssl_weights", "map_ssl_key"]

logger = logging.getLogger(__name__)

#: state-dict prefix of every encoder parameter (matches ``SwinUNETR.swinViT``); defined here, not in
#: ``networks``, because ``networks`` imports this module.
ENCODER_PREFIX = "swinViT."
PATCH_EMBED_WEIGHT = "patch_embed.proj.weight"
_OLD_ENCODER_PREFIX = "swin_vit."  # encoder name in early versions of the SSL pre-training code
_OLD_MLP_NAMES = ((".mlp.fc1.", ".mlp.linear1."), (".mlp.fc2.", ".mlp.linear2."))


def map_ssl_key(key: str, prefix: str = ENCODER_PREFIX) -> str:
    """Translate one checkpoint key to the model's naming (pure renaming, no check that the key exists).

    Args:
        key: checkpoint key as returned by :func:`.common.pretrained_weights.read_state_dict` (``module.``
            already stripped), e.g. ``layers1.0.blocks.0.mlp.fc1.weight``.
        prefix: attribute path of the encoder in the model, ``swinViT.``.
    """
    key = key.removeprefix(_OLD_ENCODER_PREFIX)
    if not key.startswith(prefix):
        key = prefix + key
    for old, new in _OLD_MLP_NAMES:
        key = key.replace(old, new)
    return key


def load_ssl_weights(
    model: nn.Module, path: str | os.PathLike, prefix: str = ENCODER_PREFIX, adapt_in_channels: bool = True
) -> dict:
    """Copy Swin UNETR SSL weights into ``model``'s encoder (in place) and report what was loaded.

    Encoder keys the checkpoint does not provide keep their current values (listed as missing). Nothing is
    copied if any shape does not match.

    Args:
        model: a module whose encoder parameters are named ``prefix + ...`` (SwinEncoderClassifier, SwinUNETR).
        path: local checkpoint file.
        prefix: encoder prefix in ``model.state_dict()``.
        adapt_in_channels: adapt a patch-embedding kernel trained with a different number of input channels
            (see :func:`.common.pretrained_weights.adapt_input_channels`); if False, that is a shape mismatch.

    Returns:
        ``{"loaded": int, "total": int, "missing": [model keys], "unexpected": [checkpoint keys],
        "adapted": [model keys]}`` where ``total`` counts the encoder's state-dict entries; checkpoint keys
        are named without their ``module.`` prefixes.

    Raises:
        FileNotFoundError: ``path`` does not exist (nothing is downloaded).
        ValueError: unreadable checkpoint, one that needs pickled code or is not a state dict, two
            checkpoint keys mapping to the same encoder key, or shape mismatches (every mismatching key is
            named with both shapes).
    """
    source = read_state_dict(path, "Swin UNETR SSL weights")
    state = model.state_dict()
    encoder_keys = [k for k in state if k.startswith(prefix)]
    if not encoder_keys:
        raise ValueError(f"{type(model).__name__} has no state-dict entries starting with '{prefix}'.")
    encoder_key_set = set(encoder_keys)

    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected: list[str] = []
    for key, value in source.items():
        target = map_ssl_key(key, prefix)
        if target not in encoder_key_set:
            unexpected.append(key)
            continue
        if target in mapped:
            raise ValueError(f"checkpoint keys '{origin[target]}' and '{key}' both map to '{target}'.")
        mapped[target] = value
        origin[target] = key

    adapted: list[str] = []
    mismatches: list[str] = []
    for target, value in mapped.items():
        expected = state[target].shape
        if value.shape == expected:
            continue
        is_patch_embedding = target == prefix + PATCH_EMBED_WEIGHT
        if adapt_in_channels and is_patch_embedding and differs_only_in_input_channels(value.shape, expected):
            mapped[target] = adapt_input_channels(value, expected[1])
            adapted.append(target)
            logger.info(
                "adapted %s from %d to %d input channels (summed kernel / %d per channel)",
                target,
                value.shape[1],
                expected[1],
                expected[1],
            )
            continue
        shapes = f"checkpoint {tuple(value.shape)} vs model {tuple(expected)}"
        mismatches.append(f"{origin[target]} -> {target}: {shapes}")
    if mismatches:
        raise ValueError(f"shape mismatch loading '{os.fspath(path)}':\n  " + "\n  ".join(mismatches))

    with torch.no_grad():
        for target, value in mapped.items():
            state[target].copy_(value.to(dtype=state[target].dtype))

    missing = [k for k in encoder_keys if k not in mapped]
    logger.info("loaded %d/%d encoder keys from %s", len(mapped), len(encoder_keys), os.fspath(path))
    if missing:
        logger.warning("encoder keys not in the checkpoint (left as initialised): %s", missing)
    if unexpected:
        logger.info("checkpoint keys ignored (not part of the encoder): %s", unexpected)
    return {
        "loaded": len(mapped),
        "total": len(encoder_keys),
        "missing": missing,
        "unexpected": unexpected,
        "adapted": adapted,
    }
