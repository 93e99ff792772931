"""The six sections of the benchmark; each returns rows (dicts) for one table, measured by children
at the sizes of a ``settings.Settings``."""

from __future__ import annotations

from pathlib import Path

from .machine import allocators
from .runner import interleaved, run_child, spread
from .settings import BRATS_2018_CASES, FULL, Settings, low_precision


def compute(settings: Settings, device: str = "cpu") -> list[dict]:
    """FLOP/s of a training step against the matmul peak in the same precision, for every model and layout."""
    precisions = ("float32", low_precision(device))
    # A peak is the best the machine reaches: the fastest matmul over interleaved rounds, so a busy moment
    # (one reading of 0.136 TFLOP/s against 0.198 on a quiet machine) cannot lower it.
    readings = interleaved(
        precisions,
        lambda precision: run_child("matmul_peak", {"precision": precision, "n": settings.peak_n, "device": device}),
        settings.repeats + 1,
    )
    peaks = {precision: max(run["flops"] / min(run["times"]) for run in runs)
             for precision, runs in zip(precisions, readings, strict=True)}  # fmt: skip
    rows = []
    for model in settings.compute_models:
        for size in settings.compute_sizes:
            batch, steps = (2, settings.steps) if size <= 64 else (1, 1)  # 128^3 steps take 10-30 s here
            shape = {"model": model, "size": size, "batch": batch, "steps": 1, "warmup": 0, "device": device}
            flops = run_child("train_step", {**shape, "precision": "float32", "channels_last": False,
                                             "count_flops": True})["flops"]  # fmt: skip
            configs = [(p, cl) for p in precisions for cl in (False, True)]

            def measure(config, shape=shape, steps=steps):
                precision, channels_last = config
                arguments = {**shape, "precision": precision, "channels_last": channels_last, "steps": steps,
                             "warmup": 1}  # fmt: skip
                return run_child("train_step", arguments)

            results = interleaved(configs, measure, settings.repeats)
            for (precision, channels_last), runs in zip(configs, results, strict=True):
                times = spread([t for run in runs for t in run["times"]])
                rows.append({
                    "model": model, "input": f"{size}^3", "batch": batch, "precision": precision,
                    "channels_last": channels_last, "s_per_step": times, "gflop_per_step": flops / 1e9,
                    "tflops": flops / times["median"] / 1e12, "peak_tflops": peaks[precision] / 1e12,
                    "share_of_peak": flops / times["median"] / peaks[precision],
                    "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
                    "peak_device_mib": runs[0]["peak_device_mib"] and max(run["peak_device_mib"] for run in runs),
                })  # fmt: skip
    return rows


def synthetic_dataset(work: Path, n_hgg: int, n_lgg: int, voxel_mm: float, datalist: bool = True) -> Path:
    """A synthetic BraTS folder (with its two-fold datalist), made once per shape and reused."""
    from ..components.datalist import build_datalist, write_datalist
    from ..synthetic import generate_dataset

    folder = work / f"data_{n_hgg}_{n_lgg}_{voxel_mm:g}mm"
    root = folder / "MICCAI_BraTS_2018_Data_Training"
    done = folder / "complete"
    if not done.is_file():
        root = generate_dataset(folder, n_hgg=n_hgg, n_lgg=n_lgg, seed=11, voxel_mm=voxel_mm, workers=2, overwrite=True)
        if datalist:
            write_datalist(build_datalist(root, 2), root / "datalist.json", overwrite=True)
        done.write_text("")
    return root


def _per_iteration(record: dict) -> float:
    return sum(record["loop"]) / sum(record["iterations"])


def _steady_per_iteration(record: dict) -> float:
    """Seconds per iteration after each epoch's first (which also starts the workers and waits for a batch)."""
    if sum(record["iterations"]) <= len(record["iterations"]):
        raise ValueError(f"no epoch has more than one iteration ({record['iterations']}): use more cases")
    return (sum(record["loop"]) - sum(record["first"])) / (sum(record["iterations"]) - len(record["iterations"]))


