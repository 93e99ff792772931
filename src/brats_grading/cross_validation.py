"""Pool a cross-validation: per-fold table, mean +- std, out-of-fold predictions, pooled AUC and ROC.

Everything here is recomputed from the files each fold left behind (``fold_<k>/fold_result.json`` and the
evaluation's ``predictions/val_predictions.csv``), so a summary can be rebuilt at any time and checked.
A fold whose scored cases also chose its model (``selection_ids``) makes the summary *in-sample*, and it
says so; the figures the selection cases gave the chosen model are kept beside the scored ones, so the
optimism of in-sample selection stays visible.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from brats_grading.components.checkpoints import stored_metrics
from brats_grading.components.data import GRADE_TO_LABEL, DatasetError
from brats_grading.components.metrics import metrics_at_grades
from brats_grading.components.out_of_fold import check_out_of_fold, write_out_of_fold
from brats_grading.components.outputs import write_json
from brats_grading.components.plots import plot_roc_curves

__all__ = [
    "FOLD_RESULT",
    "REFERENCE",
    "SELECTION_METRICS",
    "SUMMARY_METRICS",
    "check_selection_free",
    "fold_dir",
    "mean_std",
    "read_fold_results",
    "summarize",
]

FOLD_RESULT = "fold_result.json"
#: per-fold metrics summarised as mean +- std (from each evaluation's metrics.json "final")
SUMMARY_METRICS: tuple[str, ...] = (
    "auc",
    "f1",
    "balanced_accuracy",
    "accuracy",
    "sensitivity",
    "specificity",
    "ece",
    "threshold",
    "temperature",
)
#: what the selection cases said of the model they chose (from each fold's evaluation), shown beside the scored
SELECTION_METRICS: tuple[str, ...] = ("num_cases", "auc", "balanced_accuracy")
#: the seeds' own 5-fold figures on real BraTS 2018, printed beside synthetic results for reference only
REFERENCE: dict[str, str] = {
    "resnet50_3d_ldam": "ResNet50-3D on BraTS 2018 (5-fold CV): AUC 0.8794 ± 0.0436, F1 0.7619 ± 0.0677",
    "swin_unetr_cls": "Swin UNETR on BraTS 2018: target AUC 0.85-0.90 (no measured figure in the seeds)",
}


def fold_dir(cv_dir: str | Path, fold: int) -> Path:
    return Path(cv_dir) / f"fold_{fold}"


def read_fold_results(cv_dir: str | Path) -> list[dict]:
    """Every finished fold's ``fold_result.json``, by fold."""
    results = [json.loads(p.read_text()) for p in Path(cv_dir).glob(f"fold_*/{FOLD_RESULT}")]
    return sorted(results, key=lambda r: r["fold"])


def _fold_predictions(result: dict) -> list[dict]:
    path = Path(result["eval_dir"]) / "predictions" / "val_predictions.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {
            "id": r["id"],
            "fold": result["fold"],
            "label": GRADE_TO_LABEL[r["true_grade"]],
            "prob_hgg": float(r["prob_hgg"]),
            "logit": float(r["logit"]),
            "threshold": float(result["metrics"]["threshold"]),
            "predicted": GRADE_TO_LABEL[r["predicted_grade"]],
        }
        for r in rows
    ]


def check_selection_free(results: list[dict], source: str) -> bool:
    """True when no fold scored a case that chose its model; raises when a selection-free fold did.

    A fold that selected on its own validation cases (``selection_fraction`` 0) is in-sample by design and
    returns False; a fold that names separate selection cases must not have scored any of them.
    """
    selection_free = True
    for result in results:
        selection, scored = result.get("selection_ids"), result.get("scored_ids")
        if selection is None or scored is None or set(selection) == set(scored):
            selection_free = False
            continue
        shared = sorted(set(selection) & set(scored))
        if shared:
            raise DatasetError(
                f"{source}: fold {result['fold']} scored {len(shared)} case(s) that chose its model (e.g. "
                f"'{shared[0]}'); expected its selection_ids and scored cases to be disjoint"
            )
    return selection_free


