"""Plots of a run: loss and learning curves, confusion matrix, ROC, precision-recall, reliability diagram.

scikit-learn's display classes draw the evaluation plots; matplotlib runs headless (Agg).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import CalibrationDisplay

from .data import LABEL_NAMES

__all__ = ["plot_evaluation", "plot_history", "plot_roc_curves"]


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
    labels: Sequence[int], probs: Sequence[float], folder: str | Path, suffix: str = "", threshold: float = 0.5
) -> list[Path]:
    """Confusion matrix (at ``threshold``), ROC, precision-recall and reliability diagram (scikit-learn displays)."""
    plt = _figure()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    names = [LABEL_NAMES[0], LABEL_NAMES[1]]
    written = []
    display = skm.ConfusionMatrixDisplay.from_predictions(
        y, (p >= threshold).astype(int), labels=[0, 1], display_labels=names
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
        display = CalibrationDisplay.from_predictions(y, p, n_bins=10, strategy="uniform", name="P(HGG)")
        written.append(folder / f"reliability_diagram{suffix}.png")
        display.figure_.savefig(written[-1], dpi=100, bbox_inches="tight")
        plt.close(display.figure_)
    return written


def plot_roc_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: str | Path, title: str = ""
) -> Path | None:
    """One ROC figure with a curve per named ``(labels, P(HGG))`` pair (folds and pooled, or members and ensemble).

    Curves on a one-class set are left out; with none left no figure is written and None is returned.
    """
    drawable = {name: (np.asarray(y, int), np.asarray(p, float)) for name, (y, p) in curves.items()}
    drawable = {name: yp for name, yp in drawable.items() if len(np.unique(yp[0])) == 2}
    if not drawable:
        return None
    plt = _figure()
    figure, axis = plt.subplots(figsize=(6, 6))
    for name, (y, p) in drawable.items():
        skm.RocCurveDisplay.from_predictions(
            y, p, pos_label=1, name=name, ax=axis, plot_chance_level=name == next(iter(drawable))
        )
    axis.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
