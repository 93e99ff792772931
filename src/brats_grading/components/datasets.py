"""The MONAI datasets of the bundles: training's cached preprocessing, and inference's guard against bad cases.

Caching makes the model, not the loader, set the pace after the first epoch. The guard lets a batch
inference over hundreds of patients finish when one case is broken, and say which and why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from monai.data import Dataset

from .validation import DataValidationError, check_case_data, check_case_headers, one_line

__all__ = ["CACHE_MODES", "FAILURE_KEY", "GuardedDataset", "cached_dataset", "content_hashing", "loader_workers"]

CACHE_MODES: tuple[str, ...] = ("disk", "memory", "none")
#: key of the reason a case could not be prepared ("" for a good case)
FAILURE_KEY = "failure"


def cached_dataset(data: Sequence[dict], transform, cache: str = "disk", cache_dir: str | Path = "cache"):
    """A MONAI dataset that caches the deterministic preprocessing: on ``disk`` (default), in ``memory``, or ``none``.

    A preprocessed 128^3 case is 32 MiB in float32, so all of BraTS 2018 is ~9 GiB: disk by default.
    The disk cache key includes the transforms, so changing ``spatial_size`` never reuses stale files, and
    each file's content identity (:func:`content_hashing`), so a case replaced in place is preprocessed again.
    """
    from monai.data import CacheDataset, PersistentDataset
    from monai.data.utils import json_hashing

    if cache == "disk":
        return PersistentDataset(
            data=data, transform=transform, cache_dir=cache_dir, hash_func=content_hashing, hash_transform=json_hashing
        )
    if cache == "memory":
        return CacheDataset(data=data, transform=transform, num_workers=None, progress=False)
    if cache == "none":
        return Dataset(data=data, transform=transform)
    raise ValueError(f"cache '{cache}' must be one of {CACHE_MODES}")


#: bytes of each file hashed for its content identity (a NIfTI header and the start of its data)
IDENTITY_BYTES = 1 << 16
_identities: dict[tuple, str] = {}


def content_hashing(record: dict) -> bytes:
    """Disk-cache key of a record: the record itself and, for each file it names, its size, modification
    time and a SHA-256 of its first 64 KiB (its header and the start of its data).

    MONAI keys ``PersistentDataset`` entries by the record (paths, id, label) alone, so replacing a case's
    files under the same names would serve the old tensors. A file's hash is computed once per process for
    each (path, inode, size, mtime, ctime): later epochs only ``stat`` it.
    """
    from monai.data.utils import pickle_hashing

    files = record.get("image", [])
    identity = [_file_identity(f) for f in ([files] if isinstance(files, str) else files)]
    return pickle_hashing({"record": record, "files": identity})


def _file_identity(path: str) -> tuple:
    try:
        stat = os.stat(path)
    except OSError:
        return (str(path), None)  # a missing file: the transform raises, naming it
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)  # any write moves ctime
    if key not in _identities:
        with open(path, "rb") as handle:
            _identities[key] = hashlib.sha256(handle.read(IDENTITY_BYTES)).hexdigest()
    return (stat.st_size, stat.st_mtime_ns, _identities[key])


def loader_workers(device: str, cache: str, otherwise: int = 4) -> int:
    """DataLoader workers for training and validation: none on a CPU with the cache in ``memory``, else ``otherwise``.

    The memory cache is filled by threads before training, so each batch then only needs its random flips
    and affine, which the main process does in a few milliseconds with all its threads. Worker processes
    would instead interrupt the compute threads that share their cores: on two cores, 0 workers gave 1.23x
    the training and 1.50x the validation throughput of 4 (docs/performance.md). A disk cache keeps the
    workers: its first epoch preprocesses every case (about 1 s each), which the workers do in parallel.
    """
    import torch

    if cache not in CACHE_MODES:
        raise ValueError(f"cache '{cache}' must be one of {CACHE_MODES}")
    return 0 if torch.device(device).type == "cpu" and cache == "memory" else otherwise


class GuardedDataset(Dataset):
    """A MONAI ``Dataset`` whose bad cases become placeholders carrying the reason, instead of stopping the run.

    Before the transform, the case's headers are checked (files present, one grid); an error of the
    transform is then explained by reading the case's files one by one, so the reason names the file
    (truncated, NaN, all zero...). A failed case yields ``placeholder`` (zeros shaped like a good input)
    plus its non-image keys, so it batches with good cases; every item carries ``failure`` ("" when good).
    The prediction writers skip failed cases and report them.

    Args:
        data: records with ``id`` and ``image`` (file paths).
        transform: the preprocessing.
        placeholder: ``{key: tensor}`` standing for a failed case's inputs; ``None`` raises the reason instead.
    """

    def __init__(self, data: Sequence[dict], transform, placeholder: dict | None = None) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder = placeholder

    def _transform(self, index: int):
        record = self.data[index]
        case_id = str(record.get("id", index))
        try:
            check_case_headers(case_id, record["image"])
            item = super()._transform(index)
        except Exception as err:  # one case's failure, whatever it is, must not stop the others
            reason = _explain(case_id, record, err)
            if self.placeholder is None:
                raise DataValidationError(reason) from err
            item = {k: v for k, v in record.items() if k != "image"}
            item.update({k: v.clone() for k, v in self.placeholder.items()})
            item[FAILURE_KEY] = reason
            return item
        item[FAILURE_KEY] = ""
        return item


def _explain(case_id: str, record: dict, err: Exception) -> str:
    """One line naming the file at fault: the check's own message, else what reading each file finds."""
    if isinstance(err, DataValidationError):
        return str(err)
    try:
        check_case_data(case_id, record["image"])
    except DataValidationError as found:
        return str(found)
    while err.__cause__ is not None:  # MONAI wraps a transform's error in "applying transform ..."
        err = err.__cause__
    return f"case '{case_id}': preprocessing failed ({one_line(err)})"