def _model_epoch(result: dict) -> int | None:
    """The training epoch of the fold's selected checkpoint (the evaluation's own epoch counter is always 1)."""
    checkpoint = Path(result["checkpoint"])
    return stored_metrics(checkpoint).get("epoch") if checkpoint.is_file() else None


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation over folds (as the seeds report theirs), ignoring missing values."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0}


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _markdown(summary: dict) -> str:
    folds = summary["folds"]
    header = ["fold", "cases", "model epoch", *SUMMARY_METRICS, "minutes"]
    lines = [
        f"# Cross-validation of `{summary['bundle']}`: {len(folds)} folds, {summary['pooled']['num_cases']} cases",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for fold in folds:
        cells = [str(fold["fold"]), str(fold["num_cases"]), str(fold["epoch"])]
        cells += [_fmt(fold["metrics"].get(m)) for m in SUMMARY_METRICS]
        lines.append("| " + " | ".join([*cells, f"{fold['seconds'] / 60:.1f}"]) + " |")
    stats = summary["mean_std"]
    cells = [f"{_fmt(stats[m]['mean'])} ± {_fmt(stats[m]['std'])}" for m in SUMMARY_METRICS]
    lines.append("| mean ± std | | | " + " | ".join(cells) + " | |")
    pooled = summary["pooled"]
    low, high = pooled["auc_95ci"]
    if summary["selection_free"]:
        kind = (
            "each predicted once by a fold model that never trained on it, and chose nothing about it: not its "
            "epoch, temperature or threshold (selection-free)"
        )
    else:
        kind = (
            "each predicted once by a fold model that never trained on it, but **in-sample**: the same cases chose "
            "that model's epoch, temperature and threshold, which flatters every figure here"
        )
    selection = summary["selection_mean_std"]
    lines += [
        "",
        f"Pooled out-of-fold ({pooled['num_cases']} cases, {kind}): **AUC {_fmt(pooled['auc'])}** (bootstrap "
        f"95 % CI {_fmt(low, 3)}-{_fmt(high, 3)}); at each fold's own threshold: F1 {_fmt(pooled['f1'])}, "
        f"balanced accuracy {_fmt(pooled['balanced_accuracy'])}, sensitivity {_fmt(pooled['sensitivity'])}, "
        f"specificity {_fmt(pooled['specificity'])}.",
        "",
        f"On the cases that chose each fold's model (in-sample, mean ± std over folds of "
        f"{_fmt(selection['num_cases']['mean'], 1)} cases): AUC {_fmt(selection['auc']['mean'])} ± "
        f"{_fmt(selection['auc']['std'])}, balanced accuracy {_fmt(selection['balanced_accuracy']['mean'])} ± "
        f"{_fmt(selection['balanced_accuracy']['std'])}, against {_fmt(summary['mean_std']['auc']['mean'])} and "
        f"{_fmt(summary['mean_std']['balanced_accuracy']['mean'])} on the scored cases.",
        "",
        f"Wall time: {summary['seconds'] / 60:.1f} min of training and evaluation.",
    ]
    if summary.get("reference"):
        lines += ["", f"For reference only (real data, not comparable with synthetic data): {summary['reference']}."]
    lines += ["", "Fold models:", ""] + [f"- fold {f['fold']}: `{f['checkpoint']}`" for f in folds]
    return "\n".join(lines) + "\n"


def summarize(cv_dir: str | Path, bundle: str | None = None) -> dict:
    """Write ``cv_summary.json``/``.md``, ``oof_predictions.csv`` and ``plots/roc_pooled.png`` from the fold files.

    Raises when a case is predicted twice, when a case of a finished fold has no prediction, when a
    prediction comes from a model that trained on its case, or when a fold scored a case that chose it.
    """
    cv_dir = Path(cv_dir).resolve()
    results = read_fold_results(cv_dir)
    if not results:
        raise DatasetError(f"{cv_dir}: no finished fold (fold_*/{FOLD_RESULT}); run the folds first")
    bundle = bundle or results[0]["bundle"]
    rows = [row for result in results for row in _fold_predictions(result)]
    datalist = json.loads(Path(results[0]["datalist"]).read_text())
    case_folds = {r["id"]: int(r["fold"]) for r in datalist["training"]}
    check_out_of_fold(rows, case_folds, source=str(cv_dir))
    selection_free = check_selection_free(results, str(cv_dir))
    labels = [r["label"] for r in rows]
    probs = [r["prob_hgg"] for r in rows]
    pooled = metrics_at_grades(labels, probs, [r["predicted"] for r in rows])
    folds = [
        {
            "fold": r["fold"],
            "num_cases": r["metrics"].get("num_cases"),
            "epoch": _model_epoch(r),
            "metrics": {m: r["metrics"].get(m) for m in SUMMARY_METRICS},
            "selection": {m: (r.get("selection") or {}).get(m) for m in SELECTION_METRICS},
            "checkpoint": r["checkpoint"],
            "run_dir": r["run_dir"],
            "eval_dir": r["eval_dir"],
            "seconds": r["seconds"],
        }
        for r in results
    ]
    summary = {
        "bundle": bundle,
        "folds": folds,
        "selection_free": selection_free,
        "mean_std": {m: mean_std([f["metrics"][m] for f in folds]) for m in SUMMARY_METRICS},
        "selection_mean_std": {m: mean_std([f["selection"][m] for f in folds]) for m in SELECTION_METRICS},
        "pooled": pooled,
        "seconds": float(sum(r["seconds"] for r in results)),
        "reference": REFERENCE.get(bundle),
        "fold_models": [f["checkpoint"] for f in folds],
        "oof_predictions": str(cv_dir / "oof_predictions.csv"),
    }
    write_out_of_fold(cv_dir / "oof_predictions.csv", rows)
    curves = {f"fold {r['fold']}": ([], []) for r in results}
    for row in rows:
        curves[f"fold {row['fold']}"][0].append(row["label"])
        curves[f"fold {row['fold']}"][1].append(row["prob_hgg"])
    curves["pooled"] = (labels, probs)
    plot_roc_curves(curves, cv_dir / "plots" / "roc_pooled.png", f"{bundle}: out-of-fold ROC")
    write_json(cv_dir / "cv_summary.json", summary)
    (cv_dir / "cv_summary.md").write_text(_markdown(summary))
    return summary
