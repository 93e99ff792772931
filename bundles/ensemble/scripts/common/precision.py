"""Precision and backend switches: autocast that also works on CPU, TF32 and cudnn.benchmark.

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


class AutocastInferer(SimpleInferer):
    """``SimpleInferer`` that runs the network under ``torch.autocast(device_type, dtype)`` when dtype is set.

    Args:
        device: the device the network runs on (its type picks the autocast backend).
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"`` (off).
    """

    def __init__(self, device: torch.device | str = "cpu", dtype: str = "float32") -> None:
        super().__init__()
        self.device_type = torch.device(device).type
        self.dtype = autocast_dtype(dtype)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
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
