"""Combine members' P(HGG) into the ensemble's: weighted mean, soft vote, majority vote, stacking.

Every method maps an ``(N, M)`` array of calibrated member probabilities to an ensemble score per case
(P(HGG), or the fraction of HGG votes for majority voting) and a grade. Stacking's meta-learner is a
scikit-learn logistic regression on the members' log-odds; its coefficients are kept as JSON (no pickle),
and prediction is its closed form, so loading a fitted stacker runs no code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "METHODS",
    "Combiner",
    "StackingModel",
    "compared_combiners",
    "fit_stacking",
    "fit_weights",
    "member_log_odds",
    "read_fitted_weights",
]

METHODS: tuple[str, ...] = ("mean", "soft_vote", "majority_vote", "stacking")
EPS = 1e-6


def member_log_odds(probs: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p kept inside [1e-6, 1 - 1e-6] so saturated members stay finite."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


class StackingModel:
    """Logistic regression on members' log-odds: P(HGG) = sigmoid(log_odds @ coef + intercept)."""

    def __init__(self, members: Sequence[str], coef: Sequence[float], intercept: float, info: dict | None = None):
        if len(coef) != len(members):
            raise ValueError(f"stacking: {len(coef)} coefficients for {len(members)} members {list(members)}")
        self.members = list(members)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.info = dict(info or {})

    def predict(self, probs: np.ndarray) -> np.ndarray:
        z = member_log_odds(probs) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "model": "logistic_regression",
            "features": "log-odds of each member's calibrated P(HGG)",
            "members": self.members,
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            **self.info,
        }
        path.write_text(json.dumps(content, indent=4) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path, members: Sequence[str] | None = None) -> StackingModel:
        """Read fitted coefficients; ``members`` (the ensemble's, in order) must be the ones it was fitted on."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"stacking coefficients {path} do not exist; fit them with configs/train.json")
        try:  # JSON only: coefficients are never unpickled
            content = json.loads(path.read_text())
        except ValueError as err:  # UnicodeDecodeError (a pickle, say) or JSONDecodeError
            raise ValueError(f"{path}: not a stacking JSON file ({type(err).__name__}); refit with train.json") from err
        if members is not None and list(members) != content["members"]:
            raise ValueError(
                f"{path}: fitted on members {content['members']}, the ensemble has {list(members)}; refit or reorder"
            )
        info = {k: v for k, v in content.items() if k not in ("members", "coef", "intercept", "model", "features")}
        return cls(content["members"], content["coef"], content["intercept"], info)


def fit_stacking(
    members: Sequence[str], probs: np.ndarray, labels: Sequence[int], c: float = 1.0, info: dict | None = None
) -> StackingModel:
    """Fit the meta-learner on out-of-fold member probabilities (balanced class weights, L2 strength 1/c)."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    if len(np.unique(y)) != 2:
        raise ValueError(f"stacking needs both grades among the cases it is fitted on; got labels {sorted(set(y))}")
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000)
    model.fit(member_log_odds(probs), y)
    return StackingModel(members, model.coef_[0].tolist(), float(model.intercept_[0]), {"C": c, **(info or {})})


def fit_weights(probs: np.ndarray, labels: Sequence[int], step: float = 0.1) -> np.ndarray:
    """Weights of the weighted mean that rank the cases best (highest AUC), searched on a grid of the simplex.

    Ties go to the weights closest to equal, so a member is dropped only when that ranks strictly better.
    A member with no information gets weight 0 when leaving it out helps; unlike stacking's
    coefficients, weights cannot turn negative or exaggerate one member's scale.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    if len(np.unique(y)) != 2:
        raise ValueError(f"fitting weights needs both grades among the cases; got labels {sorted(set(y.tolist()))}")
    members = p.shape[1]
    steps = int(round(1 / step))
    grid = np.asarray(list(_compositions(steps, members)), dtype=np.float64) / steps  # lexicographic order
    ranks = rankdata(p @ grid.T, axis=0)  # every grid point's weighted mean ranked at once
    positives = int(y.sum())
    aucs = (ranks[y == 1].sum(axis=0) - positives * (positives + 1) / 2.0) / (positives * (len(y) - positives))
    distance = np.abs(grid - 1.0 / members).sum(axis=1)
    best = np.flatnonzero(aucs == aucs.max())
    return grid[best[np.argmin(distance[best])]]


def _compositions(total: int, parts: int):
    """Every tuple of ``parts`` non-negative integers summing to ``total``, in lexicographic order."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def read_fitted_weights(path: str | Path, members: Sequence[str]) -> list[float]:
    """The weighted mean's weights fitted with the stacking coefficients (``configs/train.json``)."""
    model = StackingModel.from_json(path, members)
    if "mean_weights" not in model.info:
        raise ValueError(f"{path}: holds no fitted 'mean_weights'; refit with configs/train.json")
    return [float(w) for w in model.info["mean_weights"]]


