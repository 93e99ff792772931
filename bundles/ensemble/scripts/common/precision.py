"""Precision and backend switches: autocast that also works on CPU, channels-last 3D, TF32 and cudnn.benchmark.

MONAI's trainer ``amp=True`` autocasts on CUDA only (float16 with a GradScaler). CPUs with
AVX-512/AMX bfloat16 can autocast too, so the inferer does it, for any device, when asked.
"""

from __future__ import annotations

import torch
from monai.inferers import SimpleInferer


def autocast_dtype(name: str) -> torch.dtype | None:
    """``"bfloat16"`` / ``"float16"`` -> the dtype; ``"float32"`` / ``""`` / ``"none"`` -> None (no autocast)."""
    table = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None, "": None, "none": None}
    if name not in table:
        raise ValueError(f"autocast dtype '{name}' must be one of {sorted(table)}")
    return table[name]


def default_autocast(device: torch.device | str, amp: bool = True) -> str:
    """What ``amp`` means on ``device``: float16 on CUDA (MONAI adds the GradScaler), bfloat16 on a CPU that
    computes it natively (AVX-512 BF16 or AMX, as oneDNN reports), float32 otherwise or without ``amp``."""
    kind = torch.device(device).type
    if not amp:
        return "float32"
    if kind == "cuda":
        return "float16"
    if kind == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bfloat16"
    return "float32"


def to_channels_last(network: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Store the network's 5-D weights channels-last (``torch.channels_last_3d``), which oneDNN convolves faster."""
    return network.to(memory_format=torch.channels_last_3d) if enabled else network


class AutocastInferer(SimpleInferer):
    """``SimpleInferer`` that runs the network under ``torch.autocast(device_type, dtype)`` when dtype is set.

    Args:
        device: the device the network runs on (its type picks the autocast backend).
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"`` (off).
        channels_last: hand 5-D inputs over channels-last (pair it with :func:`to_channels_last`).
    """

    def __init__(self, device: torch.device | str = "cpu", dtype: str = "float32", channels_last: bool = False) -> None:
        super().__init__()
        self.device_type = torch.device(device).type
        self.dtype = autocast_dtype(dtype)
        self.channels_last = channels_last

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if self.channels_last and inputs.ndim == 5:
            inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
        if self.dtype is None:
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast(self.device_type, dtype=self.dtype):
            return super().__call__(inputs, network, *args, **kwargs)


def configure_backends(tf32: bool = True, cudnn_benchmark: bool = True, threads: int = 0) -> None:
    """TF32 matmuls/convolutions and cudnn autotuning on CUDA (no effect on CPU); optional CPU thread count."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if threads > 0:
        torch.set_num_threads(threads)
