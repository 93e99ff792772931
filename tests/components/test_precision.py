"""Autocast selected by config: bfloat16 on CPU exercises the same path float16 takes on CUDA."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from helpers import failure_text

from brats_grading.components.precision import (
    AutocastInferer,
    autocast_dtype,
    configure_backends,
    default_autocast,
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


@pytest.mark.parametrize("kernels", ["avx512_bf16", "amx", "emulated", "none"])
def test_amp_means_bfloat16_only_on_cpus_whose_kernels_were_validated(monkeypatch, kernels):
    from brats_grading.components import precision

    monkeypatch.setattr(precision, "cpu_bfloat16_kernels", lambda: kernels)
    assert default_autocast("cpu") == ("bfloat16" if kernels == "avx512_bf16" else "float32")
    assert default_autocast("cpu", amp=False) == "float32"
    assert default_autocast("cuda") == "float16"
    assert default_autocast("cuda", amp=False) == "float32"


def test_this_cpu_bfloat16_kernels_are_named():
    from brats_grading.components.precision import cpu_bfloat16_kernels

    assert cpu_bfloat16_kernels() in {"amx", "avx512_bf16", "emulated", "none"}


def test_backend_flags_are_set():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        configure_backends(tf32=True, cudnn_benchmark=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        configure_backends(tf32=False, cudnn_benchmark=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = before


def test_cpu_threads_are_set_and_checked():
    before = torch.get_num_threads()
    try:
        configure_backends(threads=1)
        assert torch.get_num_threads() == 1
        configure_backends(threads=0)  # 0 keeps what is set
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="cpu_threads must be an integer >= 0"):
        configure_backends(threads=-1)


def _guarded_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv3d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 8, 1))
    guarded = copy.deepcopy(plain)
    return plain, guard_tiny_map_convolutions(guarded)


def test_tiny_map_guard_keeps_weights_keys_and_float32_results():
    plain, guarded = _guarded_pair()
    assert guarded.state_dict().keys() == plain.state_dict().keys()
    assert [type(m).__name__ for m in guarded] == ["_TinyMapConv3d", "ReLU", "_TinyMapConv3d"]
    x = torch.randn(2, 8, 2, 2, 2)
    assert torch.equal(guarded(x), plain(x))


_CASES = {
    "2x2x2 map": ((2, 2, 2), 1, 1),
    "2x3x3 map": ((2, 3, 3), 1, 1),
    "1x1x1 map, stride 2": ((1, 1, 1), 2, 1),
    "3x3x1 map, stride 2": ((3, 3, 1), 2, 1),
    "2x4x4 map, dilation 2": ((2, 4, 4), 1, 2),
    "4x4x4 map (oneDNN path)": ((4, 4, 4), 1, 1),
}


@pytest.mark.parametrize(("shape", "stride", "dilation"), list(_CASES.values()), ids=list(_CASES))
def test_guarded_bfloat16_gradients_match_float32_within_bfloat16_rounding(shape, stride, dilation):
    torch.manual_seed(0)
    plain = torch.nn.Sequential(
        torch.nn.Conv3d(8, 8, 3, stride=stride, padding=dilation, dilation=dilation), torch.nn.ReLU()
    )
    guarded = guard_tiny_map_convolutions(copy.deepcopy(plain))
    x = torch.randn(2, 8, *shape)
    plain(x).square().sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = guarded(x)
    assert out.dtype == torch.bfloat16
    assert out.shape == plain(x).shape
    out.float().square().sum().backward()
    for reference, param in zip(plain.parameters(), guarded.parameters(), strict=True):
        scale = reference.grad.abs().max()
        assert (param.grad - reference.grad).abs().max() <= 0.03 * scale


_TRIALS = """
import torch
from brats_grading.components.precision import guard_tiny_map_convolutions
torch.manual_seed(0)
bad = []
for shape, stride in (((2, 2, 2), 1), ((2, 5, 7), 1), ((1, 1, 1), 2), ((5, 7, 1), 2)):
    conv = torch.nn.Conv3d(64, 64, 3, stride=stride, padding=1, bias=False).to(memory_format=torch.channels_last_3d)
    conv = guard_tiny_map_convolutions(torch.nn.Sequential(conv))[0]
    for _ in range(5):
        x = torch.randn(4, 64, *shape).relu().contiguous(memory_format=torch.channels_last_3d).requires_grad_()
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        (out.float() * torch.randn_like(out.float())).sum().backward()
        if not (torch.isfinite(conv.weight.grad).all() and torch.isfinite(x.grad).all()):
            bad.append((shape, stride))
print(len(bad), bad)
"""


def test_guarded_bfloat16_weight_gradients_on_tiny_maps_are_finite():
    """oneDNN's bfloat16 weight gradient of these convolutions reads memory it did not write: with glibc
    filling new allocations with 0x7f bytes (MALLOC_PERTURB_=128), every unguarded call was non-finite on an
    AVX-512 CPU (docs/performance.md). Guarded, the gradient is a matmul over the shifted input windows."""
    env = {**os.environ, "MALLOC_PERTURB_": "128", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _TRIALS], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, failure_text(result)
    assert result.stdout.split()[0] == "0", result.stdout
