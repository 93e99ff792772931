"""Grading metrics (scikit-learn), the operating threshold, the collapse check and the selection score.

HGG (label 1) is the positive class. Metrics are computed at an operating threshold on P(HGG),
chosen on the selection cases (the training share of HGG on calibrated P(HGG) by default, which
needs no more cases than the temperature does), and again at 0.5 so both stay comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

from .data import LABEL_NAMES
from .outputs import to_jsonable

__all__ = [
    "metrics_at_grades",
    "COLLAPSE_SPREAD",
    "SELECTION_TIE_BREAK",
    "THRESHOLD_RULES",
    "auc_bootstrap_interval",
    "paired_auc_difference",
    "choose_threshold",
    "classification_metrics",
    "collapse_reason",
    "selection_score",
]

SELECTION_TIE_BREAK = 1e-6
#: a model whose P(HGG) over a validation set spans less than this has collapsed to one answer.
COLLAPSE_SPREAD = 1e-3
THRESHOLD_RULES: tuple[str, ...] = ("prior", "youden", "f1", "fixed")


def selection_score(auc: float | None, f1: float, collapsed: bool = False) -> float:
    """AUC with F1 as tie-break (F1 enters at 1e-6, below any AUC step of a set under 1000x1000 cases).

    A collapsed model scores 2 lower, below any healthy score, so any healthy epoch is selected
    before it, while collapsed epochs keep their order among themselves.
    """
    score = (auc if auc is not None and math.isfinite(auc) else 0.0) + SELECTION_TIE_BREAK * f1
    return score - 2.0 if collapsed else score


def choose_threshold(
    labels: Sequence[int],
    probs: Sequence[float],
    rule: str = "youden",
    fixed: float = 0.5,
    hgg_prior: float | None = None,
) -> float:
    """The operating threshold on P(HGG) (HGG when P >= threshold) chosen by ``rule``.

    Args:
        labels: true labels, 1 = HGG.
        probs: P(HGG) per case.
        rule: ``"prior"`` returns ``hgg_prior``: on calibrated probabilities, P(HGG) above the share of
            HGG maximises the expected balanced accuracy, and the rule reads no case's position, so it
            transfers where a cut fitted on a few selection cases does not. ``"youden"`` maximises
            sensitivity + specificity - 1 over the ROC curve's thresholds (the highest such threshold on
            ties); ``"f1"`` maximises macro F1 over the observed probabilities; ``"fixed"`` returns ``fixed``.
            A one-class set also returns ``fixed``.
        fixed: the threshold of the ``"fixed"`` rule and the fallback.
        hgg_prior: the share of HGG among the training cases (``"prior"``; the labels' share when None).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule '{rule}' must be one of {THRESHOLD_RULES}")
    if not 0.0 <= fixed <= 1.0:
        raise ValueError(f"fixed threshold must be in [0, 1], got {fixed}")
    if hgg_prior is not None and not 0.0 < hgg_prior < 1.0:
        raise ValueError(f"hgg_prior must be in (0, 1), got {hgg_prior}")
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    if rule == "fixed" or len(np.unique(y)) < 2:
        return float(fixed)
    if rule == "prior":
        return float(np.mean(y) if hgg_prior is None else hgg_prior)
    if rule == "youden":
        fpr, tpr, thresholds = skm.roc_curve(y, p, pos_label=1, drop_intermediate=False)
        j = tpr - fpr
        best = int(np.argmax(j))  # thresholds decrease along the curve: the first maximum is the highest
        return float(min(thresholds[best], 1.0))
    candidates = np.unique(p)[::-1]
    scores = [skm.f1_score(y, (p >= t).astype(int), average="macro", zero_division=0) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def collapse_reason(probs: Sequence[float], threshold: float, raw_probs: Sequence[float] | None = None) -> str | None:
    """Why a set of predictions shows a collapsed model, or None when it does not.

    Collapsed: the network's own P(HGG) (``raw_probs``, before temperature scaling; ``probs`` when not
    given) spans less than :data:`COLLAPSE_SPREAD`, or the threshold puts every case in one class. Such a
    model answers the same whatever the image, whatever its AUC says. The spread is judged before scaling
    because a temperature near its lower bound stretches a near-constant output across [0, 1].
    """
    p = np.asarray(probs, dtype=float)
    if len(p) < 2:
        return None
    raw = p if raw_probs is None else np.asarray(raw_probs, dtype=float)
    spread = float(raw.max() - raw.min())
    if spread < COLLAPSE_SPREAD:
        before = "" if raw_probs is None else " before temperature scaling"
        return f"P(HGG) nearly constant{before}: spread {spread:.3g} < {COLLAPSE_SPREAD} over {len(p)} cases"
    predicted = p >= threshold
    if predicted.all() or not predicted.any():
        grade = LABEL_NAMES[int(predicted[0])]
        return f"every one of {len(p)} cases predicted {grade} at threshold {threshold:.6g}"
    return None


def _threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred) if len(np.unique(y)) == 2 else float("nan"),
        "precision": skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall": skm.recall_score(y, pred, average="macro", zero_division=0),
        "f1": skm.f1_score(y, pred, average="macro", zero_division=0),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "true_positives": tp,
        "true_negatives": tn,
        "false_positives": fp,
        "false_negatives": fn,
        "per_class": {
            LABEL_NAMES[c]: {"precision": precision[c], "recall": recall[c], "f1": f1[c], "support": support[c]}
            for c in (0, 1)
        },
    }


