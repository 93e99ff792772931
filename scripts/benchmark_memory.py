#!/usr/bin/env python
"""Measure peak memory and time of one CPU training step of the Swin UNETR encoder classifier.

Every configuration (feature_size x gradient checkpointing x cubic input size) runs in a fresh Python
subprocess, so peaks do not leak from one configuration into the next. The child builds the model from
``bundles/swin_unetr_cls/scripts`` (imported by file path), creates an AdamW optimiser and a random batch,
records its resident memory (baseline), runs the training step(s) (forward + cross-entropy + backward +
AdamW step) and reports its peak resident memory (``VmHWM`` from ``/proc/self/status``, falling back to
``getrusage`` ``ru_maxrss``). ``peak - baseline`` is what the step itself needs: activations kept for the
backward pass, gradients and the AdamW state.

The results are printed as a Markdown table followed by checkpoint/no-checkpoint ratios per feature size and
input size; ``--output`` also writes them (with the command line and date) to a file.

Example::

    .venv/bin/python scripts/benchmark_memory.py --sizes 64 --output /tmp/swin_memory.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCRIPTS_DIR = REPO_ROOT / "bundles" / "swin_unetr_cls" / "scripts"
PACKAGE_NAME = "swin_unetr_cls_bundle_scripts"
RESULT_MARKER = "BENCHMARK_RESULT "
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Peak memory (RSS) and time of ONE training step (forward + backward + AdamW step, float32, CPU) of "
            "the swin_unetr_cls encoder classifier, each configuration in a fresh subprocess. Configurations are "
            "all combinations of --feature-sizes x --checkpointing x --sizes, run one after another."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--feature-sizes", type=int, nargs="+", default=[24, 48], help="Swin feature_size values (multiples of 12)."
    )
    parser.add_argument(
        "--checkpointing",
        choices=["off", "on"],
        nargs="+",
        default=["off", "on"],
        help="gradient checkpointing settings (use_checkpoint False/True) to measure.",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64, 128],
        help="edge lengths of the cubic input volume (multiples of 32).",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="volumes per training step.")
    parser.add_argument("--in-channels", type=int, default=4, help="input channels (MRI modalities).")
    parser.add_argument("--pooling", choices=["avg", "attention"], default="avg", help="pooling of the classifier.")
    parser.add_argument("--head", choices=["linear", "mlp"], default="linear", help="classification head.")
    parser.add_argument(
        "--steps",
        type=int,
        default=1,
        help="training steps per configuration; the reported time is the mean over them and the peak "
        "covers all of them (the first step also allocates the AdamW state).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads in each child; 0 keeps torch's default (one per core).",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and the random batch.")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds after which a configuration is stopped and reported as failed.",
    )
    parser.add_argument(
        "--scripts-dir",
        type=Path,
        default=DEFAULT_SCRIPTS_DIR,
        help="directory of the bundle's scripts package that defines SwinEncoderClassifier.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="also write the Markdown table (with command line and date) to this file.",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one config as JSON
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- child side


def _status_kib(field: str) -> int | None:
    """A memory field (e.g. VmRSS, VmHWM) of this process from /proc/self/status, in KiB; None if unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process so far."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _current_rss_bytes() -> int:
    rss = _status_kib("VmRSS")
    return rss * 1024 if rss is not None else _peak_rss_bytes()


def import_networks(scripts_dir: Path) -> ModuleType:
    """Import ``networks`` of the bundle's scripts package by file path under a private package name."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE_NAME, scripts_dir / "__init__.py", submodule_search_locations=[str(scripts_dir)]
    )
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no scripts package at {scripts_dir}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE_NAME}.networks")


def run_child(config: dict) -> dict:
    """Build the model, run the training step(s) and return the measurements of this process."""
    import torch

    if config["threads"] > 0:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    networks = import_networks(Path(config["scripts_dir"]))
    model = networks.SwinEncoderClassifier(
        in_channels=config["in_channels"],
        feature_size=config["feature_size"],
        use_checkpoint=config["use_checkpoint"],
        pooling=config["pooling"],
        head=config["head"],
    ).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = config["size"]
    x = torch.randn(config["batch_size"], config["in_channels"], size, size, size)
    y = torch.randint(0, 2, (config["batch_size"],))
    baseline = _current_rss_bytes()
    build_peak = _peak_rss_bytes()

    times = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)

    return {
        "params": sum(p.numel() for p in model.parameters()),
        "baseline_rss": baseline,
        "build_peak_rss": build_peak,
        "peak_rss": _peak_rss_bytes(),
        "step_seconds": sum(times) / len(times),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "loss": float(loss),
    }


# --------------------------------------------------------------------------- parent side


def configurations(args: argparse.Namespace) -> list[dict]:
    """All measured configurations, ordered by size, then feature size, then checkpointing."""
    return [
        {
            "feature_size": fs,
            "use_checkpoint": ckpt == "on",
            "size": size,
            "batch_size": args.batch_size,
            "in_channels": args.in_channels,
            "pooling": args.pooling,
            "head": args.head,
            "steps": args.steps,
            "threads": args.threads,
            "seed": args.seed,
            "scripts_dir": str(args.scripts_dir.resolve()),
        }
        for size in args.sizes
        for fs in args.feature_sizes
        for ckpt in args.checkpointing
    ]


def measure(config: dict, timeout: float) -> dict:
    """Run one configuration in a fresh interpreter and return its measurements (or the failure)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**config, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return {**config, **json.loads(line[len(RESULT_MARKER) :])}
    tail = " | ".join(done.stderr.strip().splitlines()[-3:])
    return {**config, "error": f"exit code {done.returncode}: {tail}"}


