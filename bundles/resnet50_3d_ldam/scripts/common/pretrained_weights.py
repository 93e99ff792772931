"""Read pretrained weights from a local file and adapt a first layer to another number of input channels.

Every bundle that starts from published weights (MedicalNet for the ResNet50, the Swin UNETR self-supervised
weights) reads its checkpoint with :func:`read_state_dict`, so all of them accept the same file layouts,
refuse the same unsafe files and fail with the same exception types. A pretrained first layer (a convolution
or patch embedding) that saw a different number of input channels than the model takes is adapted by one
rule, :func:`adapt_input_channels`. The loaders keep only what is specific to their weights: key names.

Nothing is ever downloaded: the file must already be on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch

from .checkpoints import load_weights

__all__ = ["adapt_input_channels", "differs_only_in_input_channels", "read_state_dict"]

_WRAPPER_PREFIX = "module."  # added by torch.nn.DataParallel / DistributedDataParallel when saving


def read_state_dict(path: str | os.PathLike, description: str = "pretrained weights") -> dict[str, torch.Tensor]:
    """Read a state dict from a local checkpoint without running any pickled code.

    Accepts ``{"state_dict": {name: tensor}}`` (other entries next to ``state_dict`` are ignored) or a plain
    ``{name: tensor}`` mapping, and strips the ``module.`` prefixes that ``DataParallel`` adds (repeatedly,
    for a model wrapped twice), so the loaders only map names. The file is read with ``weights_only=True``:
    published checkpoints come from strangers, and unpickling arbitrary objects could run their code.

    Args:
        path: local checkpoint file; never downloaded.
        description: what the file is, e.g. ``"MedicalNet checkpoint"``; starts every error message.

    Returns:
        A new ``{name: tensor}`` dictionary (CPU tensors) in the file's order.

    Raises:
        FileNotFoundError: ``path`` is not an existing file (the message names it and says how to go without).
        ValueError: the file (named in the message) cannot be read as a checkpoint, would need pickled code,
            is not a state dict, or holds two keys that are the same after stripping ``module.``.
    """
    shown = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{description} not found at '{shown}'. Nothing is downloaded: put the file there, or set "
            "pretrained_path to '' to train from scratch."
        )
    raw = load_weights(path, description)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        raw = raw["state_dict"]
    problem = _state_dict_problem(raw)
    if problem:
        raise ValueError(
            f"{description} '{shown}' is not a state dict: expected {{'state_dict': {{name: tensor}}}} or "
            f"{{name: tensor}}, found {problem}."
        )

    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in raw.items():
        name = key
        while name.startswith(_WRAPPER_PREFIX):
            name = name.removeprefix(_WRAPPER_PREFIX)
        if name in state:
            raise ValueError(
                f"{description} '{shown}' holds both '{origin[name]}' and '{key}', the same parameter "
                f"'{name}' once the '{_WRAPPER_PREFIX}' prefixes are removed."
            )
        state[name] = value
        origin[name] = key
    return state


def _state_dict_problem(raw: object) -> str:
    """What makes ``raw`` not a ``{str: tensor}`` mapping, for the error message; ``""`` if it is one."""
    if not isinstance(raw, Mapping):
        return f"a {type(raw).__name__}"
    if not raw:
        return "an empty mapping (no tensors)"
    bad = [f"{key!r}: {type(value).__name__}" for key, value in raw.items() if not _is_entry(key, value)]
    if bad:
        return "entries that are not name: tensor, e.g. " + ", ".join(bad[:5])
    return ""


def _is_entry(key: object, value: object) -> bool:
    """A state-dict entry maps a parameter name to a tensor; anything else cannot be loaded into a model."""
    return isinstance(key, str) and isinstance(value, torch.Tensor)


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first conv / patch-embedding kernel ``(out, c, *k)`` to ``(out, in_channels, *k)``.

    Rule: sum the kernel over its ``c`` input channels and give each of the ``in_channels`` channels that sum
    divided by ``in_channels``. Why: when every input channel shows the same image ``x``, the adapted layer
    computes ``in_channels * (sum_c W_c / in_channels) x = sum_c W_c x``, exactly what the pretrained layer
    computed for ``x`` on all of its ``c`` channels, so the BatchNorm / LayerNorm statistics after it still
    fit the activations (co-registered, z-normalised MRI modalities are close to that case; fine-tuning learns
    how they differ). For a 1-channel source this is the kernel repeated ``in_channels`` times and scaled by
    ``1 / in_channels``. (The mean over ``c`` instead of the sum would shrink the activations by
    ``c / in_channels`` for a source with ``c > 1`` channels.)

    Args:
        weight: pretrained kernel, shape ``(out_channels, c, *kernel)`` with at least one kernel dimension.
        in_channels: number of input channels of the target model.

    Returns:
        A new contiguous tensor of shape ``(out_channels, in_channels, *kernel)``, same dtype as ``weight``.
    """
    if weight.ndim < 3:
        raise ValueError(f"expected a kernel (out, c, *kernel), got shape {tuple(weight.shape)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_channels).repeat(1, in_channels, *([1] * (weight.ndim - 2))).contiguous()


def differs_only_in_input_channels(source_shape: Sequence[int], target_shape: Sequence[int]) -> bool:
    """True if two kernel shapes ``(out, c, *k)`` differ only in ``c``, the one thing that can be adapted.

    :func:`adapt_input_channels` fixes that difference; any other (output channels, kernel size) means the
    checkpoint holds other weights, which must be an error, not a silent adaptation.
    """
    source, target = tuple(source_shape), tuple(target_shape)
    return (
        len(source) == len(target) >= 3
        and source[0] == target[0]
        and source[2:] == target[2:]
        and source[1] != target[1]
    )
