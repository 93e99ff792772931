"""``scripts/benchmark.py --quick``: every section measured, the tables and the JSON complete and well formed.

Timings are not asserted (they belong to the machine); their shape and sanity are.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import failure_text

from brats_grading.benchmark.report import SECTIONS

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, str, Path]:
    output = tmp_path_factory.mktemp("benchmark")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output_dir", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, failure_text(result)
    return json.loads((output / "benchmark.json").read_text()), (output / "benchmark.md").read_text(), output


def _timing(stats: dict) -> None:
    assert set(stats) == {"median", "min", "max", "n"} and stats["n"] >= 1
    assert 0 < stats["min"] <= stats["median"] <= stats["max"] < 3600


def test_every_section_is_present_with_the_machine_and_the_load(quick):
    result = quick[0]
    for key in (*SECTIONS, "machine", "load_average", "command", "date", "seconds"):
        assert key in result, key
    assert result["mode"] == "quick" and result["machine"]["cores"] >= 1 and result["machine"]["torch"]
    assert result["load_average"]["n"] >= 1


def test_overhead_compares_bundle_and_bare_for_training_and_validation(quick):
    rows = quick[0]["overhead"]
    assert [r["phase"] for r in rows] == ["train", "validate"]
    for row in rows:
        _timing(row["bundle_s_per_iteration"])
        _timing(row["bare_s_per_iteration"])
        _timing(row["bare_in_memory_s_per_iteration"])
        assert row["throughput_ratio"] == pytest.approx(
            row["bare_s_per_iteration"]["median"] / row["bundle_s_per_iteration"]["median"]
        )
        assert row["data_pipeline_ratio"] == pytest.approx(
            row["bare_in_memory_s_per_iteration"]["median"] / row["bare_s_per_iteration"]["median"]
        )
        for key in ("bundle_steady_s_per_iteration", "bare_steady_s_per_iteration"):
            _timing(row[key])
        _timing(row["bundle_epoch_start_s"])
        _timing(row["bare_epoch_start_s"])
        assert row["steady_throughput_ratio"] == pytest.approx(
            row["bare_steady_s_per_iteration"]["median"] / row["bundle_steady_s_per_iteration"]["median"]
        )


def test_compute_covers_both_precisions_and_layouts_with_flops_and_peak(quick):
    rows = quick[0]["compute"]
    assert {(r["precision"], r["channels_last"]) for r in rows} == {
        ("float32", False), ("float32", True), ("bfloat16", False), ("bfloat16", True),
    }  # fmt: skip
    for row in rows:
        _timing(row["s_per_step"])
        assert row["gflop_per_step"] > 0 and row["peak_tflops"] > 0
        assert row["share_of_peak"] == pytest.approx(row["tflops"] / row["peak_tflops"])
    assert len({r["gflop_per_step"] for r in rows}) == 1  # same work whatever the precision


def test_data_pipeline_breaks_preprocessing_down_and_reports_the_cache(quick):
    data = quick[0]["data_pipeline"]
    names = [s["transform"] for s in data["steps"]]
    for expected in ("LoadImaged", "Orientationd", "CropForegroundd", "NormalizeIntensityd", "Resized"):
        assert expected in names
    for step in data["steps"]:
        assert step["seconds"]["min"] >= 0
    assert data["total_seconds"]["median"] == pytest.approx(sum(s["seconds"]["median"] for s in data["steps"]), rel=0.5)
    assert set(data["data_wait_share"]) == {"cache on", "cache off"}
    for share in data["data_wait_share"].values():
        assert 0 <= share["median"] <= 1
    assert data["cache_bytes_brats_2018"] == 285 * data["cache_bytes_per_case"] == 285 * 4 * 4 * 32**3


def test_inference_compares_eager_torchscript_onnx_and_precisions_with_output_differences(quick):
    rows = quick[0]["inference"]
    assert [(r["mode"], r["precision"]) for r in rows] == [
        ("eager", "float32"), ("eager", "bfloat16"), ("eager, channels-last", "float32"),
        ("eager, channels-last", "bfloat16"), ("torchscript", "float32"), ("torchscript", "bfloat16"),
        ("onnx", "float32"),
    ]  # fmt: skip
    assert rows[0]["max_log_odds_difference"] == 0 and rows[0]["speedup"] == 1
    for float32_row in (rows[2], rows[4], rows[6]):  # channels-last, TorchScript, ONNX Runtime: float32 rounding only
        assert float32_row["max_log_odds_difference"] < 1e-3 * max(1.0, rows[0]["largest_log_odds"])
    assert rows[1]["max_log_odds_difference"] > 0  # bfloat16 rounds: a zero would mean it did not run in bfloat16
    for row in rows:
        _timing(row["s_per_batch"])
        assert math.isfinite(row["max_log_odds_difference"]) and row["cases_per_s"] > 0


def test_memory_reports_dataset_sizes_allocators_and_gradient_checkpointing(quick):
    memory = quick[0]["memory"]
    assert [r["cases"] for r in memory["by_dataset_size"]] == [4, 8]
    assert all(r["peak_rss_mib"] > 100 for r in memory["by_dataset_size"])
    names = [r["allocator"] for r in memory["allocators"]]
    assert names[:3] == ["glibc default", "glibc trim / top pad", "glibc + huge pages"]
    assert memory["allocators"][0]["speedup"] == 1
    for row in memory["allocators"]:
        _timing(row["s_per_step"])
    [checkpointing] = memory["gradient_checkpointing"]
    assert (checkpointing["model"], checkpointing["input"]) == ("swin12", "32^3")
    _timing(checkpointing["off_s_per_step"])
    _timing(checkpointing["on_s_per_step"])
    assert checkpointing["time_ratio"] == pytest.approx(
        checkpointing["on_s_per_step"]["median"] / checkpointing["off_s_per_step"]["median"]
    )
    assert checkpointing["memory_ratio"] == pytest.approx(checkpointing["on_peak_mib"] / checkpointing["off_peak_mib"])
    assert "gradient checkpointing off and on" in quick[1]


def test_cpu_budget_measures_each_workers_and_threads_pair(quick):
    rows = quick[0]["cpu_budget"]
    assert [(r["num_workers"], r["cpu_threads"]) for r in rows] == [(2, 0), (0, 1)]
    assert rows[1]["torch_threads"] == 1  # the bundle's cpu_threads key reached torch
    assert rows[0]["train_speedup"] == rows[0]["validate_speedup"] == 1
    for row in rows:
        _timing(row["train_s_per_iteration"])
        _timing(row["validate_s_per_iteration"])
        assert 0 <= row["data_wait_share"]["median"] <= 1
        assert row["train_speedup"] == pytest.approx(
            rows[0]["train_s_per_iteration"]["median"] / row["train_s_per_iteration"]["median"]
        )


def test_the_bundle_runs_leave_their_caches_but_no_run_folders(quick):
    """A run's checkpoints are ~0.5 GB each and the benchmark keeps only timings: a full run filled 17 GB."""
    output = quick[2]
    assert list(output.glob("work_quick/runs*/cache"))  # the disk caches stay, so later runs reuse them
    assert not list(output.glob("work_quick/runs*/fold_*/run_*"))


