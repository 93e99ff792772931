#!/usr/bin/env python
"""Cross-validate a bundle: train and evaluate folds 0..k-1 with ``python -m monai.bundle run``, then pool them.

    python scripts/cross_validate.py run resnet50_3d_ldam --dataset_dir DATA --output_dir runs/cv/resnet \\
        --recipe cpu --epochs 12
    python scripts/cross_validate.py summarize runs/cv/resnet
    python scripts/cross_validate.py held_out runs/cv/resnet --dataset_dir HELD_OUT_DATA --name seed1000

Each fold's model is chosen (epoch, raw vs EMA, temperature, threshold) on a stratified quarter of its
training cases (``--selection_fraction 0.25``); its validation fold chose nothing and is scored once, so
the pooled out-of-fold figures are selection-free. ``--selection_fraction 0`` selects on the validation
fold as a plain bundle run does, and the summary labels its figures in-sample.

Every other ``--key value`` is passed to the bundle's train and evaluate configs unchanged (``--layout``,
``--spatial_size [64,64,64]``, ``--num_workers``...). One call fills one CV folder: ``fold_<k>/`` holds the
bundle's run and evaluation folders, the logs of both commands and ``fold_result.json`` once the fold is
finished. Calling again skips finished folds, resumes an interrupted training from its ``last.pt`` and
retrains a fold whose folder was deleted. The summary (``cv_summary.json`` / ``.md``,
``oof_predictions.csv``, ``plots/roc_pooled.png``) is rebuilt from the fold files each time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fire

from brats_grading.components.checkpoints import best_checkpoint
from brats_grading.cross_validation import FOLD_RESULT, fold_dir, read_fold_results, summarize
from brats_grading.held_out import summarize_held_out
from brats_grading.recipes import MALLOC_SETTINGS, RECIPES, cli_args

REPO = Path(__file__).resolve().parents[1]
TRAIN_DONE = "train_done.json"
#: overrides the runner sets itself, per fold
#: share of each fold's training cases held out to choose its model: one fold's worth of cases (a quarter of
#: the other four folds), so selection rests on as many cases as scoring does, at the cost of a quarter of
#: the training cases
SELECTION_FRACTION = 0.25
RUNNER_KEYS = ("dataset_dir", "output_dir", "fold", "publish_model", "resume", "checkpoint")


def _bundle_dir(bundle: str) -> Path:
    path = Path(bundle)
    if not (path / "configs" / "train.json").is_file():
        path = REPO / "bundles" / bundle
    if not (path / "configs" / "train.json").is_file():
        raise SystemExit(f"bundle '{bundle}': no configs/train.json there or under {REPO / 'bundles'}")
    return path.resolve()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def _bundle_command(bundle_dir: Path, configs: list[str], args: list[str], log: Path) -> None:
    """Run one bundle command with its output appended to ``log``; on failure, stop with the log's tail."""
    config = "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        config,
        "--logging_file",
        "configs/logging.conf",
    ]
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(cmd + args)}\n")
        handle.flush()
        result = subprocess.run(
            cmd + args, cwd=bundle_dir, stdout=handle, stderr=subprocess.STDOUT, env={**MALLOC_SETTINGS, **os.environ}
        )
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{' '.join(configs)} failed (exit {result.returncode}); log {log}:\n{tail}")


def _train(bundle_dir: Path, folder: Path, common: list[str], overrides: dict) -> str:
    """Train one fold (resuming from its newest ``last.pt`` when there is one); return its run folder."""
    done = folder / TRAIN_DONE
    if done.is_file():
        return json.loads(done.read_text())["run_dir"]
    resume = any(folder.glob("run_*/checkpoints/last.pt"))
    if resume:
        print(f"  resuming training from {sorted(folder.glob('run_*/checkpoints/last.pt'))[-1]}", flush=True)
    before = set(folder.glob("run_*"))
    _bundle_command(
        bundle_dir, ["train.json"], [*common, *cli_args({**overrides, "resume": resume})], folder / "train.log"
    )
    runs = sorted(set(folder.glob("run_*")) - before) or sorted(folder.glob("run_*"), key=lambda p: p.stat().st_mtime)
    run_dir = str(runs[-1])
    done.write_text(json.dumps({"run_dir": run_dir}) + "\n")
    return run_dir


