"""Which cases train a fold's model, which choose it, and which score it.

A model's epoch, raw-vs-EMA choice, temperature and threshold are all chosen on the cases its
validation evaluator sees. Scored on those same cases, its figures are in-sample and flatter it. With
``selection_fraction > 0`` a stratified share of the fold's training cases is held out to choose
(the *selection* cases) and the fold's validation cases are left to be scored once, untouched; with
0 the validation fold does both, as plain MONAI bundles do, and the run says its figures are in-sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sklearn.model_selection import train_test_split

from .calibration import read_operating_point_file
from .checkpoints import stored_metrics
from .data import LABEL_NAMES, DatasetError, load_records

__all__ = [
    "MIN_SELECTION_PER_CLASS",
    "case_roles",
    "evaluation_case_roles",
    "log_case_roles",
    "log_evaluation_roles",
    "split_fold",
    "stored_selection",
]

logger = logging.getLogger(__name__)

#: fewest selection cases of each grade: with one, a single case would decide the epoch and the threshold
MIN_SELECTION_PER_CLASS = 2


def _selection_split(records: list[dict], fraction: float, seed: int, source: str) -> tuple[list[dict], list[dict]]:
    """(train, selection): a patient-level stratified share ``fraction`` of ``records`` held out to choose."""
    labels = [int(r["label"]) for r in records]
    train, selection = train_test_split(records, test_size=fraction, stratify=labels, random_state=seed)
    for label, grade in LABEL_NAMES.items():
        found = sum(int(r["label"]) == label for r in selection)
        if found < MIN_SELECTION_PER_CLASS:
            raise DatasetError(
                f"{source}: selection_fraction {fraction} holds out {found} {grade} case(s) of {len(records)} "
                f"training cases; expected at least {MIN_SELECTION_PER_CLASS} of each grade (raise selection_fraction, "
                "or set it to 0 to select on the validation fold)"
            )
    key = lambda r: r["id"]  # noqa: E731
    return sorted(train, key=key), sorted(selection, key=key)


def split_fold(
    datalist: str | Path,
    dataset_dir: str | Path,
    fold: int,
    modalities: Sequence[str],
    selection_fraction: float = 0.0,
    seed: int = 42,
) -> dict[str, list[dict]]:
    """The fold's cases by role: ``train`` (gradients), ``selection`` (epoch, temperature, threshold), ``scored``.

    ``scored`` is always the fold's validation cases. With ``selection_fraction`` 0 they are also the
    selection cases; otherwise the selection cases are drawn (stratified by grade, one case per patient,
    seeded by ``seed + fold``) from the training cases, and scoring is selection-free.
    """
    if isinstance(selection_fraction, bool) or not 0.0 <= float(selection_fraction) <= 0.5:
        raise DatasetError(f"selection_fraction must be a number in [0, 0.5], got {selection_fraction!r}")
    train = load_records(datalist, dataset_dir, fold, "train", modalities)
    scored = load_records(datalist, dataset_dir, fold, "val", modalities)
    if float(selection_fraction) == 0.0:
        return {"train": train, "selection": scored, "scored": scored}
    train, selection = _selection_split(train, float(selection_fraction), int(seed) + int(fold), f"datalist {datalist}")
    return {"train": train, "selection": selection, "scored": scored}


def case_roles(split: dict[str, list[dict]]) -> dict:
    """The case ids of each role, for ``metrics.json`` and the checkpoint: who chose and who is scored."""
    selection = [r["id"] for r in split["selection"]]
    scored = [r["id"] for r in split["scored"]]
    return {
        "num_train": len(split["train"]),
        "selection_ids": selection,
        "scored_ids": scored,
        "selection_is_scored": set(selection) == set(scored),
    }


def stored_selection(checkpoint: str | Path) -> dict:
    """What chose a model: the metrics stored in its checkpoint, else its operating-point file (published models)."""
    stored = stored_metrics(checkpoint) if Path(checkpoint).is_file() else {}
    return stored or read_operating_point_file(checkpoint) or {}


def evaluation_case_roles(scored_records: Sequence[dict], checkpoint: str | Path) -> dict:
    """An evaluation's cases against the selection cases stored with its checkpoint.

    ``overlap`` counts scored cases that helped choose the model (None when the model does not say);
    0 means its figures are selection-free. The threshold's own balanced accuracy, on the selection
    cases, is kept beside the one it gets here.
    """
    stored = stored_selection(checkpoint)
    scored = [r["id"] for r in scored_records]
    selection = stored.get("selection_ids")
    keys = ("epoch", "source", "auc", "balanced_accuracy", "threshold", "threshold_rule")
    return {
        "scored_ids": scored,
        "selection_ids": selection,
        "overlap": None if selection is None else len(set(scored) & set(selection)),
        "selection": {**{k: stored.get(k) for k in keys}, "num_cases": None if selection is None else len(selection)},
    }


def log_case_roles(roles: dict, fold: int) -> None:
    """Say in the run's log which cases choose the model and which are scored."""
    n_select, n_scored = len(roles["selection_ids"]), len(roles["scored_ids"])
    if roles["selection_is_scored"]:
        logger.info(
            f"fold {fold}: {roles['num_train']} training cases; the {n_scored} validation cases choose the epoch, "
            "temperature and threshold and are scored: their figures are in-sample (selection_fraction 0)"
        )
        return
    logger.info(
        f"fold {fold}: {roles['num_train']} training cases; {n_select} selection cases (held out of training) "
        f"choose the epoch, temperature and threshold; the fold's {n_scored} validation cases choose nothing "
        "and are scored by evaluate.json"
    )


def log_evaluation_roles(roles: dict) -> None:
    """Say in the evaluation's log whether its cases helped choose the model they score."""
    n_scored, overlap = len(roles["scored_ids"]), roles["overlap"]
    if overlap is None:
        logger.info(f"scoring {n_scored} cases; the model does not name the cases it was selected on")
    elif overlap:
        logger.warning(
            f"scoring {n_scored} cases, {overlap} of which chose this model's epoch, temperature and threshold: "
            "these figures are in-sample"
        )
    else:
        logger.info(f"scoring {n_scored} cases, none of which chose this model (selection-free figures)")
