"""Files a run writes for people and programs: numpy-safe JSON, per-case prediction CSV and ``.npy`` arrays.

Everything goes through :func:`to_jsonable`, so numpy and torch values never break ``json.dump`` and
NaN (an AUC on a one-class set) is written as ``null``. Probabilities are written at full precision
(``repr`` of the float), so a CSV read back gives the same numbers and loses no ranking.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .data import LABEL_NAMES

__all__ = ["PREDICTION_COLUMNS", "to_jsonable", "write_json", "write_prediction_arrays", "write_prediction_csv"]

#: columns of a prediction CSV; ``logit`` is the log-odds of HGG before calibration.
PREDICTION_COLUMNS: tuple[str, ...] = ("id", "prob_hgg", "predicted_grade", "logit")


def unused_path(path: str | Path, suffix: str | None = None) -> Path:
    """``path`` when nothing is there yet, else the first free ``<stem>_<n><suffix>``: nothing written is replaced.

    Args:
        path: the file or folder wanted.
        suffix: the ending kept after the number (default ``path.suffix``); e.g. ``".nii.gz"``, or ``""``
            for a folder whose name holds dots.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    if not path.name.endswith(suffix):
        raise ValueError(f"{path.name!r} does not end in {suffix!r}")
    stem = path.name[: len(path.name) - len(suffix)]
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{stem}_{n}{suffix}")
    return candidate


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
    """Write ``content`` as indented, numpy-safe JSON, creating the parent folder.

    Written to a temporary file and renamed: a run killed mid-write leaves the previous complete file.
    NaN never reaches the file (``null``; JSON has no NaN).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(to_jsonable(content), indent=4, allow_nan=False) + "\n")  # the zoo's JSON style
    os.replace(temporary, path)
    return path


def write_prediction_csv(
    path: str | Path,
    ids: Sequence[str],
    probs: Sequence[float],
    logits: Sequence[float],
    threshold: float = 0.5,
    labels: Sequence[int] | None = None,
) -> Path:
    """One row per patient: id, P(HGG), the grade predicted at ``threshold``, the logit (and the true grade).

    Args:
        path: CSV file to write (its folder is created).
        ids: case ids.
        probs: P(HGG) per case (calibrated when a temperature was fitted).
        logits: log-odds of HGG before calibration, ``logit[HGG] - logit[LGG]``.
        threshold: operating threshold on ``probs``: HGG when P(HGG) >= threshold.
        labels: true labels (1 = HGG), or None when unknown.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(PREDICTION_COLUMNS) + (["true_grade"] if labels is not None else []))
        for i, (case_id, prob, logit) in enumerate(zip(ids, probs, logits, strict=True)):
            row = [case_id, repr(float(prob)), LABEL_NAMES[int(prob >= threshold)], repr(float(logit))]
            if labels is not None:
                row.append(LABEL_NAMES[int(labels[i])])
            writer.writerow(row)
    return path


def write_prediction_arrays(
    folder: str | Path,
    ids: Sequence[str],
    labels: Sequence[int] | None,
    probs: Sequence[float],
    logits: Sequence[float],
    threshold: float = 0.5,
    prefix: str = "val",
) -> Path:
    """Write ``<prefix>_{probs,preds,labels,logits}.npy`` and ``<prefix>_predictions.csv``; return the CSV."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = np.asarray(probs, dtype=np.float64)
    np.save(folder / f"{prefix}_probs.npy", p)
    np.save(folder / f"{prefix}_preds.npy", (p >= threshold).astype(int))
    np.save(folder / f"{prefix}_logits.npy", np.asarray(logits, dtype=np.float64))
    if labels is not None:
        np.save(folder / f"{prefix}_labels.npy", np.asarray(labels, dtype=int))
    return write_prediction_csv(folder / f"{prefix}_predictions.csv", ids, p, logits, threshold, labels)
