"""Check cases and datalists before work starts, with one-line errors that name the case, the file and the fault.

Training checks every voxel of every case before its first epoch, so a bad file stops a run in seconds,
not hours in; files already checked and unchanged (same size and modification time) are skipped next time.
Inference checks each case as it loads it (see :class:`.datasets.GuardedDataset`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .data import LABEL_NAMES, DatasetError, load_records
from .outputs import write_json

__all__ = [
    "DataValidationError",
    "check_case_data",
    "check_case_headers",
    "check_cases",
    "check_fold_classes",
    "check_training_data",
    "check_volume",
    "one_line",
]

logger = logging.getLogger(__name__)

#: largest difference (mm) between two modalities' affines still called the same grid
AFFINE_TOLERANCE = 1e-3


class DataValidationError(DatasetError):
    """A case cannot be used: a file is missing, unreadable, on another grid, non-finite or empty."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line, shortened: for messages that quote a library's error."""
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


#: fewest voxels along any side of a modality: a slice or a thumbnail is not a volume to grade
MIN_SIDE = 8
#: fewest non-zero voxels (a brain at 3 mm has ~50,000): one bright voxel is not an image
MIN_NONZERO_VOXELS = 512
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_volume(array, where: str) -> None:
    """A modality must be a 3-D numeric volume of at least :data:`MIN_SIDE` voxels a side, finite in float32,
    with at least :data:`MIN_NONZERO_VOXELS` non-zero voxels that are not all one value; raise naming ``where``.

    Each refusal is a case that would otherwise get a grade: the network answers for any input.
    """
    try:
        volume = np.asanyarray(array)
    except Exception as err:  # objects numpy cannot hold as an array
        raise DataValidationError(f"{where}: not an array ({one_line(err)})") from None
    if volume.dtype.kind not in "biuf":
        raise DataValidationError(f"{where}: voxel type {volume.dtype} is not numeric; expected integers or floats")
    if volume.ndim == 4 and volume.shape[3] == 1:
        volume = volume[..., 0]  # (X, Y, Z, 1): one volume, as MONAI's loader reads it
    if volume.ndim != 3 or volume.size == 0:
        raise DataValidationError(f"{where}: shape {volume.shape}; expected one 3-D volume")
    if min(volume.shape) < MIN_SIDE:
        raise DataValidationError(
            f"{where}: shape {volume.shape} has a side under {MIN_SIDE} voxels; expected a 3-D brain volume"
        )
    if volume.dtype.kind == "f":
        finite = np.isfinite(volume.astype(np.float32)) if volume.dtype.itemsize > 4 else np.isfinite(volume)
        if not finite.all():
            bad = int(volume.size - np.count_nonzero(finite))
            raise DataValidationError(
                f"{where}: {bad} NaN or Inf voxels ({bad / volume.size:.2%}) once read as float32, as the network "
                f"reads them (largest {_FLOAT32_MAX:.3g}); expected finite intensities"
            )
    nonzero = volume[volume != 0]
    if nonzero.size == 0:
        raise DataValidationError(f"{where}: every voxel is 0; expected an MRI volume")
    if nonzero.size < MIN_NONZERO_VOXELS:
        raise DataValidationError(
            f"{where}: only {nonzero.size} non-zero voxels (fewer than {MIN_NONZERO_VOXELS}); expected a brain"
        )
    if nonzero.min() == nonzero.max():
        raise DataValidationError(
            f"{where}: every non-zero voxel is {nonzero.flat[0]}: no contrast; expected an MRI volume"
        )


def _header(path: Path, case_id: str):
    import nibabel as nib

    if not path.is_file():
        raise DataValidationError(f"case '{case_id}': missing file {path}")
    try:
        image = nib.load(str(path))
        image.affine  # noqa: B018 - parse the header now
    except Exception as err:  # nibabel raises many types for broken headers
        raise DataValidationError(f"case '{case_id}': cannot read the header of {path} ({one_line(err)})") from None
    return image


def check_case_headers(case_id: str, paths: Sequence[str | Path]) -> list:
    """Every file exists and has a readable header; all modalities share one grid (shape and affine).

    Reads only the headers (milliseconds per case); returns the nibabel images.
    """
    if not paths:
        raise DataValidationError(f"case '{case_id}': no image files listed")
    files = [Path(p) for p in paths]
    images = [_header(p, case_id) for p in files]
    first, ref = files[0], images[0]
    for path, image in zip(files[1:], images[1:], strict=True):
        if image.shape != ref.shape:
            raise DataValidationError(
                f"case '{case_id}': {path.name} has shape {image.shape} but {first.name} has {ref.shape}; "
                "expected every modality on one grid"
            )
        gap = float(np.max(np.abs(image.affine - ref.affine)))
        if gap > AFFINE_TOLERANCE:
            raise DataValidationError(
                f"case '{case_id}': the affine of {path.name} differs from {first.name}'s by up to {gap:.4g} mm; "
                "expected co-registered modalities on one grid"
            )
    return images


def check_case_data(case_id: str, paths: Sequence[str | Path]) -> list[str]:
    """Headers as :func:`check_case_headers`, then every voxel read (a truncated ``.gz`` fails here) and checked.

    Returns a digest of each file's voxels (SHA-1): equal digests under two ids are one patient listed twice.
    """
    digests = []
    for path, image in zip(paths, check_case_headers(case_id, paths), strict=True):
        try:
            voxels = np.asanyarray(image.dataobj)
        except Exception as err:  # EOFError, zlib.error, OSError, ValueError...
            raise DataValidationError(
                f"case '{case_id}': cannot read the voxels of {path} ({one_line(err)}); "
                "the file is truncated or corrupt"
            ) from None
        check_volume(voxels, f"case '{case_id}': {path}")
        digests.append(hashlib.sha1(np.ascontiguousarray(voxels).tobytes()).hexdigest())
    return digests