def _epoch_start(record: dict) -> float:
    """Mean seconds from an epoch's start to the end of its first iteration."""
    return sum(record["first"]) / len(record["first"])


def _overhead_run(settings: Settings, work: Path, output: str, device: str) -> dict:
    """Overrides of the bundle runs that sections 1 and 6 time: their dataset, epochs, a validation every epoch,
    no early stop and no published model."""
    data = synthetic_dataset(work, *settings.overhead_cases, voxel_mm=2.0 if settings is FULL else 3.0)
    return {**settings.overhead, "dataset_dir": str(data), "epochs": settings.overhead_epochs,
            "output_dir": str(work / output), "publish_model": False, "early_stop_patience": 0,
            "val_interval": 1, "device": device}  # fmt: skip


def overhead(settings: Settings, work: Path, device: str = "cpu") -> tuple[list[dict], dict]:
    """Bundle (monai.bundle config, Ignite, handlers, cached data) against a bare loop doing the same work.

    The bare loop draws its batches from the bundle's own data loaders, so ``throughput_ratio`` is what the
    engine and its handlers cost. A second bare loop replays batches drawn once (no augmentation, no
    workers): ``data_pipeline_ratio`` is what the data pipeline costs on cores it shares with the compute.
    Also returns the bundle's data wait with the cache on and off.
    """
    base = _overhead_run(settings, work, "runs", device)

    def measure(kind):
        if kind == "bundle":
            return run_child("bundle_run", {"bundle": "resnet50_3d_ldam", "overrides": {**base, "cache": "memory"}})
        if kind == "bundle_no_cache":
            return run_child("bundle_run", {"bundle": "resnet50_3d_ldam", "overrides": {**base, "cache": "none"}})
        in_memory = kind == "bare_in_memory"
        overrides = {**base, "cache": "memory", **({"num_workers": 0} if in_memory else {})}
        return run_child("bare_run", {"bundle": "resnet50_3d_ldam", "overrides": overrides,
                                      "epochs": settings.overhead_epochs, "in_memory": in_memory})  # fmt: skip

    kinds = ["bundle", "bare", "bare_in_memory", "bundle_no_cache"]
    results = dict(zip(kinds, interleaved(kinds, measure, settings.repeats), strict=True))
    rows = []
    for phase in ("train", "validate"):
        per_iteration = {k: spread([_per_iteration(r[phase]) for r in results[k]]) for k in kinds[:3]}
        steady = {k: spread([_steady_per_iteration(r[phase]) for r in results[k]]) for k in kinds[:2]}
        start = {k: spread([_epoch_start(r[phase]) for r in results[k]]) for k in kinds[:2]}
        rows.append({"phase": phase, "bundle_s_per_iteration": per_iteration["bundle"],
                     "bare_s_per_iteration": per_iteration["bare"],
                     "bare_in_memory_s_per_iteration": per_iteration["bare_in_memory"],
                     "throughput_ratio": per_iteration["bare"]["median"] / per_iteration["bundle"]["median"],
                     "data_pipeline_ratio": (per_iteration["bare_in_memory"]["median"]
                                             / per_iteration["bare"]["median"]),
                     "bundle_steady_s_per_iteration": steady["bundle"], "bare_steady_s_per_iteration": steady["bare"],
                     "steady_throughput_ratio": steady["bare"]["median"] / steady["bundle"]["median"],
                     "bundle_epoch_start_s": start["bundle"], "bare_epoch_start_s": start["bare"]})  # fmt: skip
    waits = {}
    for kind in ("bundle", "bundle_no_cache"):
        shares = [sum(r["train"]["wait"]) / sum(r["train"]["loop"]) for r in results[kind]]
        waits["cache on" if kind == "bundle" else "cache off"] = spread(shares)
    return rows, waits