class Combiner:
    """One combination method with its settings.

    Args:
        method: one of :data:`METHODS`.
        members: member names, in the order of the probability columns.
        weights: ``mean`` only: one weight per member (normalised); default equal.
        thresholds: ``majority_vote`` only: each member's threshold, ``(M,)`` or per case ``(N, M)``.
        stacking: ``stacking`` only: the fitted :class:`StackingModel`.
        threshold: the ensemble's decision threshold on its score (not used by majority voting).
    """

    def __init__(
        self,
        method: str = "mean",
        members: Sequence[str] = (),
        weights: Sequence[float] | None = None,
        thresholds: Sequence[float] | None = None,
        stacking: StackingModel | None = None,
        threshold: float = 0.5,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method '{method}' is not one of {list(METHODS)}")
        self.method = method
        self.members = list(members)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(self.members),) or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(f"weights {weights.tolist()}: need one non-negative weight per member {self.members}")
        self.weights = weights
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        if method == "stacking" and stacking is None:
            raise ValueError("method 'stacking' needs fitted coefficients (stacking_file); fit them with train.json")
        if stacking is not None and self.members and stacking.members != self.members:
            raise ValueError(f"stacking was fitted on members {stacking.members}, the ensemble has {self.members}")
        self.stacking = stacking
        self.threshold = float(threshold)

    def __call__(self, probs: np.ndarray, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble scores ``(N,)`` and grades ``(N,)`` (1 = HGG) from member probabilities ``(N, M)``."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or (self.members and p.shape[1] != len(self.members)):
            raise ValueError(f"expected member probabilities of shape (cases, {len(self.members)}), got {p.shape}")
        if self.method == "majority_vote":
            cut = self.thresholds if thresholds is None else np.asarray(thresholds, dtype=np.float64)
            cut = np.full(p.shape[1], 0.5) if cut is None else cut
            fraction = (p >= cut).mean(axis=1)
            tie = np.isclose(fraction, 0.5)
            grades = np.where(tie, p.mean(axis=1) >= 0.5, fraction > 0.5).astype(int)
            return fraction, grades
        if self.method == "stacking":
            scores = self.stacking.predict(p)
        elif self.method == "mean" and self.weights is not None:
            scores = p @ (self.weights / self.weights.sum())
        else:  # soft_vote, and mean with equal weights
            scores = p.mean(axis=1)
        return scores, (scores >= self.threshold).astype(int)


def compared_combiners(
    members: Sequence[str], stacking_file: str | Path, threshold: float = 0.5
) -> dict[str, Combiner]:
    """Every method an evaluation scores beside the chosen one, on the same cases.

    The equal-weight mean and the majority vote always; stacking and the fitted-weight mean when
    ``stacking_file`` (``configs/train.json``) holds them for these members. Soft voting is left out: with
    calibrated members it is the equal-weight mean.
    """
    combiners = {
        "mean": Combiner("mean", members, threshold=threshold),
        "majority_vote": Combiner("majority_vote", members, threshold=threshold),
    }
    if Path(stacking_file).is_file():
        model = StackingModel.from_json(stacking_file, members)
        combiners["stacking"] = Combiner("stacking", members, stacking=model, threshold=threshold)
        if "mean_weights" in model.info:
            weights = [float(w) for w in model.info["mean_weights"]]
            combiners["mean, fitted weights"] = Combiner("mean", members, weights=weights, threshold=threshold)
    return combiners
