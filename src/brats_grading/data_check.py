"""Check a whole BraTS folder or datalist before training on it: every problem listed, not only the first.

A training run checks its own fold at start and stops at the first bad case; this lists every bad
case and every unusable fold at once, so a dataset can be fixed in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .components.data import CHANNEL_ORDER, DatasetError, load_records, scan_cases
from .components.validation import check_cases, check_fold_classes


def _datalist_problems(datalist: Path, dataset_dir: Path, modalities: Sequence[str]) -> tuple[list[dict], list[str]]:
    records = load_records(datalist, dataset_dir, modalities=modalities)
    problems = []
    folds = sorted({r["fold"] for r in records if "fold" in r})
    for fold in folds:
        try:
            train = load_records(datalist, dataset_dir, fold, "train", modalities)
            check_fold_classes(train, str(datalist), fold)
        except DatasetError as err:
            problems.append(str(err))
    return records, problems


def check_dataset(
    dataset_dir: str | Path,
    datalist: str | Path | None = None,
    modalities: Sequence[str] = CHANNEL_ORDER,
    workers: int | None = None,
) -> tuple[int, list[str]]:
    """Every problem of a dataset: ``(number of cases, one line per problem)``; no problem means ready to train.

    With a datalist (default ``<dataset_dir>/datalist.json`` when present): its entries, every fold's
    training split, then every case's files. Without: the folder layout, then every case's files.
    """
    root = Path(dataset_dir)
    listed = Path(datalist) if datalist else root / "datalist.json"
    try:
        if listed.is_file():
            records, problems = _datalist_problems(listed, root, modalities)
        else:
            if datalist:
                raise DatasetError(f"datalist {listed} does not exist")
            records, problems = scan_cases(root, modalities, require_grades=False, allow_missing=True), []
            for record in records:
                record["image"] = [str(root / p) for p in record["image"]]
    except DatasetError as err:
        return 0, [str(err)]
    bad = check_cases(records, workers=workers, raise_on_error=False)
    return len(records), problems + list(bad.values())
