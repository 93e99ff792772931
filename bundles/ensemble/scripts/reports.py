"""The ensemble's reports: every member and the ensemble side by side on the same cases, and its predictions.

``compare`` scores each member (at its own threshold) and each combination (at the ensemble's) with the
bundles' shared metrics code, and each combination against the best member by a paired bootstrap of the
AUC difference on the same cases (overlapping marginal intervals say little about a difference).
``write_comparison`` writes the table (markdown + JSON), one ROC figure with all of them, and the
diversity report.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .common.data import LABEL_NAMES
from .common.metrics import metrics_at_grades, paired_auc_difference
from .common.outputs import unused_path, write_json
from .common.plots import plot_roc_curves
from .diversity import diversity_markdown, diversity_report

__all__ = ["compare", "comparison_markdown", "write_comparison", "write_ensemble_predictions"]

TABLE_METRICS: tuple[str, ...] = ("auc", "f1", "balanced_accuracy", "sensitivity", "specificity", "accuracy")


def compare(
    labels: Sequence[int],
    names: Sequence[str],
    probs: np.ndarray,
    thresholds: np.ndarray,
    ensembles: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict:
    """Metrics of every member and every ensemble ``{label: (scores, grades)}`` on the same cases."""
    p = np.asarray(probs, dtype=np.float64)
    cut = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), p.shape)
    rows = {
        name: metrics_at_grades(labels, p[:, k], (p[:, k] >= cut[:, k]).astype(int)) for k, name in enumerate(names)
    }
    for label, (scores, grades) in ensembles.items():
        rows[label] = metrics_at_grades(labels, np.asarray(scores), np.asarray(grades))
    best_member = max(names, key=lambda n: -1.0 if rows[n]["auc"] is None else rows[n]["auc"])
    best = p[:, list(names).index(best_member)]
    both_grades = len(np.unique(np.asarray(labels))) == 2
    versus_best = {
        label: paired_auc_difference(labels, np.asarray(scores), best) if both_grades else None
        for label, (scores, _) in ensembles.items()
    }
    return {
        "rows": rows,
        "members": list(names),
        "ensembles": list(ensembles),
        "best_member": best_member,
        "versus_best_member": versus_best,
    }


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def comparison_markdown(comparison: dict, title: str) -> str:
    lines = [f"# {title}", "", "| model | " + " | ".join(TABLE_METRICS) + " | AUC 95 % CI |"]
    lines.append("|" + " --- |" * (len(TABLE_METRICS) + 2))
    for name, row in comparison["rows"].items():
        kind = "member" if name in comparison["members"] else "ensemble"
        low, high = row["auc_95ci"]
        cells = " | ".join(_fmt(row[m]) for m in TABLE_METRICS)
        lines.append(f"| {name} ({kind}) | {cells} | {_fmt(low)}-{_fmt(high)} |")
    n = next(iter(comparison["rows"].values()))["num_cases"]
    lines += ["", f"{n} cases; members at their own thresholds, ensembles at the ensemble's threshold.", ""]
    best = comparison["best_member"]
    lines += [f"AUC difference from the best member, `{best}`, on the same cases (paired bootstrap):", ""]
    lines += ["| ensemble | AUC difference | 95 % CI | p (two-sided) |", "| --- | --- | --- | --- |"]
    for label, paired in comparison.get("versus_best_member", {}).items():
        if paired is None:
            lines.append(f"| {label} | n/a | n/a | n/a |")
            continue
        low, high = paired["ci"]
        lines.append(
            f"| {label} | {paired['difference']:+.4f} | {low:+.4f} to {high:+.4f} | {paired['p_two_sided']:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_comparison(
    folder: str | Path,
    title: str,
    labels: Sequence[int],
    names: Sequence[str],
    probs: np.ndarray,
    thresholds: np.ndarray,
    ensembles: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> dict:
    """Write ``ensemble_metrics.{json,md}``, ``diversity.{json,md}`` and ``plots/roc_members.png`` in ``folder``."""
    folder = Path(folder)
    comparison = compare(labels, names, probs, thresholds, ensembles)
    diversity = diversity_report(names, labels, probs, thresholds)
    write_json(folder / "ensemble_metrics.json", comparison)
    (folder / "ensemble_metrics.md").write_text(comparison_markdown(comparison, title))
    write_json(folder / "diversity.json", diversity)
    (folder / "diversity.md").write_text(diversity_markdown(diversity))
    p = np.asarray(probs)
    curves = {name: (labels, p[:, k]) for k, name in enumerate(names)}
    curves.update({label: (labels, scores) for label, (scores, _) in ensembles.items()})
    plot_roc_curves(curves, folder / "plots" / "roc_members.png", title)
    return {"comparison": comparison, "diversity": diversity}


def write_ensemble_predictions(
    path: str | Path,
    ids: Sequence[str],
    scores: np.ndarray,
    grades: np.ndarray,
    names: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[int] | None = None,
) -> Path:
    """One row per case: id, the ensemble's P(HGG) (vote fraction for majority voting), grade, each member's P(HGG).

    Never overwrites: an existing file makes ``<name>_1.csv``.
    """
    path = unused_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["id", "prob_hgg", "predicted_grade", *(f"prob_{n}" for n in names)]
        writer.writerow(header + (["true_grade"] if labels is not None else []))
        for i, case_id in enumerate(ids):
            row = [case_id, repr(float(scores[i])), LABEL_NAMES[int(grades[i])]]
            row += [repr(float(v)) for v in probs[i]]
            if labels is not None:
                row.append(LABEL_NAMES[int(labels[i])])
            writer.writerow(row)
    return path
