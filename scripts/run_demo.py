#!/usr/bin/env python
"""The quick-start job: synthetic BraTS data -> datalist -> train -> evaluate -> infer, small and on CPU.

Every step is the command a user would type (the generator, make_datalist.py, and
`python -m monai.bundle run` inside the bundle folder), so the demo doubles as a smoke test of
the documented commands. Defaults finish in about ten minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def step(title: str, cmd: list[str], cwd: Path = REPO) -> None:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=cwd, check=True)
    print(f"--- {title}: {time.time() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, default=REPO / "data" / "demo", help="where the synthetic data goes"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=REPO / "runs" / "demo", help="where run folders go"
    )
    parser.add_argument(
        "--bundle", default="resnet50_3d_ldam", help="bundle to train (default: resnet50_3d_ldam)"
    )
    parser.add_argument("--hgg", type=int, default=28, help="synthetic HGG cases (default: 28)")
    parser.add_argument("--lgg", type=int, default=12, help="synthetic LGG cases (default: 12)")
    parser.add_argument(
        "--voxel-mm", type=float, default=2.0, help="voxel size of the synthetic data (default: 2.0)"
    )
    parser.add_argument(
        "--difficulty", type=float, default=0.5, help="synthetic grade overlap in [0, 1] (default: 0.5)"
    )
    parser.add_argument(
        "--spatial-size", type=int, default=64, help="network input size per axis (default: 64)"
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default: 0)")
    args = parser.parse_args(argv)
    # the bundle commands run inside the bundle folder: hand them absolute paths
    args.data_dir, args.output_dir = args.data_dir.resolve(), args.output_dir.resolve()

    python = sys.executable
    dataset = args.data_dir / "MICCAI_BraTS_2018_Data_Training"
    if not (dataset / "datalist.json").is_file():
        step(
            "synthetic data",
            [python, "scripts/make_synthetic_brats.py", "--output-dir", str(args.data_dir), "--hgg", str(args.hgg),
             "--lgg", str(args.lgg), "--voxel-mm", str(args.voxel_mm), "--difficulty", str(args.difficulty)],
        )  # fmt: skip
        step("datalist", [python, "scripts/make_datalist.py", str(dataset)])
    else:
        print(f"using existing data in {dataset}")

    bundle = REPO / "bundles" / args.bundle
    common = ["--dataset_dir", str(dataset), "--output_dir", str(args.output_dir), "--fold", str(args.fold),
              "--spatial_size", f"[{args.spatial_size},{args.spatial_size},{args.spatial_size}]", "--num_workers", "2"]  # fmt: skip
    run = [python, "-m", "monai.bundle", "run", "--logging_file", "configs/logging.conf"]
    runs_before = set((args.output_dir / f"fold_{args.fold}").glob("run_*"))
    step(
        "train",
        [*run, "--config_file", "configs/train.json", *common, "--epochs", str(args.epochs), "--batch_size", "4",
         "--early_stop_min_epochs", str(args.epochs), "--drw_start_epoch", str(max(2, args.epochs // 2))],
        cwd=bundle,
    )  # fmt: skip
    step(
        "evaluate",
        [*run, "--config_file", "['configs/train.json','configs/evaluate.json']", *common],
        cwd=bundle,
    )
    predictions = args.output_dir / "predictions"
    step(
        "infer",
        [*run, "--config_file", "configs/inference.json", "--dataset_dir", str(dataset), "--output_dir", str(predictions),
         "--spatial_size", f"[{args.spatial_size},{args.spatial_size},{args.spatial_size}]", "--num_workers", "2"],
        cwd=bundle,
    )  # fmt: skip

    run_dir = sorted(set((args.output_dir / f"fold_{args.fold}").glob("run_*")) - runs_before)[-1]
    final = json.loads((run_dir / "metrics" / "metrics.json").read_text())["final"]
    print(f"\nvalidation AUC ({final['source']}, epoch {final['epoch']}): {final['auc']:.4f}")
    print(f"run folder: {run_dir}")
    print(f"predictions: {sorted(predictions.glob('predictions*.csv'))[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
