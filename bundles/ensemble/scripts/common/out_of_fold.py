"""Out-of-fold predictions: every case predicted once, by the fold model that never trained on it.

Cross-validation writes them; the ensemble's stacking learns from them. The ``fold`` column names the
model that made the prediction, and that is only out-of-fold when it is the case's own validation fold
in the datalist; :func:`check_out_of_fold` refuses anything else, because a meta-learner fitted on
in-fold predictions learns how well members remember their training cases.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data import DatasetError

__all__ = ["OOF_COLUMNS", "check_out_of_fold", "read_out_of_fold", "write_out_of_fold"]

OOF_COLUMNS: tuple[str, ...] = ("id", "fold", "label", "prob_hgg", "logit")
#: written when known: the fold model's decision threshold on ``prob_hgg``
OPTIONAL_COLUMNS: tuple[str, ...] = ("threshold",)


def write_out_of_fold(path: str | Path, rows: Sequence[Mapping]) -> Path:
    """Write rows holding :data:`OOF_COLUMNS` (and ``threshold`` when every row has it), sorted by fold then id."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        extra = [c for c in OPTIONAL_COLUMNS if rows and all(c in r for r in rows)]
        writer.writerow([*OOF_COLUMNS, *extra])
        for row in sorted(rows, key=lambda r: (int(r["fold"]), str(r["id"]))):
            values = [row["id"], int(row["fold"]), int(row["label"]), repr(float(row["prob_hgg"]))]
            writer.writerow([*values, repr(float(row["logit"])), *(repr(float(row[c])) for c in extra)])
    return path


def read_out_of_fold(path: str | Path) -> list[dict]:
    """Rows of an out-of-fold CSV with typed values; a file without the columns is refused by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"out-of-fold predictions {path} do not exist (cross_validate.py writes them)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in OOF_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {missing}; out-of-fold predictions need {list(OOF_COLUMNS)} "
                "(a plain inference CSV has no 'fold': it cannot show the predictions are out-of-fold)"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(
                    {
                        "id": row["id"],
                        "fold": int(row["fold"]),
                        "label": int(row["label"]),
                        "prob_hgg": float(row["prob_hgg"]),
                        "logit": float(row["logit"]),
                        **{c: float(row[c]) for c in OPTIONAL_COLUMNS if row.get(c) not in (None, "")},
                    }
                )
            except (TypeError, ValueError) as err:
                raise DatasetError(f"{path}, line {line}: {err} (expected integer fold and label, numbers)") from err
    return rows


def check_out_of_fold(rows: Sequence[Mapping], case_folds: Mapping[str, int], source: str = "predictions") -> None:
    """Raise unless every row's model fold is its case's validation fold and every case appears once.

    Args:
        rows: out-of-fold rows (``id``, ``fold``...).
        case_folds: the datalist's fold of every case.
        source: the file the rows came from, named in errors.
    """
    seen: set[str] = set()
    for row in rows:
        case_id, fold = str(row["id"]), int(row["fold"])
        if case_id not in case_folds:
            raise DatasetError(f"{source}: case '{case_id}' is not in the datalist")
        if case_id in seen:
            raise DatasetError(f"{source}: case '{case_id}' is predicted more than once; out-of-fold means once")
        if case_folds[case_id] != fold:
            raise DatasetError(
                f"{source}: case '{case_id}' was predicted by the fold-{fold} model, which trained on it "
                f"(its validation fold is {case_folds[case_id]}): in-fold predictions leak into stacking"
            )
        seen.add(case_id)
    folds = {int(r["fold"]) for r in rows}
    missing = sorted(c for c, f in case_folds.items() if f in folds and c not in seen)
    if missing:
        raise DatasetError(
            f"{source}: {len(missing)} case(s) of folds {sorted(folds)} have no prediction, e.g. {missing[:3]}"
        )