def _mib(value: int) -> str:
    return f"{value / MIB:,.0f}"


def results_table(results: list[dict]) -> str:
    lines = [
        "| feature_size | checkpointing | input | params (M) | baseline RSS (MiB) | peak RSS (MiB) "
        "| peak - baseline (MiB) | step time (s) |",
        "|---:|:---:|:---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        size = f"{r['size']}^3"
        ckpt = "on" if r["use_checkpoint"] else "off"
        if "error" in r:
            lines.append(f"| {r['feature_size']} | {ckpt} | {size} | | | | | failed: {r['error']} |")
            continue
        lines.append(
            f"| {r['feature_size']} | {ckpt} | {size} | {r['params'] / 1e6:.2f} | {_mib(r['baseline_rss'])} "
            f"| {_mib(r['peak_rss'])} | {_mib(r['peak_rss'] - r['baseline_rss'])} | {r['step_seconds']:.2f} |"
        )
    return "\n".join(lines)


def ratios_table(results: list[dict]) -> str:
    """Checkpointing on / off ratios for every (feature_size, size) measured both ways."""
    by_key = {(r["feature_size"], r["size"], r["use_checkpoint"]): r for r in results if "error" not in r}
    lines = [
        "| feature_size | input | peak RSS on/off | (peak - baseline) on/off | step time on/off |",
        "|---:|:---:|---:|---:|---:|",
    ]
    for fs, size, ckpt in by_key:
        if ckpt or (fs, size, True) not in by_key:
            continue
        off, on = by_key[(fs, size, False)], by_key[(fs, size, True)]
        step_off = off["peak_rss"] - off["baseline_rss"]
        step_on = on["peak_rss"] - on["baseline_rss"]
        lines.append(
            f"| {fs} | {size}^3 | {on['peak_rss'] / off['peak_rss']:.2f} "
            f"| {step_on / step_off:.2f} | {on['step_seconds'] / off['step_seconds']:.2f} |"
        )
    return "\n".join(lines)


def report(results: list[dict], args: argparse.Namespace, command: str) -> str:
    measured = next((r for r in results if "error" not in r), {})
    header = [
        f"Command: `{command}`",
        "",
        f"Date: {dt.date.today().isoformat()}; host: {platform.machine()}, {os.cpu_count()} CPU cores; "
        f"torch {measured.get('torch', '?')} with {measured.get('threads', '?')} threads; "
        f"batch {args.batch_size} x {args.in_channels} channels, float32; pooling {args.pooling}, "
        f"head {args.head}; {args.steps} step(s) per configuration, each in a fresh process.",
        "",
        "Baseline = resident memory after imports, model, AdamW and the batch exist; peak = highest resident "
        "memory of the process (VmHWM) during the step(s).",
        "",
    ]
    return "\n".join([*header, results_table(results), "", ratios_table(results), ""])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(RESULT_MARKER + json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0

    command = shlex.join(["python", os.path.relpath(__file__, Path.cwd()), *(sys.argv[1:] if argv is None else argv)])
    results = []
    for config in configurations(args):
        label = f"feature_size={config['feature_size']} checkpointing={config['use_checkpoint']} size={config['size']}"
        print(f"measuring {label} ...", file=sys.stderr, flush=True)
        result = measure(config, args.timeout)
        if "error" in result:
            print(f"  failed: {result['error']}", file=sys.stderr, flush=True)
        else:
            print(
                f"  peak {_mib(result['peak_rss'])} MiB, baseline {_mib(result['baseline_rss'])} MiB, "
                f"{result['step_seconds']:.2f} s/step",
                file=sys.stderr,
                flush=True,
            )
        results.append(result)

    text = report(results, args, command)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
