#!/usr/bin/env python
"""Benchmark the whole pipeline on this machine: bundle overhead, compute efficiency, data pipeline, inference,
memory, CPU budget (workers and threads). Every measurement runs in a process of its own (forked from this one
once torch and MONAI are imported, or a new interpreter when an allocator is preloaded); configurations are
interleaved over repeats and reported as median (min-max), with the load average during the run, so a noisy
machine shows.

    python scripts/benchmark.py --quick          # about four minutes on two cores: checks the machinery, small sizes
    python scripts/benchmark.py                  # the full run recorded in docs/performance.md
    python scripts/benchmark.py --device cuda    # the same on a GPU (float16 + GradScaler as lower precision)
    python scripts/benchmark.py --only cpu_budget  # one section (comma-separated names for several)

Writes <output_dir>/benchmark.md (tables ready for docs/performance.md) and benchmark.json.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import fire

from brats_grading.benchmark import machine, report, sections
from brats_grading.benchmark.runner import LoadMonitor
from brats_grading.benchmark.settings import FULL, QUICK

REPO = Path(__file__).resolve().parents[1]


def chosen_sections(only: str | tuple | list = "") -> list[str]:
    """The sections to run: all by default, else those named (``--only cpu_budget`` or ``--only overhead,compute``)."""
    names = [only] if isinstance(only, str) else list(only)
    names = [n.strip() for name in names for n in str(name).split(",") if n.strip()]
    unknown = sorted(set(names) - set(report.SECTIONS))
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {unknown}; choose from {list(report.SECTIONS)}")
    return [name for name in report.SECTIONS if not names or name in names]


def main(
    quick: bool = False, output_dir: str = str(REPO / "runs" / "benchmark"), device: str = "cpu", only: str = ""
) -> None:
    """Run every section, or those ``only`` names (``--quick``: small sizes, one repeat), and write
    benchmark.md / benchmark.json.

    ``device``: ``cpu`` or a GPU (``cuda``, ``cuda:1``); on a GPU the lower precision is float16 and the
    allocator comparison, which concerns CPU compute, is left out. Preprocessing is timed on one CPU core
    either way. ``only``: comma-separated section names, from ``overhead, compute, data_pipeline, inference,
    memory, cpu_budget`` (the data pipeline's wait shares come from the overhead section).
    """
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    names = chosen_sections(only)
    import monai  # noqa: F401 - imported once here, so every forked measurement starts warm

    settings = QUICK if quick else FULL
    work = Path(output_dir).resolve() / ("work_quick" if quick else "work")
    start = time.time()
    measured: dict = {}
    with LoadMonitor() as load:
        waits: dict = {}
        if "overhead" in names:
            measured["overhead"], waits = sections.overhead(settings, work, device)
        if "compute" in names:
            measured["compute"] = sections.compute(settings, device)
        if "data_pipeline" in names:
            measured["data_pipeline"] = sections.data_pipeline(settings, work, waits)
        if "inference" in names:
            measured["inference"] = sections.inference(settings, device)
        if "memory" in names:
            measured["memory"] = sections.memory(settings, work, device)
        if "cpu_budget" in names:
            measured["cpu_budget"] = sections.cpu_budget(settings, work, device)
    result = {
        "command": shlex.join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "seconds": time.time() - start,
        "machine": machine.machine(device),  # last: naming a GPU initialises CUDA, which forked children cannot share
        "load_average": load.summary(),
        **measured,
    }
    md, js = report.write(result, output_dir)
    print(report.markdown(result))
    print(f"\nwrote {md} and {js}")


if __name__ == "__main__":
    fire.Fire(main)