def data_pipeline(settings: Settings, work: Path, waits: dict) -> dict:
    """Seconds per transform on one case (one core), data wait share, and the cache's bytes."""
    data = synthetic_dataset(work, 1, 0, settings.data_voxel_mm, datalist=False)
    case = next(data.glob("HGG/*"))
    files = [str(next(case.glob(f"*_{m}.nii.gz"))) for m in ("t1", "t1ce", "t2", "flair")]
    result = run_child(
        "preprocess", {"files": files, "size": settings.data_size, "repeats": max(2, settings.repeats + 1)}
    )
    steps = [{"transform": name, "seconds": spread([run[i] for run in result["runs"]])}
             for i, name in enumerate(result["names"])]  # fmt: skip
    total = spread([sum(run) for run in result["runs"]])
    import nibabel as nib

    shape = nib.load(files[0]).shape
    case_bytes = 4 * settings.data_size**3 * 4
    return {
        "case_shape": list(shape),
        "steps": steps,
        "total_seconds": total,
        "data_wait_share": waits,
        "cache_bytes_per_case": case_bytes,
        "cache_bytes_brats_2018": case_bytes * BRATS_2018_CASES,
        "network_input": f"4 x {settings.data_size}^3 float32",
    }


def inference(settings: Settings, device: str = "cpu") -> list[dict]:
    """Cases per second, eager vs TorchScript vs ONNX Runtime, float32 vs lower precision, and the largest HGG
    log-odds difference."""
    precisions = ("float32", low_precision(device))
    # "eager, channels-last": the ResNet bundle's CPU inference (weights and input channels-last)
    configs = [
        (mode, precision) for mode in ("eager", "eager, channels-last", "torchscript") for precision in precisions
    ] + [("onnx", "float32")]  # ONNX Runtime: float32 only (the export is float32; it does not autocast)

    def measure(config):
        mode, precision = config
        arguments = {**settings.inference, "mode": mode.split(",")[0], "precision": precision, "device": device,
                     "channels_last": mode.endswith("channels-last")}  # fmt: skip
        return run_child("inference", arguments)

    results = interleaved(configs, measure, settings.repeats)
    reference = results[0][0]["log_odds"]
    rows = []
    for (mode, precision), runs in zip(configs, results, strict=True):
        seconds = spread([t for run in runs for t in run["times"]])
        difference = max(abs(a - b) for run in runs for a, b in zip(run["log_odds"], reference, strict=True))
        scale = max(abs(v) for v in reference)
        rows.append({"mode": mode, "precision": precision, "s_per_batch": seconds,
                     "cases_per_s": runs[0]["batch"] / seconds["median"], "max_log_odds_difference": difference,
                     "largest_log_odds": scale})  # fmt: skip
    base = rows[0]["cases_per_s"]
    for row in rows:
        row["speedup"] = row["cases_per_s"] / base
    return rows