def classification_metrics(
    labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5, raw_probs: Sequence[float] | None = None
) -> dict:
    """All grading metrics from labels (1 = HGG) and P(HGG), at ``threshold`` and, under ``at_0_5``, at 0.5.

    ``raw_probs``: P(HGG) before temperature scaling, where ``probs`` are scaled; the collapse check reads it.

    Returns accuracy, balanced accuracy, macro precision / recall / F1, ROC AUC, average precision,
    sensitivity (HGG recall), specificity (LGG recall), the confusion counts (false negatives are
    missed HGG), per-class figures, ``collapsed`` / ``collapse_reason`` and ``selection_score``.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    both_classes = len(np.unique(y)) == 2
    reason = collapse_reason(p, threshold, raw_probs)
    result = {
        **_threshold_metrics(y, p, threshold),
        "auc": skm.roc_auc_score(y, p) if both_classes else float("nan"),
        "average_precision": skm.average_precision_score(y, p) if both_classes else float("nan"),
        "num_cases": len(y),
        "threshold": threshold,
        "collapsed": reason is not None,
        "collapse_reason": reason,
    }
    at_half = _threshold_metrics(y, p, 0.5)
    result["at_0_5"] = {k: v for k, v in at_half.items() if k != "per_class"}
    result["selection_score"] = selection_score(result["auc"], result["f1"], result["collapsed"])
    result["undefined"] = undefined_reasons(result, y)
    return to_jsonable(result)


def undefined_reasons(metrics: dict, labels: np.ndarray) -> dict[str, str]:
    """Why each top-level metric that is NaN (written ``null``) is undefined, e.g. an AUC on one grade."""
    present = sorted(LABEL_NAMES[int(c)] for c in np.unique(labels))
    only = f"the cases hold {' and '.join(present) or 'no grade'} only ({len(labels)} cases)"
    return {key: only for key, value in metrics.items() if isinstance(value, float) and not np.isfinite(value)}


def _rank_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): sklearn's value, without its checks per resample."""
    ranks = rankdata(scores)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _bootstrap(y: np.ndarray, statistic, confidence: float, resamples: int, seed: int) -> np.ndarray:
    """``statistic(index)`` over resamples of cases with replacement (those holding one class skipped)."""
    if not 0.0 < confidence < 1.0 or resamples < 1:
        raise ValueError(f"confidence must be in (0, 1) and resamples >= 1, got {confidence}, {resamples}")
    if len(np.unique(y)) < 2:
        raise ValueError("an AUC interval needs both classes among the labels")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) == 2:
            values.append(statistic(index))
    return np.asarray(values)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def auc_bootstrap_interval(
    labels: Sequence[int], probs: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC, resampling cases with replacement.

    A figure on a few dozen cases is noisy; this gives its spread. Resamples holding one class only
    are skipped. Deterministic for a ``seed``.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    aucs = _bootstrap(y, lambda index: _rank_auc(y[index], p[index]), confidence, resamples, seed)
    return _interval(aucs, confidence)


def paired_auc_difference(
    labels: Sequence[int],
    probs_a: Sequence[float],
    probs_b: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """AUC(a) - AUC(b) on the same cases, with a paired percentile bootstrap interval.

    Both models are scored on each resample of cases, so the interval is that of the difference:
    much narrower than two marginal intervals when the models err on the same cases, which is how
    two models of one task behave. ``p_two_sided`` is twice the smaller share of resampled
    differences on either side of 0.
    """
    y, a, b = np.asarray(labels, dtype=int), np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"labels and both models' scores must cover the same cases: {len(y)}, {len(a)}, {len(b)}")

    def difference(index: np.ndarray) -> float:
        return _rank_auc(y[index], a[index]) - _rank_auc(y[index], b[index])

    differences = _bootstrap(y, difference, confidence, resamples, seed)
    low, high = _interval(differences, confidence)
    p_value = min(1.0, 2.0 * min(np.mean(differences <= 0.0), np.mean(differences >= 0.0)))
    return {
        "difference": float(skm.roc_auc_score(y, a) - skm.roc_auc_score(y, b)),
        "ci": [float(low), float(high)],
        "p_two_sided": float(p_value),
        "num_cases": int(len(y)),
    }


#: threshold metrics :func:`metrics_at_grades` reports beside the AUC
GRADE_METRICS: tuple[str, ...] = ("f1", "balanced_accuracy", "accuracy", "sensitivity", "specificity")


def metrics_at_grades(labels: Sequence[int], scores: Sequence[float], grades: Sequence[int]) -> dict:
    """AUC (with its bootstrap interval) from ``scores``, the threshold metrics from grades already decided.

    For predictions whose grades do not come from one threshold on the scores: pooled folds, each at
    its own threshold, or an ensemble's majority vote.
    """
    at_grades = classification_metrics(labels, [float(g) for g in grades], 0.5)
    return {
        "num_cases": len(labels),
        "auc": classification_metrics(labels, scores)["auc"],
        "auc_95ci": auc_bootstrap_interval(labels, scores),
        **{k: at_grades[k] for k in GRADE_METRICS},
    }
