"""Precision and backend switches: autocast that also works on CPU, channels-last 3D, TF32 and cudnn.benchmark.

MONAI's trainer ``amp=True`` autocasts on CUDA only (float16 with a GradScaler). CPUs with
AVX-512/AMX bfloat16 can autocast too, so the inferer does it, for any device, when asked.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from monai.inferers import SimpleInferer


def autocast_dtype(name: str) -> torch.dtype | None:
    """``"bfloat16"`` / ``"float16"`` -> the dtype; ``"float32"`` / ``""`` / ``"none"`` -> None (no autocast)."""
    table = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None, "": None, "none": None}
    if name not in table:
        raise ValueError(f"autocast dtype '{name}' must be one of {sorted(table)}")
    return table[name]


def cpu_bfloat16_kernels() -> str:
    """Which oneDNN bfloat16 kernels this CPU runs: ``"amx"``, ``"avx512_bf16"`` (native), ``"emulated"`` (other
    AVX-512 CPUs, slower than float32) or ``"none"``."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "none"
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return "emulated"


def default_autocast(device: torch.device | str, amp: bool = True) -> str:
    """What ``amp`` means on ``device``: float16 on CUDA (MONAI adds the GradScaler); bfloat16 on a CPU whose
    bfloat16 kernels were validated for training here (AVX-512 BF16); float32 otherwise or without ``amp``.

    AMX CPUs run other oneDNN kernels (with a known bfloat16 NaN-leak, oneDNN issue 5717) that could not be
    checked on this project's machines, so they keep float32 unless asked (docs/performance.md)."""
    kind = torch.device(device).type
    if not amp:
        return "float32"
    if kind == "cuda":
        return "float16"
    if kind == "cpu" and cpu_bfloat16_kernels() == "avx512_bf16":
        return "bfloat16"
    return "float32"


def to_channels_last(network: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Store the network's 5-D weights channels-last (``torch.channels_last_3d``), which oneDNN convolves faster."""
    return network.to(memory_format=torch.channels_last_3d) if enabled else network


#: maps with a side this short or shorter take the guarded path under a CPU autocast (see below)
TINY_MAP_SIDE = 2


class _WindowWeightGradConv3d(torch.autograd.Function):
    """``conv3d`` whose weight gradient is one matmul over the (strided, dilated) shifted input windows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, conv: torch.nn.Conv3d) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation))
        return F.conv3d(x, weight, None, conv.stride, conv.padding, conv.dilation)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        stride, pad, dilation = ctx.geometry
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            mask = [True, False, False]
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, stride, pad, dilation, False, [0] * 3, 1, mask
            )[0]
        if ctx.needs_input_grad[1]:
            padded = F.pad(x, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
            out_size = grad_out.shape[2:]

            def window(offsets: tuple[int, int, int]) -> torch.Tensor:
                index = [
                    slice(k * dil, k * dil + (n - 1) * s + 1, s)
                    for k, dil, n, s in zip(offsets, dilation, out_size, stride, strict=True)
                ]
                return padded[(slice(None), slice(None), *index)]

            taps = itertools.product(*(range(k) for k in weight.shape[2:]))
            columns = torch.stack([window(t) for t in taps], 2).flatten(3)  # (B, C_in, kernel voxels, out voxels)
            grad_w = torch.einsum("bov,bckv->ock", grad_out.flatten(2), columns).reshape(weight.shape)
        return grad_x, grad_w, None


class _TinyMapConv3d(torch.nn.Conv3d):
    """``Conv3d`` that computes its weight gradient on tiny maps without oneDNN's faulty kernel (see below)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and min(x.shape[2:]) <= TINY_MAP_SIDE):
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            out = _WindowWeightGradConv3d.apply(x.to(dtype), self.weight.to(dtype), self)
            return out if self.bias is None else out + self.bias.to(dtype).view(1, -1, 1, 1, 1)


def _affected(module: torch.nn.Module) -> bool:
    return (
        type(module) is torch.nn.Conv3d
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def guard_tiny_map_convolutions(network: torch.nn.Module) -> torch.nn.Module:
    """Keep bfloat16 weight gradients finite on maps with a side of 1 or 2 voxels under a CPU autocast.

    With torch 2.13 on an AVX-512 CPU (native or emulated bfloat16), oneDNN's bfloat16 weight gradient of a
    3x3x3 convolution comes out non-finite when the input has a side of 2 (stride 1) or of 1 (stride 2): the
    kernel reads memory it did not write, so it fails in some calls and not others, more often on some
    machines (docs/performance.md). Other sizes, and dilated convolutions, were not affected here; as other
    CPUs take other kernels, every convolution on such a map takes the guarded path, which computes that
    gradient as a bfloat16 matmul over the shifted input windows. The weights, the state-dict keys, float32
    runs and GPU runs are unchanged. The strided ResNet reaches maps of side 2 at 64³ input and below.
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
    """TF32 matmuls/convolutions and cudnn autotuning on CUDA (no effect on CPU); the main process's CPU
    threads (``threads`` > 0; 0 keeps torch's default of one per core), so that compute threads and
    DataLoader workers can share the cores without oversubscribing them."""
    if int(threads) != threads or threads < 0:
        raise ValueError(f"cpu_threads must be an integer >= 0 (0: one per core), got {threads}")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if threads > 0:
        torch.set_num_threads(int(threads))
