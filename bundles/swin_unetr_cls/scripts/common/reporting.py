"""Classification metrics (scikit-learn), numpy-safe JSON, prediction files and plots for a run.

Seed 003's first fix: metrics.json crashed on numpy types, so everything written goes through
:func:`to_jsonable` (NaN, e.g. an AUC on a one-class set, becomes ``null``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from .data import LABEL_NAMES

SELECTION_TIE_BREAK = 1e-6


def to_jsonable(value):
    """Convert numpy / torch scalars and arrays (nested in dicts, lists) to JSON types; NaN -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, content) -> Path:
    """Write ``content`` as indented, numpy-safe JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(content), indent=2) + "\n")
    return path


def selection_score(auc: float | None, f1: float) -> float:
    """AUC with F1 as tie-break: F1 enters at 1e-6, below any AUC step of a validation set under 1000x1000."""
    return (auc if auc is not None and math.isfinite(auc) else 0.0) + SELECTION_TIE_BREAK * f1


def classification_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict:
    """All the grading metrics from labels (1 = HGG) and P(HGG), with scikit-learn.

    Returns accuracy, balanced accuracy, macro precision / recall / F1, ROC AUC, average precision,
    sensitivity (HGG recall), specificity (LGG recall), the confusion counts (false negatives are
    missed HGG) and per-class precision / recall / F1 / support.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=[0, 1], zero_division=0
    )
    result = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred) if both_classes else float("nan"),
        "precision": skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall": skm.recall_score(y, pred, average="macro", zero_division=0),
        "f1": skm.f1_score(y, pred, average="macro", zero_division=0),
        "auc": skm.roc_auc_score(y, p) if both_classes else float("nan"),
        "average_precision": skm.average_precision_score(y, p) if both_classes else float("nan"),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "true_positives": tp,
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "num_cases": len(y),
        "threshold": threshold,
        "per_class": {
            LABEL_NAMES[c]: {
                "precision": precision[c],
                "recall": recall[c],
                "f1": f1[c],
                "support": support[c],
            }
            for c in (0, 1)
        },
    }
    result["selection_score"] = selection_score(result["auc"], result["f1"])
    return to_jsonable(result)


def write_predictions(
    folder: str | Path,
    ids: Sequence[str],
    labels: Sequence[int] | None,
    probs: Sequence[float],
    prefix: str = "val",
) -> Path:
    """Write ``<prefix>_{probs,preds,labels}.npy`` and ``<prefix>_predictions.csv`` (one row per patient)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = np.asarray(probs, dtype=np.float64)
    preds = (p >= 0.5).astype(int)
    np.save(folder / f"{prefix}_probs.npy", p)
    np.save(folder / f"{prefix}_preds.npy", preds)
    if labels is not None:
        np.save(folder / f"{prefix}_labels.npy", np.asarray(labels, dtype=int))
    csv_path = folder / f"{prefix}_predictions.csv"
    write_prediction_csv(csv_path, ids, p, labels)
    return csv_path


def write_prediction_csv(
    path: str | Path, ids: Sequence[str], probs: Sequence[float], labels: Sequence[int] | None = None
) -> Path:
    """One row per patient: id, P(HGG), predicted grade (and the true grade when known)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "prob_hgg", "predicted_grade"] + (["true_grade"] if labels is not None else [])
        )
        for i, (case_id, prob) in enumerate(zip(ids, probs, strict=True)):
            row = [case_id, f"{float(prob):.6f}", LABEL_NAMES[int(prob >= 0.5)]]
            if labels is not None:
                row.append(LABEL_NAMES[int(labels[i])])
            writer.writerow(row)
    return path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Mapping[str, Sequence], folder: str | Path, suffix: str = "") -> list[Path]:
    """Loss curve and learning curves (AUC, F1, accuracy, learning rate) from the per-epoch history."""
    plt = _figure()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss", "val_ema_loss"):
        if history.get(key):
            epochs, values = zip(*history[key], strict=True)
            ax.plot(epochs, values, marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    written.append(folder / f"loss_curve{suffix}.png")
    fig.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    panels = [
        ("AUC", ("train_auc", "val_auc", "val_ema_auc")),
        ("F1 (macro)", ("train_f1", "val_f1", "val_ema_f1")),
        ("accuracy", ("train_accuracy", "val_accuracy", "val_ema_accuracy")),
        ("learning rate", ("lr",)),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, keys) in zip(axes.ravel(), panels, strict=True):
        for key in keys:
            if history.get(key):
                epochs, values = zip(*history[key], strict=True)
                ax.plot(epochs, values, marker=".", label=key)
        ax.set(xlabel="epoch", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    written.append(folder / f"learning_curves{suffix}.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def plot_evaluation(
    labels: Sequence[int], probs: Sequence[float], folder: str | Path, suffix: str = ""
) -> list[Path]:
    """Confusion matrix, ROC and precision-recall curves with scikit-learn's display classes."""
    plt = _figure()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    written = []
    display = skm.ConfusionMatrixDisplay.from_predictions(
        y, (p >= 0.5).astype(int), labels=[0, 1], display_labels=names
    )
    written.append(folder / f"confusion_matrix{suffix}.png")
    display.figure_.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(display.figure_)
    if len(np.unique(y)) == 2:
        for name, cls in (("roc_curve", skm.RocCurveDisplay), ("pr_curve", skm.PrecisionRecallDisplay)):
            display = cls.from_predictions(y, p, pos_label=1, name="HGG vs LGG")
            written.append(folder / f"{name}{suffix}.png")
            display.figure_.savefig(written[-1], dpi=100, bbox_inches="tight")
            plt.close(display.figure_)
    return written