def test_the_markdown_holds_every_table_and_no_nan(quick):
    text = quick[1]
    for heading in ("### 1. Bundle overhead", "### 2. Compute efficiency", "### 3. Data pipeline",
                    "### 4. Inference", "### 5. Memory", "### 6. CPU budget"):  # fmt: skip
        assert heading in text
    assert "nan" not in text.lower().replace("nanoseconds", "")
    assert text.count("| --- |") >= 6


def test_gpu_results_render_with_device_memory_and_without_allocators(quick):
    """The tables a ``--device cuda`` run writes, rendered from this run's rows with GPU fields filled in."""
    from brats_grading.benchmark.report import markdown

    result = json.loads(json.dumps(quick[0]))
    result["machine"]["device"] = "NVIDIA Test GPU"
    for row in result["compute"]:
        row["peak_device_mib"] = 321.0
    result["memory"]["allocators"] = []
    text = markdown(result)
    assert "device NVIDIA Test GPU" in text and "| peak GPU MiB |" in text and "| 321 |" in text
    assert "Allocators: not compared on a GPU" in text
    assert "peak GPU MiB" not in quick[1]  # a CPU run has no such column


def test_a_subset_of_sections_renders_alone(quick):
    from brats_grading.benchmark.report import markdown

    result = {k: v for k, v in quick[0].items() if k not in {"compute", "inference", "memory"}}
    text = markdown(result)
    assert "### 1. Bundle overhead" in text and "### 6. CPU budget" in text
    assert "### 2. Compute" not in text and "### 5. Memory" not in text


def _refused(output: Path, *args: str) -> str:
    """Run the benchmark with bad arguments: it must fail before writing anything; returns its stderr."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--output_dir", str(output)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and not any(output.iterdir())
    return result.stderr


def test_unknown_sections_are_refused_with_the_known_ones(tmp_path):
    stderr = _refused(tmp_path, "--only", "overhead,speed")
    assert "unknown benchmark section(s) ['speed']" in stderr and "cpu_budget" in stderr


def test_an_unknown_device_is_refused_before_any_measurement(tmp_path):
    assert "device must be 'cpu' or 'cuda[:N]', got 'tpu'" in _refused(tmp_path, "--device", "tpu")
