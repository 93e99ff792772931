"""A resume continues the run it names, with the settings it was started with, or says what differs.

``--resume_from`` any ``last.pt`` used to be accepted: a fold-0 checkpoint resumed with ``--fold 1``
trained on cases it had validated on and replaced fold 0's ``best.pt``. Before a resumed run writes
anything, :func:`check_resume` compares this run's resolved config with the one the run saved when it
started (``config/config.json``): every key but those that cannot change the result (:data:`FREE_KEYS`),
and the digest of the training and validation cases (:func:`split_digest`). Values that are objects
(the optimiser, the loss) are compared through the keys that build them. A deliberate change needs
``--allow_resume_changes True``, and is recorded in the run's ``config/resume*.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["FREE_KEYS", "ResumeMismatchError", "check_resume", "split_digest"]

#: keys a resume may change: where files are, how fast it runs, what it logs; none changes the weights
FREE_KEYS: frozenset[str] = frozenset(
    {
        "allow_resume_changes", "allow_unknown_keys", "backend", "bundle_root", "cache", "cache_dir",
        "checkpoint_dir", "cpu_threads", "cudnn_benchmark", "datalist", "dataset_dir", "device", "is_main_process",
        "log_interval", "num_workers", "output_dir", "overwrite_datalist", "per_epoch_plots", "persistent_workers",
        "pin_memory", "prefetch_factor", "progress_bar", "publish_model", "resume", "resume_changes", "resume_from",
        "run_dir", "train_records", "val_records", "fold_split", "case_roles",
        "stop_epoch", "tf32", "validate_data",
    }
)  # fmt: skip


class ResumeMismatchError(ValueError):
    """A resume whose settings, fold or cases differ from those of the run it continues."""


def split_digest(train_records: Sequence[dict], val_records: Sequence[dict]) -> str:
    """SHA-256 (first 16 hex digits) of the sorted (id, label) pairs of the training and validation cases:
    the fold's content, wherever the files are."""
    cases = {
        split: sorted([str(r["id"]), r.get("label")] for r in records)
        for split, records in (("train", train_records), ("val", val_records))
    }
    return hashlib.sha256(json.dumps(cases).encode()).hexdigest()[:16]


def check_resume(resume_from: str, allow_changes: bool = False) -> dict:
    """Compare this run's resolved config with the saved one of the run ``resume_from`` belongs to.

    Returns the differences ``{key: [saved, now]}`` (empty when none); raises
    :class:`ResumeMismatchError` on the first one unless ``allow_changes``. Nothing to do without a resume.
    """
    from .run_folder import calling_parser, resolved_config

    if not resume_from:
        return {}
    run_dir = Path(resume_from).resolve().parent.parent
    saved_file = run_dir / "config" / "config.json"
    try:
        saved = json.loads(saved_file.read_text())["resolved"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        if allow_changes:
            return {}
        raise ResumeMismatchError(
            f"resume: cannot check {resume_from} against the run it belongs to: {saved_file} is missing or "
            f"unreadable ({type(err).__name__}). Pass --allow_resume_changes True to resume unchecked"
        ) from None
    parser = calling_parser()
    if parser is None:
        raise RuntimeError("check_resume must be called from a monai.bundle config expression")
    now = resolved_config(parser, keys=[k for k in saved if k not in FREE_KEYS], objects=False)
    changes = {k: [saved[k], now[k]] for k in now if _comparable(saved[k]) != _comparable(now[k])}
    if changes and not allow_changes:
        key, (before, after) = next(iter(changes.items()))
        more = f" (also: {list(changes)[1:]})" if len(changes) > 1 else ""
        what = "the training and validation cases" if key == "split_digest" else f"--{key} {json.dumps(after)}"
        raise ResumeMismatchError(
            f"resume: {what} differs from the {json.dumps(before)} that run {run_dir} was started with{more} "
            f"({saved_file}); resuming would mix two runs. Start a new run, or pass --allow_resume_changes True "
            "to resume with the change (recorded in the run's config/resume*.json)"
        )
    return changes


def _comparable(value):
    """JSON round trip: tuples and lists, ints and equal floats compare as the saved file holds them."""
    return json.loads(json.dumps(value, default=str))
