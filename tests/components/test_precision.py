"""Autocast selected by config: bfloat16 on CPU exercises the same path float16 takes on CUDA."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

from brats_grading.components.precision import (
    AutocastInferer,
    autocast_dtype,
    configure_backends,
    guard_tiny_map_convolutions,
)


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


def _guarded_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv3d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 8, 1))
    guarded = copy.deepcopy(plain)
    return plain, guard_tiny_map_convolutions(guarded)


def test_tiny_map_guard_keeps_weights_keys_and_float32_results():
    plain, guarded = _guarded_pair()
    assert guarded.state_dict().keys() == plain.state_dict().keys()
    assert [type(m).__name__ for m in guarded] == ["_TinyMapConv3d", "ReLU", "Conv3d"]  # 1x1x1 was not affected
    x = torch.randn(2, 8, 2, 2, 2)
    assert torch.equal(guarded(x), plain(x))


@pytest.mark.parametrize("shape", [(2, 2, 2), (3, 2, 2)], ids=["2x2x2 map (guarded path)", "12 voxels (oneDNN path)"])
def test_guarded_bfloat16_gradients_match_float32_within_bfloat16_rounding(shape):
    plain, guarded = _guarded_pair()
    x = torch.randn(2, 8, *shape)
    plain(x).square().sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = guarded(x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    for reference, param in zip(plain.parameters(), guarded.parameters(), strict=True):
        scale = reference.grad.abs().max()
        assert (param.grad - reference.grad).abs().max() <= 0.03 * scale


_TRIALS = """
import torch
from brats_grading.components.precision import guard_tiny_map_convolutions
torch.manual_seed(0)
conv = guard_tiny_map_convolutions(torch.nn.Sequential(torch.nn.Conv3d(256, 256, 3, padding=1, bias=False)))[0]
bad = 0
for _ in range(10):
    x = torch.randn(8, 256, 2, 2, 2).relu().requires_grad_()
    conv.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    (out.float() * torch.randn_like(out.float())).sum().backward()
    bad += int(not (torch.isfinite(conv.weight.grad).all() and torch.isfinite(x.grad).all()))
print(bad)
"""


def test_guarded_bfloat16_weight_gradients_on_a_2x2x2_map_are_finite():
    """oneDNN's bfloat16 weight gradient of this convolution reads memory it did not write: with glibc filling
    new allocations with 0x7f bytes (MALLOC_PERTURB_=128), all 10 unguarded calls were non-finite on an AVX-512
    bfloat16 CPU (docs/performance.md). Guarded, the gradient is a matmul over the shifted input windows."""
    env = {**os.environ, "MALLOC_PERTURB_": "128", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _TRIALS], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "0"
