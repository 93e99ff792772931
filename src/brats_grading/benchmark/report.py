"""Benchmark results as markdown tables (ready for docs/performance.md) and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

#: sections every complete result holds, in the order they are printed
SECTIONS: tuple[str, ...] = ("overhead", "compute", "data_pipeline", "inference", "memory", "cpu_budget")


def _s(stats: dict, digits: int = 3) -> str:
    """``median (min-max)`` of a timing."""
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def markdown(result: dict) -> str:
    """Every table the result holds, with its unit; timings as median (min-max) over repeats and steps."""
    m, load = result["machine"], result["load_average"]
    lines = [
        f"Command: `{result['command']}` ({result['date']}, {result['mode']} mode, {result['seconds']:.0f} s)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, device {m.get('device', 'cpu')}, torch threads {m['torch_threads']}, "
        f"AVX-512 bf16 {m['avx512_bf16']}, "
        f"AMX bf16 {m['amx_bf16']}; Python {m['python']}, torch {m['torch']}, MONAI {m['monai']}. "
        f"1-minute load average during the run: median {load['median']:.2f}, min {load['min']:.2f}, "
        f"max {load['max']:.2f} ({load['n']} samples).",
        "",
        "Timings are median (min-max) over interleaved repeats.",
        "",
    ]
    for name in SECTIONS:
        if name in result:
            lines += _RENDERERS[name](result)
    return "\n".join(lines)


def _overhead(result: dict) -> list[str]:
    lines = [
        "### 1. Bundle overhead (ResNet50-3D bundle on cached data vs a hand-written loop doing the same work)",
        "",
    ]
    lines += _table(
        ["phase", "bundle s/iteration", "bare s/iteration", "throughput bundle / bare",
         "bare, batches in memory s/iteration", "throughput bare / bare in memory"],
        [[r["phase"], _s(r["bundle_s_per_iteration"]), _s(r["bare_s_per_iteration"]), f"{r['throughput_ratio']:.3f}",
          _s(r["bare_in_memory_s_per_iteration"]), f"{r['data_pipeline_ratio']:.3f}"] for r in result["overhead"]],
    )  # fmt: skip
    lines += ["The bare loop draws its batches from the bundle's data loaders (same cache, augmentation and workers); "
              "the in-memory loop replays batches drawn once, without augmentation or workers.", ""]  # fmt: skip
    lines += ["Per epoch against per iteration: each epoch's first iteration (which starts the data loader's workers "
              "and waits for the first batch) apart from the iterations after it:", ""]  # fmt: skip
    lines += _table(
        ["phase", "bundle epoch start s", "bare epoch start s", "bundle steady s/iteration",
         "bare steady s/iteration", "steady throughput bundle / bare"],
        [[r["phase"], _s(r["bundle_epoch_start_s"]), _s(r["bare_epoch_start_s"]),
          _s(r["bundle_steady_s_per_iteration"]), _s(r["bare_steady_s_per_iteration"]),
          f"{r['steady_throughput_ratio']:.3f}"] for r in result["overhead"]],
    )  # fmt: skip
    return lines


def _compute(result: dict) -> list[str]:
    lines: list[str] = []
    lines += ["### 2. Compute efficiency (training step: forward, loss, backward, clipping, Adam)", ""]
    on_gpu = any(r.get("peak_device_mib") is not None for r in result["compute"])
    lines += _table(
        ["model", "input", "batch", "precision", "channels-last", "s/step", "GFLOP/step", "TFLOP/s", "peak TFLOP/s",
         "share of peak", "peak RSS MiB", *(["peak GPU MiB"] if on_gpu else [])],
        [[r["model"], r["input"], r["batch"], r["precision"], "on" if r["channels_last"] else "off",
          _s(r["s_per_step"], 2), f"{r['gflop_per_step']:.0f}", f"{r['tflops']:.3f}", f"{r['peak_tflops']:.3f}",
          f"{r['share_of_peak']:.0%}", f"{r['peak_rss_mib']:.0f}",
          *([f"{r['peak_device_mib']:.0f}"] if on_gpu else [])] for r in result["compute"]],
    )  # fmt: skip
    base = {(r["model"], r["input"]): r["s_per_step"]["median"] for r in result["compute"]
            if r["precision"] == "float32" and not r["channels_last"]}  # fmt: skip
    lines += ["Step time relative to float32 without channels-last (lower is faster):", ""]
    lines += [f"- {r['model']} {r['input']}, {r['precision']}, channels-last {'on' if r['channels_last'] else 'off'}: "
              f"{r['s_per_step']['median'] / base[(r['model'], r['input'])]:.2f}"
              for r in result["compute"] if (r["precision"], r["channels_last"]) != ("float32", False)]  # fmt: skip
    return lines


def _data_pipeline(result: dict) -> list[str]:
    lines: list[str] = []
    d = result["data_pipeline"]
    lines += ["", f"### 3. Data pipeline (one case of shape {d['case_shape']} x 4 modalities -> {d['network_input']}, "
              "one core)", ""]  # fmt: skip
    lines += _table(["transform", "seconds"], [[s["transform"], _s(s["seconds"])] for s in d["steps"]])
    lines += [f"- total: {_s(d['total_seconds'])} s per case per core"]
    lines += [f"- data wait as a share of training loop time, {k}: {_s(v)}" for k, v in d["data_wait_share"].items()]
    lines += [f"- cache: {d['cache_bytes_per_case'] / 2**20:.1f} MiB per case, "
              f"{d['cache_bytes_brats_2018'] / 2**30:.1f} GiB for BraTS 2018's 285 cases", ""]  # fmt: skip
    return lines


def _inference(result: dict) -> list[str]:
    lines: list[str] = []
    rows = result["inference"]
    lines += [f"### 4. Inference (forward pass; HGG log-odds difference against float32 eager, whose largest "
              f"|log-odds| is {rows[0]['largest_log_odds']:.3g})", ""]  # fmt: skip
    lines += _table(
        ["mode", "precision", "s/batch", "cases/s", "speed-up", "max |log-odds difference|"],
        [[r["mode"], r["precision"], _s(r["s_per_batch"]), f"{r['cases_per_s']:.2f}", f"{r['speedup']:.2f}",
          f"{r['max_log_odds_difference']:.2e}"] for r in rows],
    )  # fmt: skip
    return lines


def _memory(result: dict) -> list[str]:
    lines: list[str] = []
    mem = result["memory"]
    lines += ["### 5. Memory", "", "Peak RSS of a training run (disk cache) against dataset size:", ""]
    lines += _table(
        ["cases", "peak RSS MiB"], [[r["cases"], f"{r['peak_rss_mib']:.0f}"] for r in mem["by_dataset_size"]]
    )
    if not mem["allocators"]:
        lines += ["Allocators: not compared on a GPU (the host allocator matters only for CPU compute).", ""]
    else:
        lines += [f"Training step of {mem['allocator_model']} per allocator:", ""]
        lines += _table(
            ["allocator", "s/step", "speed-up", "peak RSS MiB"],
            [[r["allocator"], _s(r["s_per_step"], 2), f"{r['speedup']:.2f}", f"{r['peak_rss_mib']:.0f}"]
             for r in mem["allocators"]],
        )  # fmt: skip
    lines += ["Swin training step (float32, batch 1), gradient checkpointing off and on (peak: RSS on a CPU, "
              "device memory on a GPU):", ""]  # fmt: skip
    lines += _table(
        ["model", "input", "off s/step", "on s/step", "time on / off", "off peak MiB", "on peak MiB", "memory on / off"],
        [[r["model"], r["input"], _s(r["off_s_per_step"], 2), _s(r["on_s_per_step"], 2), f"{r['time_ratio']:.2f}",
          f"{r['off_peak_mib']:.0f}", f"{r['on_peak_mib']:.0f}", f"{r['memory_ratio']:.2f}"]
         for r in mem.get("gradient_checkpointing", [])],
    )  # fmt: skip
    return lines


def _cpu_budget(result: dict) -> list[str]:
    lines: list[str] = []
    lines += ["### 6. CPU budget (DataLoader workers and torch threads sharing the cores; bundle, cache in memory)", ""]
    lines += _table(
        ["workers", "torch threads", "train s/iteration", "train speed-up", "validation s/iteration",
         "validation speed-up", "data wait share"],
        [[r["num_workers"], r["torch_threads"], _s(r["train_s_per_iteration"]), f"{r['train_speedup']:.2f}",
          _s(r["validate_s_per_iteration"]), f"{r['validate_speedup']:.2f}", _s(r["data_wait_share"])]
         for r in result["cpu_budget"]],
    )  # fmt: skip
    return lines


_RENDERERS = {
    "overhead": _overhead,
    "compute": _compute,
    "data_pipeline": _data_pipeline,
    "inference": _inference,
    "memory": _memory,
    "cpu_budget": _cpu_budget,
}


def write(result: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """``benchmark.md`` and ``benchmark.json`` in ``output_dir``."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "benchmark.md", folder / "benchmark.json"
    md.write_text(markdown(result) + "\n")
    js.write_text(json.dumps(result, indent=2) + "\n")
    return md, js