def _evaluate(
    bundle_dir: Path, folder: Path, fold: int, common: list[str], overrides: dict, prefer_ema: bool
) -> tuple[str, str]:
    """Evaluate the fold's selected checkpoint; return (checkpoint, evaluation folder)."""
    checkpoint = best_checkpoint(folder.parent, fold, prefer_ema)
    before = set(folder.glob("eval_*"))
    args = [*common, *cli_args({**overrides, "checkpoint": checkpoint})]
    _bundle_command(bundle_dir, ["train.json", "evaluate.json"], args, folder / "evaluate.log")
    return checkpoint, str(sorted(set(folder.glob("eval_*")) - before)[-1])


def run(
    bundle: str,
    dataset_dir: str,
    output_dir: str | None = None,
    folds: int = 5,
    recipe: str | None = None,
    epochs: int | None = None,
    selection_fraction: float = SELECTION_FRACTION,
    **overrides,
) -> dict:
    """Train and evaluate folds ``0..folds-1`` of ``bundle`` on ``dataset_dir/datalist.json``; return the summary.

    Args:
        bundle: a bundle folder, or the name of one under ``bundles/``.
        dataset_dir: dataset root holding ``datalist.json`` (``scripts/make_datalist.py`` writes it).
        output_dir: the CV folder (default ``runs/cv/<bundle>``); reuse it to resume.
        folds: number of folds to run (the datalist must have them).
        recipe: ``cpu`` applies the bundle's CPU recipe (``brats_grading.recipes``) before ``overrides``.
        epochs: training epochs (with the recipe, also its early-stopping floor and re-weighting start).
        selection_fraction: share of each fold's training cases that chooses its model; 0 chooses on the
            validation fold itself (in-sample figures).
        overrides: any other ``--key value`` of the bundle's configs.
    """
    bundle_dir = _bundle_dir(bundle)
    taken = sorted(set(overrides) & set(RUNNER_KEYS))
    if taken:
        raise SystemExit(f"--{', --'.join(taken)}: set by the runner for every fold; remove them")
    datalist = Path(dataset_dir).resolve() / "datalist.json"
    if not datalist.is_file():
        raise SystemExit(f"{datalist} does not exist; write it with scripts/make_datalist.py {dataset_dir}")
    available = sorted({int(r["fold"]) for r in json.loads(datalist.read_text())["training"]})
    if list(range(folds)) != available[:folds]:
        raise SystemExit(f"{datalist}: asked for {folds} folds, the datalist has folds {available}")
    if recipe not in (None, "cpu"):
        raise SystemExit(f"--recipe must be 'cpu' or left out, got {recipe!r}")
    settings: dict = RECIPES[bundle_dir.name].training(epochs) if recipe else {}
    if epochs and not recipe:
        settings["epochs"] = epochs
    settings["selection_fraction"] = selection_fraction
    settings.update(overrides)
    cv_dir = Path(output_dir or REPO / "runs" / "cv" / bundle_dir.name).resolve()
    cv_dir.mkdir(parents=True, exist_ok=True)
    common = cli_args({"dataset_dir": str(datalist.parent), "output_dir": str(cv_dir), "publish_model": False})
    prefer_ema = bool(settings.get("use_ema", True))
    start, spent = time.time(), []
    for fold in range(folds):
        folder = fold_dir(cv_dir, fold)
        if (folder / FOLD_RESULT).is_file():
            print(f"fold {fold + 1}/{folds}: finished before, skipped", flush=True)
            continue
        folder.mkdir(exist_ok=True)
        fold_start = time.time()
        fold_args = [*common, "--fold", str(fold)]
        run_dir = _train(bundle_dir, folder, fold_args, settings)
        checkpoint, eval_dir = _evaluate(bundle_dir, folder, fold, fold_args, settings, prefer_ema)
        evaluation = json.loads((Path(eval_dir) / "metrics" / "metrics.json").read_text())
        metrics, cases = evaluation["final"], evaluation["cases"]
        seconds = time.time() - fold_start
        result = {"fold": fold, "bundle": bundle_dir.name, "bundle_dir": str(bundle_dir), "datalist": str(datalist), "run_dir": run_dir,
                  "eval_dir": eval_dir, "checkpoint": checkpoint, "metrics": metrics, "selection": cases["selection"],
                  "selection_ids": cases["selection_ids"], "scored_ids": cases["scored_ids"], "seconds": seconds,
                  "overrides": settings}  # fmt: skip
        (folder / FOLD_RESULT).write_text(json.dumps(result, indent=2) + "\n")
        spent.append(seconds)
        left = sum(1 for k in range(fold + 1, folds) if not (fold_dir(cv_dir, k) / FOLD_RESULT).is_file())
        print(
            f"fold {fold + 1}/{folds}: AUC {metrics['auc']} in {_duration(seconds)}; elapsed "
            f"{_duration(time.time() - start)}, about {_duration(left * sum(spent) / len(spent))} remaining",
            flush=True,
        )
    summary = summarize(cv_dir, bundle_dir.name)
    pooled = summary["pooled"]
    print(f"pooled out-of-fold AUC {pooled['auc']:.4f} (95 % CI {pooled['auc_95ci'][0]:.3f}-"
          f"{pooled['auc_95ci'][1]:.3f}) over {pooled['num_cases']} cases; summary in {cv_dir / 'cv_summary.md'}")  # fmt: skip
    return summary


