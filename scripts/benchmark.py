#!/usr/bin/env python
"""Benchmark the whole pipeline on this machine: bundle overhead, compute efficiency, data pipeline, inference,
memory. Every measurement runs in a process of its own (forked from this one once torch and MONAI are imported,
or a new interpreter when an allocator is preloaded); configurations are interleaved over repeats and reported as
median (min-max), with the load average during the run, so a noisy machine shows.

    python scripts/benchmark.py --quick          # about a minute: checks the machinery, small sizes
    python scripts/benchmark.py                  # the full run recorded in docs/performance.md
    python scripts/benchmark.py --device cuda    # the same on a GPU (float16 + GradScaler as lower precision)

Writes <output_dir>/benchmark.md (tables ready for docs/performance.md) and benchmark.json.
"""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import fire

from brats_grading.benchmark import report, sections
from brats_grading.benchmark.runner import LoadMonitor

REPO = Path(__file__).resolve().parents[1]


def main(quick: bool = False, output_dir: str = str(REPO / "runs" / "benchmark"), device: str = "cpu") -> None:
    """Run every section (``--quick``: small sizes, one repeat) and write benchmark.md / benchmark.json.

    ``device``: ``cpu`` or a GPU (``cuda``, ``cuda:1``); on a GPU the lower precision is float16 and the
    allocator comparison, which concerns CPU compute, is left out. Preprocessing is timed on one CPU core
    either way.
    """
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    import monai  # noqa: F401 - imported once here, so every forked measurement starts warm

    settings = sections.QUICK if quick else sections.FULL
    work = Path(output_dir).resolve() / ("work_quick" if quick else "work")
    start = time.time()
    with LoadMonitor() as load:
        overhead_rows, waits = sections.overhead(settings, work, device)
        compute_rows = sections.compute(settings, device)
        data = sections.data_pipeline(settings, work, waits)
        inference_rows = sections.inference(settings, device)
        by_size, allocator_rows = sections.memory(settings, work, device)
    result = {
        "command": shlex.join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "seconds": time.time() - start,
        "machine": sections.machine(device),  # last: naming a GPU initialises CUDA, which forked children cannot share
        "load_average": load.summary(),
        "overhead": overhead_rows,
        "compute": compute_rows,
        "data_pipeline": data,
        "inference": inference_rows,
        "memory": {
            "by_dataset_size": by_size,
            "allocators": allocator_rows,
            "allocator_model": f"{settings.allocator_model} at {settings.allocator_size}^3, batch 1",
        },  # fmt: skip
    }
    md, js = report.write(result, output_dir)
    print(report.markdown(result))
    print(f"\nwrote {md} and {js}")


if __name__ == "__main__":
    fire.Fire(main)