def memory(settings: Settings, work: Path, device: str = "cpu") -> dict:
    """Peak RSS of training against dataset size (disk cache), a Swin step's time and RSS per allocator, and
    what gradient checkpointing saves and costs.

    The allocator comparison is for CPU compute only (on a GPU the activations live in device memory)."""
    size_rows = []
    for cases in settings.memory_cases:
        data = synthetic_dataset(work, cases - cases // 2, cases // 2, 3.0)
        overrides = {**settings.memory_overrides, "dataset_dir": str(data), "epochs": 2, "cache": "disk",
                     "output_dir": str(work / f"runs_memory_{cases}"), "publish_model": False,
                     "device": device}  # fmt: skip
        result = run_child("bundle_run", {"bundle": "resnet50_3d_ldam", "overrides": overrides})
        size_rows.append({"cases": cases, "peak_rss_mib": result["peak_rss_mib"]})
    result = {"by_dataset_size": size_rows, "allocators": [],
              "allocator_model": f"{settings.allocator_model} at {settings.allocator_size}^3, batch 1",
              "gradient_checkpointing": gradient_checkpointing(settings, device)}  # fmt: skip
    if device != "cpu":
        return result
    settings_by_name = allocators()
    names = list(settings_by_name)
    steps = settings.steps if settings.allocator_size <= 64 else 1
    arguments = {"model": settings.allocator_model, "size": settings.allocator_size, "batch": 1,
                 "precision": "float32", "channels_last": False, "steps": steps, "warmup": 1}  # fmt: skip
    results = interleaved(names, lambda name: run_child("train_step", arguments, env=settings_by_name[name]),
                          settings.repeats)  # fmt: skip
    default = spread([t for run in results[0] for t in run["times"]])["median"]
    allocator_rows = []
    for name, runs in zip(names, results, strict=True):
        seconds = spread([t for run in runs for t in run["times"]])
        allocator_rows.append({"allocator": name, "s_per_step": seconds, "speedup": default / seconds["median"],
                               "peak_rss_mib": max(run["peak_rss_mib"] for run in runs)})  # fmt: skip
    result["allocators"] = allocator_rows
    return result


def gradient_checkpointing(settings: Settings, device: str = "cpu") -> list[dict]:
    """A Swin training step (float32, batch 1) with gradient checkpointing off and on: its time and peak memory
    (RSS on a CPU, device memory on a GPU), interleaved; the ratios are on / off."""
    rows = []
    for model in settings.checkpointing_models:
        for size in settings.checkpointing_sizes:
            steps = settings.steps if size <= 64 else 1
            arguments = {"model": model, "size": size, "batch": 1, "precision": "float32", "channels_last": False,
                         "steps": steps, "warmup": 1, "device": device}  # fmt: skip
            results = interleaved((False, True), lambda on, a=arguments: run_child("train_step", {**a, "use_checkpoint": on}),
                                  settings.repeats)  # fmt: skip
            measured = []
            for runs in results:
                seconds = spread([t for run in runs for t in run["times"]])
                peak = max(run["peak_device_mib"] or run["peak_rss_mib"] for run in runs)
                measured.append((seconds, peak))
            (off_s, off_peak), (on_s, on_peak) = measured
            rows.append({"model": model, "input": f"{size}^3", "off_s_per_step": off_s, "on_s_per_step": on_s,
                         "off_peak_mib": off_peak, "on_peak_mib": on_peak,
                         "time_ratio": on_s["median"] / off_s["median"], "memory_ratio": on_peak / off_peak})  # fmt: skip
    return rows


def cpu_budget(settings: Settings, work: Path, device: str = "cpu") -> list[dict]:
    """Bundle training and validation throughput for each (DataLoader workers, torch threads) pair on the
    overhead section's data (cache in memory): the workers' augmentation and the compute threads share the
    cores, so more of either can be slower. The first pair is the reference of ``speedup``."""
    base = {**_overhead_run(settings, work, "runs_budget", device), "cache": "memory"}

    def measure(pair):
        workers, threads = pair
        overrides = {**base, "num_workers": workers, "cpu_threads": threads}
        return run_child("bundle_run", {"bundle": "resnet50_3d_ldam", "overrides": overrides})

    results = interleaved(settings.cpu_budget, measure, settings.repeats)
    rows = []
    for (workers, threads), runs in zip(settings.cpu_budget, results, strict=True):
        rows.append({"num_workers": workers, "cpu_threads": threads,
                     "torch_threads": runs[0]["torch_threads"],
                     "train_s_per_iteration": spread([_per_iteration(r["train"]) for r in runs]),
                     "validate_s_per_iteration": spread([_per_iteration(r["validate"]) for r in runs]),
                     "data_wait_share": spread([sum(r["train"]["wait"]) / sum(r["train"]["loop"]) for r in runs])})  # fmt: skip
    for row in rows:
        for phase in ("train", "validate"):
            reference = rows[0][f"{phase}_s_per_iteration"]["median"]
            row[f"{phase}_speedup"] = reference / row[f"{phase}_s_per_iteration"]["median"]
    return rows
