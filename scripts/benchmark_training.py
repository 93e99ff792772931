#!/usr/bin/env python
"""Time and peak memory of ResNet50-3D training steps, configurations side by side in one run.

Each configuration (layout x precision x input size) runs in a fresh subprocess: it builds the
bundle's network and LDAM loss (imported from bundles/resnet50_3d_ldam/scripts by path), runs
warm-up steps, then times --steps training steps (forward + LDAM + backward + Adam step) and
reads its peak resident memory (VmHWM). The table ends with the ratios that decide defaults:
bfloat16 autocast / float32 time, and strided / medicalnet layout time.

Example:  .venv/bin/python scripts/benchmark_training.py --sizes 64 --steps 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "bundles" / "resnet50_3d_ldam" / "scripts"
MARK = "RESULT "

CHILD = r"""
import importlib.util, json, sys, time, torch
spec = importlib.util.spec_from_file_location("rb", "{scripts}/__init__.py", submodule_search_locations=["{scripts}"])
pkg = importlib.util.module_from_spec(spec); sys.modules["rb"] = pkg; spec.loader.exec_module(pkg)
import rb.networks, rb.losses
torch.manual_seed(0)
if {threads} > 0:
    torch.set_num_threads({threads})
net = rb.networks.MedicalNetResNet50(in_channels=4, layout="{layout}", normed_head=True)
loss_fn = rb.losses.LDAMLoss([60, 168])
opt = torch.optim.Adam(net.parameters(), lr=1e-4)
x = torch.randn({batch}, 4, {size}, {size}, {size}); y = torch.tensor([i % 2 for i in range({batch})])
dtype = {{"float32": None, "bfloat16": torch.bfloat16}}["{precision}"]
def step():
    opt.zero_grad()
    if dtype is None:
        loss = loss_fn(net(x), y)
    else:
        with torch.autocast("cpu", dtype=dtype):
            loss = loss_fn(net(x), y)
    loss.backward(); opt.step()
times = []
for i in range({warmup} + {steps}):
    t = time.perf_counter(); step(); dt = time.perf_counter() - t
    if i >= {warmup}:
        times.append(dt)
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print("{mark}" + json.dumps({{"times": times, "peak_mib": peak}}))
"""


def run_config(layout: str, precision: str, size: int, args: argparse.Namespace) -> dict:
    code = CHILD.format(
        scripts=SCRIPTS, layout=layout, precision=precision, size=size, batch=args.batch_size,
        warmup=args.warmup, steps=args.steps, threads=args.threads, mark=MARK,
    )  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{layout}/{precision}/{size} failed:\n{result.stderr[-2000:]}")
    data = json.loads(next(line for line in result.stdout.splitlines() if line.startswith(MARK))[len(MARK) :])
    return {
        "layout": layout,
        "precision": precision,
        "size": size,
        "median_s": statistics.median(data["times"]),
        **data,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", nargs="+", default=["medicalnet", "strided"], help="network layouts")
    parser.add_argument(
        "--precisions", nargs="+", default=["float32", "bfloat16"], help="float32 and/or bfloat16 autocast"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64], help="cubic input edge lengths")
    parser.add_argument("--batch-size", type=int, default=2, help="volumes per step (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (allocator, oneDNN kernels)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown table to this file")
    args = parser.parse_args(argv)

    rows = [run_config(lay, p, s, args) for s in args.sizes for lay in args.layouts for p in args.precisions]
    lines = [
        f"Command: `{' '.join(shlex.quote(a) for a in ['python', 'scripts/benchmark_training.py', *(argv or sys.argv[1:])])}`"
        f" ({dt.date.today()}, batch {args.batch_size}, {args.steps} timed steps)",
        "",
        "| layout | precision | input | median s/step | peak RSS MiB |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['layout']} | {r['precision']} | {r['size']}^3 | {r['median_s']:.2f} | {r['peak_mib']:.0f} |"
        for r in rows
    ]
    lines.append("")
    index = {(r["layout"], r["precision"], r["size"]): r["median_s"] for r in rows}
    for (layout, precision, size), t in index.items():
        if precision == "bfloat16" and (layout, "float32", size) in index:
            lines.append(f"- bfloat16 / float32 time, {layout} {size}^3: {t / index[(layout, 'float32', size)]:.2f}")
        if layout == "strided" and ("medicalnet", precision, size) in index:
            lines.append(
                f"- strided / medicalnet time, {precision} {size}^3: {t / index[('medicalnet', precision, size)]:.2f}"
            )
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
