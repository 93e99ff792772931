"""Fit the ensemble on out-of-fold predictions: the stacking meta-learner, and an honest out-of-fold comparison.

Each member's out-of-fold CSV (``cross_validate.py``'s ``oof_predictions.csv``) is checked against the
datalist: every prediction must come from the fold model that never trained on its case, and all members
must cover the same cases. The comparison scores every member and every combination method on those
cases; stacking's own figure is nested (its meta-learner refitted without each fold in turn), because
scoring it on the cases it was fitted on would flatter it.

The members' out-of-fold predictions are honest inputs only when their CV was selection-free (each fold's
temperature and threshold fitted on selection cases from the other folds, ``cross_validate.py``'s
default): then stacking is fitted on probabilities calibrated without the case's own label and the votes
use thresholds fitted on other folds' cases. A member whose CV selected on its scored cases makes the
comparison *in-sample*, and its title says so.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .combination import Combiner, StackingModel, fit_stacking, fit_weights
from .common.out_of_fold import check_out_of_fold, read_out_of_fold
from .members import member_spec
from .reports import write_comparison

__all__ = ["fit_from_out_of_fold", "out_of_fold_table"]

logger = logging.getLogger(__name__)


def out_of_fold_table(specs: Sequence[Mapping], datalist: str | Path) -> dict:
    """Members' out-of-fold predictions aligned by case: ids, folds, labels, probs ``(N, M)``, thresholds ``(N, M)``."""
    datalist = Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(f"datalist {datalist} does not exist")
    case_folds = {r["id"]: int(r["fold"]) for r in json.loads(datalist.read_text())["training"]}
    names, tables, selection_free = [], [], []
    for i, raw in enumerate(specs):
        spec = member_spec(raw, i, need_model=False)
        source = spec.get("oof_predictions")
        if not source:
            raise ValueError(f"members[{i}] ('{spec['name']}'): no 'oof_predictions' (or 'cv_dir') to fit on")
        rows = read_out_of_fold(source)
        check_out_of_fold(rows, case_folds, source=str(source))
        selection_free.append(_selection_free(source))
        names.append(spec["name"])
        tables.append({r["id"]: r for r in rows})
    ids = sorted(tables[0], key=lambda c: (tables[0][c]["fold"], c))
    for name, table in zip(names[1:], tables[1:], strict=True):
        if set(table) != set(ids):
            missing = sorted(set(ids) ^ set(table))[:3]
            raise ValueError(
                f"member '{name}' covers other cases than '{names[0]}' (e.g. {missing}): same folds needed"
            )
    return {
        "names": names,
        "ids": ids,
        "folds": np.array([tables[0][c]["fold"] for c in ids]),
        "labels": [tables[0][c]["label"] for c in ids],
        "probs": np.array([[t[c]["prob_hgg"] for t in tables] for c in ids]),
        "thresholds": np.array([[t[c].get("threshold", 0.5) for t in tables] for c in ids]),
        "selection_free": dict(zip(names, selection_free, strict=True)),
    }


def _selection_free(oof_predictions: str | Path) -> bool | None:
    """Whether the CV that wrote these predictions chose nothing on its scored cases (None: not recorded)."""
    summary = Path(oof_predictions).parent / "cv_summary.json"
    if not summary.is_file():
        return None
    return json.loads(summary.read_text()).get("selection_free")


def _comparison_title(table: dict) -> str:
    folds = len(np.unique(table["folds"]))
    flags = table["selection_free"]
    if all(flag is True for flag in flags.values()):
        return f"Out-of-fold comparison ({folds} folds, selection-free)"
    in_sample = sorted(name for name, flag in flags.items() if flag is False)
    unknown = sorted(name for name, flag in flags.items() if flag is None)
    why = []
    if in_sample:
        why.append(f"{', '.join(in_sample)} chose temperature and threshold on these cases")
    if unknown:
        why.append(f"{', '.join(unknown)} without a cv_summary.json saying how it selected")
    return f"Out-of-fold comparison ({folds} folds, in-sample: {'; '.join(why)})"


def _nested(table: dict, fit_and_score) -> np.ndarray:
    """Scores where each fold's cases are scored by a combiner fitted on the other folds only."""
    scores = np.zeros(len(table["ids"]))
    labels = np.asarray(table["labels"])
    for fold in np.unique(table["folds"]):
        inside = table["folds"] == fold
        scores[inside] = fit_and_score(table["probs"][~inside], labels[~inside], table["probs"][inside])
    return scores


def fit_from_out_of_fold(
    members: Sequence[Mapping],
    datalist: str | Path,
    stacking_file: str | Path,
    report_dir: str | Path,
    weights: Sequence[float] | None = None,
    threshold: float = 0.5,
    c: float = 1.0,
) -> StackingModel:
    """Fit and write the stacking coefficients and the mean's weights; write the out-of-fold comparison.

    An existing ``stacking_file`` is kept as ``<name>.previous.json``.
    """
    table = out_of_fold_table(members, datalist)
    names, labels, probs, cuts = table["names"], table["labels"], table["probs"], table["thresholds"]
    ensembles = {
        f"{method}": Combiner(method, names, weights=weights if method == "mean" else None, threshold=threshold)(
            probs, cuts
        )
        for method in ("mean", "soft_vote", "majority_vote")
    }
    nested = _nested(table, lambda p, y, new: fit_stacking(names, p, y, c).predict(new))
    ensembles["stacking (nested)"] = (nested, (nested >= threshold).astype(int))
    nested = _nested(table, lambda p, y, new: new @ fit_weights(p, y))
    ensembles["mean, fitted weights (nested)"] = (nested, (nested >= threshold).astype(int))
    title = _comparison_title(table)
    write_comparison(report_dir, title, labels, names, probs, cuts, ensembles)
    mean_weights = fit_weights(probs, labels).tolist()
    info = {
        "mean_weights": mean_weights,
        "fitted_on": {
            "cases": len(labels),
            "selection_free": table["selection_free"],
            "sources": [str(m.get("oof_predictions", m.get("cv_dir"))) for m in members],
        },
    }
    model = fit_stacking(names, probs, labels, c, info)
    stacking_file = Path(stacking_file)
    if stacking_file.is_file():
        stacking_file.replace(stacking_file.with_name(f"{stacking_file.stem}.previous.json"))
    model.to_json(stacking_file)
    model.to_json(Path(report_dir) / stacking_file.name)
    coefficients = dict(zip(names, model.coef.round(4).tolist(), strict=True))
    logger.info(f"stacking coefficients {coefficients}, mean weights {mean_weights} -> {stacking_file}")
    return model
