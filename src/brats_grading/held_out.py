"""Score a cross-validation's fold models on labelled cases none of them saw: the check on its figures.

The pooled out-of-fold AUC estimates how well a model trained by the recipe grades new cases. A held-out
set from another seed (or another acquisition site) tests that estimate: each fold model predicts it
(``inference.json``, at its stored temperature and threshold), and the summary gives every fold model's
figures, their mean +- std (the estimate the out-of-fold AUC should match), and the average of the fold
models (what ``ensemble`` with this CV as its one member would give). Two held-out sets of the same
patients (``--site reference`` and ``--site shifted`` with one seed) are compared paired: the AUC drop
under the change of site with its bootstrap interval.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from brats_grading.components.calibration import calibrated_probs, expected_calibration_error
from brats_grading.components.data import GRADE_TO_LABEL, DatasetError
from brats_grading.components.metrics import (
    auc_bootstrap_interval,
    classification_metrics,
    metrics_at_grades,
    paired_auc_difference,
)
from brats_grading.components.outputs import write_json
from brats_grading.cross_validation import mean_std

__all__ = ["held_out_markdown", "read_predictions", "score_predictions", "summarize_held_out"]

FOLD_FIGURES: tuple[str, ...] = ("auc", "balanced_accuracy", "sensitivity", "specificity", "ece")


def read_predictions(predictions: str | Path, datalist: str | Path, threshold: float | None = None) -> dict:
    """An inference CSV joined with the datalist's labels: ids, labels, probs, raw probs, grades, threshold.

    ``threshold``: the model's stored threshold; without it, the lowest P(HGG) the CSV called HGG stands in
    (it grades the CSV's cases alike, but can sit above the stored value).
    """
    truth = {r["id"]: r["label"] for r in json.loads(Path(datalist).read_text())["training"]}
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    unknown = [r["id"] for r in rows if r["id"] not in truth]
    if unknown:
        raise DatasetError(f"{predictions}: case {unknown[0]!r} is not in {datalist}")
    grades = [GRADE_TO_LABEL[r["predicted_grade"]] for r in rows]
    probs = [float(r["prob_hgg"]) for r in rows]
    called = [p for p, g in zip(probs, grades, strict=True) if g == 1]  # the threshold the CSV used
    return {
        "ids": [r["id"] for r in rows],
        "labels": [truth[r["id"]] for r in rows],
        "probs": probs,
        "raw_probs": calibrated_probs(
            [float(r["logit"]) for r in rows], 1.0
        ).tolist(),  # the collapse check reads these
        "grades": grades,
        "threshold": threshold if threshold is not None else (min(called) if called else 1.0 + 1e-9),
    }


def score_predictions(predictions: str | Path, datalist: str | Path) -> dict:
    """The package's metrics of one inference CSV at the threshold it was written with."""
    table = read_predictions(predictions, datalist)
    metrics = classification_metrics(table["labels"], table["probs"], table["threshold"], raw_probs=table["raw_probs"])
    metrics["auc_95ci"] = auc_bootstrap_interval(table["labels"], table["probs"])
    return metrics


def _fold_average(tables: list[dict]) -> dict:
    """The fold models' mean P(HGG) per case, graded at the median of their thresholds."""
    ids = tables[0]["ids"]
    for table in tables[1:]:
        if sorted(table["ids"]) != sorted(ids):
            raise DatasetError("the fold models' held-out predictions cover different cases; rerun the missing ones")
    probs = np.mean([[dict(zip(t["ids"], t["probs"], strict=True))[c] for c in ids] for t in tables], axis=0)
    threshold = float(np.median([t["threshold"] for t in tables]))
    labels = tables[0]["labels"]
    return {"ids": ids, "labels": labels, "probs": probs.tolist(), "threshold": threshold}


def summarize_held_out(
    cv_dir: str | Path,
    name: str,
    fold_files: dict[int, Path],
    datalist: str | Path,
    compare_with: str | None = None,
    thresholds: dict[int, float] | None = None,
) -> dict:
    """Write ``held_out_<name>.json`` / ``.md`` in ``cv_dir`` from the fold models' prediction CSVs.

    ``compare_with`` names an earlier held-out summary of this CV on the same cases (another site of the
    same patients): the fold average's AUC is then compared with it, paired. ``thresholds``: each fold
    model's stored threshold (default: the lowest P(HGG) its CSV called HGG).
    """
    cv_dir = Path(cv_dir)
    thresholds = thresholds or {}
    tables = {fold: read_predictions(path, datalist, thresholds.get(fold)) for fold, path in sorted(fold_files.items())}
    folds = {}
    for fold, table in tables.items():
        metrics = classification_metrics(
            table["labels"], table["probs"], table["threshold"], raw_probs=table["raw_probs"]
        )
        metrics["ece"] = expected_calibration_error(table["labels"], table["probs"])  # fitted on other cases
        folds[fold] = {m: metrics.get(m) for m in FOLD_FIGURES} | {"threshold": table["threshold"]}
        folds[fold]["collapsed"] = metrics["collapsed"]
    average = _fold_average(list(tables.values()))
    grades = (np.asarray(average["probs"]) >= average["threshold"]).astype(int)
    summary = {
        "name": name,
        "datalist": str(datalist),
        "num_cases": len(average["ids"]),
        "num_hgg": int(sum(average["labels"])),
        "folds": folds,
        "mean_std": {m: mean_std([f[m] for f in folds.values()]) for m in FOLD_FIGURES},
        "fold_average": metrics_at_grades(average["labels"], average["probs"], grades.tolist())
        | {"threshold": average["threshold"]},
        "case_probs": dict(zip(average["ids"], average["probs"], strict=True)),
    }
    if compare_with:
        summary["versus"] = _paired_versus(cv_dir, compare_with, average)
    write_json(cv_dir / f"held_out_{name}.json", summary)
    (cv_dir / f"held_out_{name}.md").write_text(held_out_markdown(summary, _pooled(cv_dir)))
    return summary


def _pooled(cv_dir: Path) -> dict | None:
    path = cv_dir / "cv_summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _paired_versus(cv_dir: Path, other: str, average: dict) -> dict:
    path = cv_dir / f"held_out_{other}.json"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: score the held-out set '{other}' first")
    theirs = json.loads(path.read_text())["case_probs"]
    if sorted(theirs) != sorted(average["ids"]):
        raise DatasetError(
            f"held-out sets '{other}' and this one hold different cases: a paired comparison needs the same"
        )
    paired = paired_auc_difference(average["labels"], average["probs"], [theirs[c] for c in average["ids"]])
    return {"other": other, **paired}


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def held_out_markdown(summary: dict, cv_summary: dict | None = None) -> str:
    """The held-out table: each fold model, their mean +- std, the fold average, the paired comparison."""
    n, hgg = summary["num_cases"], summary["num_hgg"]
    lines = [
        f"# Held-out set `{summary['name']}`: {n} cases ({hgg} HGG / {n - hgg} LGG) no fold model saw",
        "",
        "| fold model | AUC | balanced accuracy | sensitivity | specificity | ECE | threshold |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fold, f in summary["folds"].items():
        cells = [_fmt(f[m]) for m in FOLD_FIGURES] + [_fmt(f["threshold"])]
        lines.append(f"| {fold}{' (collapsed)' if f['collapsed'] else ''} | " + " | ".join(cells) + " |")
    stats = summary["mean_std"]
    lines.append(
        "| mean ± std | "
        + " | ".join(f"{_fmt(stats[m]['mean'])} ± {_fmt(stats[m]['std'])}" for m in FOLD_FIGURES)
        + " | |"
    )
    average = summary["fold_average"]
    low, high = average["auc_95ci"]
    lines += [
        "",
        f"Average of the fold models: AUC {_fmt(average['auc'])} (bootstrap 95 % CI {_fmt(low)}-{_fmt(high)}), "
        f"balanced accuracy {_fmt(average['balanced_accuracy'])} at the median fold threshold "
        f"{_fmt(average['threshold'])}.",
    ]
    if cv_summary:
        pooled = cv_summary["pooled"]
        kind = "selection-free" if cv_summary.get("selection_free") else "in-sample"
        lines += [
            "",
            f"The CV's pooled out-of-fold AUC ({kind}, {pooled['num_cases']} cases): {_fmt(pooled['auc'])}, "
            f"against the fold models' mean {_fmt(stats['auc']['mean'])} here "
            f"(difference {_fmt(pooled['auc'] - stats['auc']['mean'])}).",
        ]
    if "versus" in summary:
        v = summary["versus"]
        lines += [
            "",
            f"Against held-out set `{v['other']}` (the same cases, paired bootstrap): AUC difference "
            f"{v['difference']:+.3f} (95 % CI {v['ci'][0]:+.3f} to {v['ci'][1]:+.3f}, p {v['p_two_sided']:.3f}).",
        ]
    return "\n".join(lines) + "\n"
