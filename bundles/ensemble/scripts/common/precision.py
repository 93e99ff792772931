"""Precision and backend switches: autocast that also works on CPU, channels-last 3D, TF32 and cudnn.benchmark.

MONAI's trainer ``amp=True`` autocasts on CUDA only (float16 with a GradScaler). CPUs with
AVX-512/AMX bfloat16 can autocast too, so the inferer does it, for any device, when asked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


#: feature maps of at most this many voxels take the guarded path under a CPU autocast (see below)
TINY_MAP_VOXELS = 8


class _WindowWeightGradConv3d(torch.autograd.Function):
    """Stride-1, undilated ``conv3d`` whose weight gradient is one matmul over the shifted input windows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv3d(x, weight, None, 1, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        pad = list(ctx.padding)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            mask = [True, False, False]
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1] * 3, pad, [1] * 3, False, [0] * 3, 1, mask
            )[0]
        if ctx.needs_input_grad[1]:
            kd, kh, kw = weight.shape[2:]
            d, h, w = grad_out.shape[2:]
            padded = F.pad(x, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
            windows = [
                padded[:, :, i : i + d, j : j + h, k : k + w] for i in range(kd) for j in range(kh) for k in range(kw)
            ]
            columns = torch.stack(windows, 2).flatten(3)  # (B, C_in, kernel voxels, output voxels)
            grad_w = torch.einsum("bov,bckv->ock", grad_out.flatten(2), columns).reshape(weight.shape)
        return grad_x, grad_w, None


class _TinyMapConv3d(torch.nn.Conv3d):
    """``Conv3d`` that computes its weight gradient on tiny maps without oneDNN's faulty kernel (see below)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and x.shape[2:].numel() <= TINY_MAP_VOXELS):
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            out = _WindowWeightGradConv3d.apply(x.to(dtype), self.weight.to(dtype), self.padding)
            return out if self.bias is None else out + self.bias.to(dtype).view(1, -1, 1, 1, 1)


def _affected(module: torch.nn.Module) -> bool:
    return (
        type(module) is torch.nn.Conv3d
        and module.kernel_size != (1, 1, 1)
        and module.stride == (1, 1, 1)
        and module.dilation == (1, 1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def guard_tiny_map_convolutions(network: torch.nn.Module) -> torch.nn.Module:
    """Keep bfloat16 weight gradients finite on 2x2x2 feature maps under a CPU autocast.

    With torch 2.13 on an AVX-512 bfloat16 CPU, oneDNN's bfloat16 weight gradient of a 3x3x3 stride-1
    convolution on a 2x2x2 map comes out non-finite in some calls, for the same inputs (the kernel reads
    memory it did not write). Other map shapes, 1x1x1, strided and dilated convolutions were not affected
    (docs/performance.md). On maps of at most 8 voxels the affected convolutions compute that gradient as a
    bfloat16 matmul over the 27 shifted input windows instead; everything else, the weights, the state-dict
    keys, float32 runs and GPU runs are unchanged. The strided ResNet reaches 2x2x2 at 64³ input and below.
    """
    for module in network.modules():
        if _affected(module):
            module.__class__ = _TinyMapConv3d
    return network


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