def held_out(
    cv_dir: str, dataset_dir: str, name: str = "held_out", compare_with: str | None = None, **overrides
) -> dict:
    """Score every fold model and their average on labelled cases none of them saw (``dataset_dir/datalist.json``).

    Each fold model runs ``inference.json`` with the overrides it was trained with (those inference takes);
    the predictions go to ``<cv_dir>/held_out/<name>/fold_<k>.csv`` (kept: a second call only scores) and
    the summary to ``<cv_dir>/held_out_<name>.json`` / ``.md``. ``compare_with`` names an earlier held-out
    set of the same cases (the other site of one seed) for a paired AUC difference.
    """
    cv_dir = Path(cv_dir).resolve()
    datalist = Path(dataset_dir).resolve() / "datalist.json"
    if not datalist.is_file():
        raise SystemExit(f"{datalist} does not exist; write it with scripts/make_datalist.py {dataset_dir}")
    results = read_fold_results(cv_dir)
    if not results:
        raise SystemExit(f"{cv_dir}: no finished fold (fold_*/{FOLD_RESULT}); run the folds first")
    out = cv_dir / "held_out" / name
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for result in results:
        target = out / f"fold_{result['fold']}.csv"
        if not target.is_file():  # kept predictions are only scored: the bundle folder need not exist any more
            bundle_dir = Path(result["bundle_dir"])
            accepted = set(json.loads((bundle_dir / "configs" / "inference.json").read_text()))
            settings = {k: v for k, v in {**result.get("overrides", {}), **overrides}.items() if k in accepted}
            args = cli_args({**settings, "input": str(datalist), "output_file": str(target),
                             "checkpoint": result["checkpoint"]})  # fmt: skip
            _bundle_command(bundle_dir, ["inference.json"], args, out / "inference.log")
        files[int(result["fold"])] = target
    thresholds = {int(r["fold"]): float(r["metrics"]["threshold"]) for r in results}
    summary = summarize_held_out(cv_dir, name, files, datalist, compare_with, thresholds)
    average = summary["fold_average"]
    print(f"held-out '{name}' ({summary['num_cases']} cases): fold models' AUC {summary['mean_std']['auc']['mean']:.4f} "
          f"± {summary['mean_std']['auc']['std']:.4f}, their average {average['auc']:.4f}; summary in "
          f"{cv_dir / f'held_out_{name}.md'}")  # fmt: skip
    return summary


def summarize_folder(cv_dir: str) -> None:
    """Rebuild a CV folder's summary from its fold files (e.g. after deleting a fold and re-running it)."""
    summary = summarize(cv_dir)
    print(f"pooled out-of-fold AUC {summary['pooled']['auc']:.4f}; summary in {Path(cv_dir) / 'cv_summary.md'}")


if __name__ == "__main__":
    fire.Fire({"run": run, "summarize": summarize_folder, "held_out": held_out}, serialize=lambda _: None)
