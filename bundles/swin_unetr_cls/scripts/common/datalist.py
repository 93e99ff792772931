"""Scan a BraTS folder into ``datalist.json`` with patient-level stratified folds.

One file drives every bundle, so folds are identical across models and the ensemble can stack
out-of-fold predictions. Case ids are only used to name and group patients, never as features:
in the real BraTS set they encode the institution, which correlates with grade.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

from .data import CHANNEL_ORDER, LABEL_NAMES, DatasetError, scan_cases


def assign_folds(records: list[dict], num_folds: int = 5, seed: int = 42) -> list[dict]:
    """Add ``fold`` to each record: StratifiedKFold over patients, sorted by id so the result is stable."""
    if num_folds < 2:
        raise DatasetError(f"num_folds must be at least 2, got {num_folds}")
    records = sorted(records, key=lambda r: r["id"])
    labels = [r["label"] for r in records]
    counts = Counter(labels)
    for label in LABEL_NAMES:
        if counts[label] < num_folds:
            cases = [r["id"] for r in records if r["label"] == label]
            raise DatasetError(
                f"class {LABEL_NAMES[label]} has {counts[label]} case(s) {cases}, fewer than the "
                f"{num_folds} folds requested: every fold needs one of each class"
            )
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    for fold, (_, val_index) in enumerate(splitter.split(records, labels)):
        for i in val_index:
            records[i]["fold"] = fold
    return records


def build_datalist(
    dataset_dir: str | Path,
    num_folds: int = 5,
    seed: int = 42,
    grades_csv: str | Path | None = None,
    check_readable: bool = True,
) -> dict:
    """Return the datalist dictionary (decathlon style, key ``training``) for ``dataset_dir``."""
    records = scan_cases(dataset_dir, CHANNEL_ORDER, grades_csv, require_grades=True, check_readable=check_readable)
    records = assign_folds(records, num_folds, seed)
    return {
        "description": "BraTS HGG vs LGG grading; image paths relative to the dataset folder",
        "channel_order": list(CHANNEL_ORDER),
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "num_folds": num_folds,
        "fold_seed": seed,
        "numTraining": len(records),
        "training": [
            {"id": r["id"], "image": r["image"], "label": r["label"], "grade": r["grade"], "fold": r["fold"]}
            for r in records
        ],
    }


def write_datalist(datalist: dict, output: str | Path, overwrite: bool = False) -> Path:
    """Write ``datalist`` as JSON; an existing different file is kept unless ``overwrite``."""
    output = Path(output)
    text = json.dumps(datalist, indent=2) + "\n"
    if output.exists() and not overwrite and output.read_text() != text:
        raise FileExistsError(
            f"{output} exists with different content; it is kept. To replace it pass --overwrite "
            "(scripts/make_datalist.py) or --overwrite_datalist True (a bundle's make_datalist)"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return output
