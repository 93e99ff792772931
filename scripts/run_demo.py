#!/usr/bin/env python
"""The quick-start job: synthetic BraTS data -> datalist -> train -> evaluate -> held-out inference, on CPU.

Every step is the command a user would type (the generator, make_datalist.py, and
``python -m monai.bundle run`` inside the bundle folder), so the demo doubles as a smoke test of the
documented commands. A quarter of the training cases (the selection cases) choose the epoch, temperature
and threshold; the validation fold chose nothing and is scored by evaluate.json. The model is then judged
on a separate synthetic set made from another seed (balanced, never seen in training or selection):
inference.json predicts it and the package's own metrics code scores the predictions at the stored threshold.
The defaults are the CPU demo recipe measured in docs/performance.md (about ten minutes on two cores);
the bundles' own defaults, meant for real data, are not changed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from brats_grading.components.checkpoints import best_checkpoint
from brats_grading.held_out import score_predictions
from brats_grading.recipes import MALLOC_SETTINGS, RECIPES, cli_args

REPO = Path(__file__).resolve().parents[1]
DATASET_DIRNAME = "MICCAI_BraTS_2018_Data_Training"


def step(title: str, cmd: list[str], cwd: Path = REPO) -> None:
    print(f"\n=== {title}\n$ {' '.join(cmd)}", flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=cwd, check=True, env={**MALLOC_SETTINGS, **os.environ})
    print(f"--- {title}: {time.time() - start:.0f} s", flush=True)


def make_dataset(python: str, folder: Path, hgg: int, lgg: int, seed: int, args: argparse.Namespace) -> Path:
    """Generate a synthetic set and its datalist unless ``folder`` already holds one."""
    dataset = folder / DATASET_DIRNAME
    if (dataset / "datalist.json").is_file():
        print(f"using existing data in {dataset}")
        return dataset
    step(
        f"synthetic data ({hgg} HGG + {lgg} LGG, seed {seed})",
        [python, "scripts/make_synthetic_brats.py", "--output-dir", str(folder), "--hgg", str(hgg), "--lgg", str(lgg),
         "--seed", str(seed), "--voxel-mm", str(args.voxel_mm), "--difficulty", str(args.difficulty)],
    )  # fmt: skip
    step("datalist", [python, "scripts/make_datalist.py", str(dataset)])
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "demo", help="where synthetic data goes")
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "demo", help="where run folders go")
    parser.add_argument("--bundle", default="resnet50_3d_ldam", choices=sorted(RECIPES), help="bundle to train")
    parser.add_argument("--hgg", type=int, default=88, help="synthetic HGG training cases (default: 88)")
    parser.add_argument("--lgg", type=int, default=32, help="synthetic LGG training cases (default: 32)")
    parser.add_argument("--held-out", type=int, default=20, help="held-out cases per grade (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training data (default: 0)")
    parser.add_argument("--held-out-seed", type=int, default=1000, help="seed of the held-out data (default: 1000)")
    parser.add_argument("--voxel-mm", type=float, default=3.0, help="voxel size of the synthetic data (default: 3)")
    parser.add_argument("--difficulty", type=float, default=0.5, help="grade overlap in [0, 1] (default: 0.5)")
    parser.add_argument(
        "--spatial-size", type=int, default=None, help="network input size per axis (default: the recipe's, 48 or 32)"
    )
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default: 12)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default: 0)")
    parser.add_argument(
        "--selection-fraction",
        type=float,
        default=0.25,
        help="share of the training cases that chooses the model; 0 chooses on the validation fold (default: 0.25)",
    )
    args = parser.parse_args(argv)
    if args.held_out_seed == args.seed:
        parser.error("--held-out-seed must differ from --seed: the held-out cases must be new")
    data_dir, output_dir = args.data_dir.resolve(), args.output_dir.resolve()  # bundle commands run in its folder
    python = sys.executable
    start = time.time()
    dataset = make_dataset(python, data_dir / "train", args.hgg, args.lgg, args.seed, args)
    held_out = make_dataset(python, data_dir / "held_out", args.held_out, args.held_out, args.held_out_seed, args)

    bundle = REPO / "bundles" / args.bundle
    recipe = RECIPES[args.bundle]
    shared = recipe.shared()
    if args.spatial_size:
        shared["spatial_size"] = [args.spatial_size] * 3
    common = cli_args(
        {
            "dataset_dir": str(dataset),
            "output_dir": str(output_dir),
            "fold": args.fold,
            "num_workers": 2,
            "selection_fraction": args.selection_fraction,
        }
    )
    run = [python, "-m", "monai.bundle", "run", "--logging_file", "configs/logging.conf"]
    runs_before = set((output_dir / f"fold_{args.fold}").glob("run_*"))
    training = cli_args({**recipe.training(args.epochs), **shared})
    step("train", [*run, "--config_file", "configs/train.json", *common, *training], bundle)
    step("evaluate", [*run, "--config_file", "['configs/train.json','configs/evaluate.json']", *common,
                      "--use_latest_run", "True", *cli_args(shared)], bundle)  # fmt: skip
    run_dir = sorted(set((output_dir / f"fold_{args.fold}").glob("run_*")) - runs_before)[-1]
    eval_dir = sorted((output_dir / f"fold_{args.fold}").glob("eval_*"), key=lambda p: p.stat().st_mtime)[-1]
    checkpoint = best_checkpoint(output_dir, args.fold)  # the run's model; the bundle's models/ stays as it was
    predictions = output_dir / "held_out_predictions" / "predictions.csv"
    step(
        "held-out inference",
        [*run, "--config_file", "configs/inference.json", "--input", str(held_out / "datalist.json"),
         "--output_file", str(predictions), "--checkpoint", checkpoint, "--num_workers", "2", *cli_args(shared)],
        bundle,
    )  # fmt: skip
    written = sorted(predictions.parent.glob("predictions*.csv"), key=lambda p: p.stat().st_mtime)[-1]

    final = json.loads((run_dir / "metrics" / "metrics.json").read_text())["final"]
    evaluation = json.loads((eval_dir / "metrics" / "metrics.json").read_text())
    scored, overlap = evaluation["final"], evaluation["cases"]["overlap"]
    held = score_predictions(written, held_out / "datalist.json")
    print(
        f"\nselection ({final['num_cases']} cases, {final['source']}, epoch {final['epoch']}): "
        f"AUC {final['auc']:.4f}, balanced accuracy {final['balanced_accuracy']:.4f}, "
        f"threshold {final['threshold']:.4g} ({final['threshold_rule']}), temperature {final['temperature']:.3g}"
    )
    kind = "in-sample: they also chose the model" if overlap else "selection-free"
    print(f"validation fold ({scored['num_cases']} cases, {kind}): AUC {scored['auc']:.4f}, "
          f"balanced accuracy {scored['balanced_accuracy']:.4f}")  # fmt: skip
    low, high = held["auc_95ci"]
    print(f"held-out ({held['num_cases']} new cases, seed {args.held_out_seed}): AUC {held['auc']:.4f} "
          f"(bootstrap 95 % CI {low:.3f}-{high:.3f}), "
          f"balanced accuracy {held['balanced_accuracy']:.4f}, sensitivity {held['sensitivity']:.4f}, "
          f"specificity {held['specificity']:.4f}")  # fmt: skip
    if held["collapsed"]:
        print(f"WARNING: the model collapsed on the held-out set: {held['collapse_reason']}")
    print(f"run folder: {run_dir}\nheld-out predictions: {written}\nwall time: {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
