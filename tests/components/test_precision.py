"""Autocast selected by config: bfloat16 on CPU exercises the same path float16 takes on CUDA."""

from __future__ import annotations

import pytest
import torch

from brats_grading.components.precision import AutocastInferer, autocast_dtype, configure_backends


def test_bfloat16_autocast_runs_the_network_in_bfloat16():
    net = torch.nn.Sequential(torch.nn.Conv3d(4, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.randn(2, 4, 8, 8, 8)
    assert AutocastInferer("cpu", "float32")(x, net).dtype == torch.float32
    out = AutocastInferer("cpu", "bfloat16")(x, net)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), net(x), atol=0.1)


def test_unknown_autocast_dtype_is_rejected():
    with pytest.raises(ValueError, match="autocast dtype"):
        autocast_dtype("int8")


def test_backend_flags_are_set():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        configure_backends(tf32=True, cudnn_benchmark=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        configure_backends(tf32=False, cudnn_benchmark=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = before