def check_fold_classes(records: Sequence[dict], source: str, fold: int | None, split: str = "training") -> None:
    """Both grades must be present in a training split: the loss weights and the AUC need them."""
    present = {int(r["label"]) for r in records if r.get("label") is not None}
    missing = [LABEL_NAMES[c] for c in sorted(LABEL_NAMES) if c not in present]
    if missing:
        raise DataValidationError(
            f"datalist {source}: the {split} split of fold {fold} has no {' and no '.join(missing)} case "
            f"({len(records)} cases); expected both grades"
        )


def _stamp(path: str) -> list[int]:
    status = os.stat(path)
    return [status.st_size, status.st_mtime_ns]


def _read_stamps(stamp_file: Path | None) -> dict:
    if stamp_file is None or not stamp_file.is_file():
        return {}
    try:
        stamps = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return {}  # a damaged stamp file only means checking again
    return stamps if isinstance(stamps, dict) else {}


def _unchanged(record: dict, stamps: dict) -> bool:
    """Every file passed before with this size and time, and its voxel digest is known (``[size, mtime, digest]``)."""
    try:
        return all(
            isinstance(stamps.get(str(p)), list) and len(stamps[str(p)]) == 3 and stamps[str(p)][:2] == _stamp(str(p))
            for p in record["image"]
        )
    except OSError:
        return False


def _case_problem(record: dict) -> tuple[str | None, list[str]]:
    try:
        return None, check_case_data(str(record.get("id", "?")), record["image"])
    except DataValidationError as err:
        return str(err), []


def _duplicates(records: Sequence[dict], digests: dict[str, str]) -> dict[str, str]:
    """``{case id: reason}`` for cases sharing a file's voxels with an earlier case: one patient, two ids."""
    owner: dict[str, tuple[str, str]] = {}
    found = {}
    for record in records:
        case = str(record.get("id"))
        for path in record["image"]:
            digest = digests.get(str(path))
            if digest is None:
                continue
            if digest in owner and owner[digest][0] != case:
                other, other_path = owner[digest]
                found[case] = (
                    f"case '{case}': {path} holds the same voxels as {other_path} of case '{other}'; "
                    "expected one id per patient (a patient under two ids is trained and scored on)"
                )
                break
            owner.setdefault(digest, (case, str(path)))
    return found


def check_cases(
    records: Sequence[dict],
    stamp_file: str | Path | None = None,
    workers: int | None = None,
    raise_on_error: bool = True,
) -> dict[str, str]:
    """Read and check every file of ``records`` (threads: decompression and numpy release the GIL), and find
    cases whose files hold the same voxels as another case's.

    Files unchanged since they last passed (``stamp_file``) are not read again: their voxel digests are in
    the stamps. Returns ``{case id: reason}`` of the bad cases; with ``raise_on_error`` the first bad case
    raises, naming how many others failed.
    """
    stamps_path = Path(stamp_file) if stamp_file else None
    stamps = _read_stamps(stamps_path)
    todo = [r for r in records if not _unchanged(r, stamps)]
    workers = max(1, min(workers or os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_case_problem, todo))
    bad = {str(r.get("id")): problem for r, (problem, _) in zip(todo, results, strict=True) if problem is not None}
    for record, (problem, digests) in zip(todo, results, strict=True):
        if problem is None:
            stamps.update({str(p): [*_stamp(str(p)), d] for p, d in zip(record["image"], digests, strict=True)})
    known = {path: value[2] for path, value in stamps.items() if isinstance(value, list) and len(value) == 3}
    for case, reason in _duplicates([r for r in records if str(r.get("id")) not in bad], known).items():
        bad[case] = reason
    if stamps_path is not None:
        write_json(stamps_path, stamps)  # atomic: a killed check leaves the previous stamps
    logger.info(
        f"data check: {len(records)} cases, {len(todo)} read, {len(records) - len(todo)} unchanged since checked, "
        f"{len(bad)} bad"
    )
    if bad and raise_on_error:
        first, *others = bad.values()
        more = f" (and {len(others)} more bad cases: {', '.join(list(bad)[1:6])}...)" if others else ""
        raise DataValidationError(first + more)
    return bad


def check_training_data(
    datalist: str | Path,
    dataset_dir: str | Path | None,
    fold: int,
    modalities: Sequence[str],
    stamp_file: str | Path | None = None,
    workers: int | None = None,
) -> dict:
    """Everything a training run of ``fold`` reads, checked before its first epoch.

    The datalist (labels, paths inside ``dataset_dir``, non-empty folds), both grades in the training
    split, and every voxel of every case. Returns a short summary.
    """
    train = load_records(datalist, dataset_dir, fold, "train", modalities)
    val = load_records(datalist, dataset_dir, fold, "val", modalities)
    check_fold_classes(train, str(datalist), fold)
    if len({r.get("label") for r in val}) < 2:
        logger.warning(f"datalist {datalist}: validation fold {fold} holds one grade only; its AUC is undefined")
    check_cases(train + val, stamp_file, workers)
    return {"train_cases": len(train), "val_cases": len(val)}
