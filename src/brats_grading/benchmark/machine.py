"""What the figures were measured on, and which memory allocators this machine can compare."""

from __future__ import annotations

import ctypes.util
import glob
import os
import platform
import sys
from pathlib import Path


def machine(device: str = "cpu") -> dict:
    """What the figures were measured on: CPU, cores, GPU, libraries, bfloat16 support."""
    import monai
    import torch

    flags = ""
    if Path("/proc/cpuinfo").is_file():
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
        platform.processor(),
    ) if Path("/proc/cpuinfo").is_file() else platform.processor()  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "device": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu",
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "platform": platform.platform(),
    }


def allocators() -> dict[str, dict]:
    """Allocator settings to compare: glibc's default, glibc tunables, and any preloadable allocator installed.

    glibc caps its mmap threshold at 32 MiB, so the large activation buffers of a 3D step are always
    mmap'ed and freed; ``glibc.malloc.hugetlb=1`` at least backs them with transparent huge pages.
    """
    from ..recipes import MALLOC_SETTINGS

    trim = {k: v for k, v in MALLOC_SETTINGS.items() if k.startswith("MALLOC_")}
    found = {
        "glibc default": {},
        "glibc trim / top pad": trim,
        "glibc + huge pages": {**trim, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    }
    for name in ("mimalloc", "jemalloc", "tcmalloc"):
        candidates = sorted(glob.glob(os.path.join(sys.prefix, "**", f"lib{name}.so"), recursive=True))
        path = candidates[0] if candidates else ctypes.util.find_library(name)
        if path:
            found[f"{name} (LD_PRELOAD)"] = {"LD_PRELOAD": path}
    return found
