"""What every benchmark child shares: where the bundles are, peak memory, device synchronisation, and
importing a bundle's ``scripts`` package under a name of its own."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
BUNDLES = REPO / "bundles"
MARK = "RESULT "


def peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def peak_device_mib(device: torch.device) -> float | None:
    """Peak memory allocated on a GPU (None on the CPU, where the peak RSS says it)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it (CPU work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundle_scripts(bundle: str):
    """Import ``bundles/<bundle>/scripts`` by path under a unique name (the bundles all call it ``scripts``)."""
    name = f"{bundle}_scripts"
    if name not in sys.modules:
        folder = BUNDLES / bundle / "scripts"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(name)
