"""Run folders: one per run, never overwritten, with a fixed layout; the run's log file and config snapshot.

Layout: ``<output_dir>/fold_<k>/run_<time>/{checkpoints,metrics,plots,predictions,config,logs}``.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .outputs import unused_path

__all__ = ["calling_parser", "create_run_dir", "latest_checkpoint", "log_to_file", "resolved_config", "save_run_config"]

SKIPPED_KEYS: tuple[str, ...] = ("imports", "initialize", "run", "finalize", "network", "network_def")


def _is_statement_list(value) -> bool:
    """A list of expressions only (``run``, ``make_datalist``...): run ids, evaluated only when run."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.startswith("$") for v in value)


RUN_SUBDIRS: tuple[str, ...] = ("checkpoints", "metrics", "plots", "predictions", "config", "logs")


def create_run_dir(output_dir: str | Path, fold: int | None = None, resume_from: str = "", prefix: str = "run") -> str:
    """Make ``<output_dir>/fold_<k>/<prefix>_YYYYmmdd_HHMMSS[_n]`` with the standard sub-folders.

    A resumed run (``resume_from`` = a checkpoint inside ``<run>/checkpoints``) continues in its own folder.
    An existing folder is never reused: a suffix ``_1``, ``_2``... is added instead.
    Under ``torch.distributed``, rank 0 names the folder and every rank receives that name.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [_make_run_dir(output_dir, fold, resume_from, prefix) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        return str(shared[0])
    return _make_run_dir(output_dir, fold, resume_from, prefix)


def _make_run_dir(output_dir: str | Path, fold: int | None, resume_from: str, prefix: str) -> str:
    if resume_from:
        checkpoint = Path(resume_from)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"resume_from: checkpoint {checkpoint} does not exist")
        run_dir = checkpoint.resolve().parent.parent
    else:
        parent = Path(output_dir) / (f"fold_{fold}" if fold is not None else "all")
        stamp = time.strftime("%Y%m%d_%H%M%S")
        run_dir = unused_path(parent / f"{prefix}_{stamp}", suffix="")
    for sub in RUN_SUBDIRS:
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    return str(run_dir)


def calling_parser():
    """monai.bundle gives an expression no handle on its parser; the one evaluating us is on the call stack."""
    from monai.bundle import ConfigParser

    frame = inspect.currentframe()  # walking frames: inspect.stack() would read every module's source file
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, ConfigParser):
                return value
        frame = frame.f_back
    return None


def resolved_config(parser, skip: Sequence[str] = (), keys: Sequence[str] | None = None, objects: bool = True) -> dict:
    """Every top-level scalar or list of the config after expressions and references are evaluated
    (``device``, ``run_dir``, ``spatial_size``...): what a reader needs to rerun it. ``keys`` limits it;
    values JSON cannot hold are saved as their ``str`` (``objects``) or left out."""
    raw = parser.get()
    resolved = {}
    for key, value in raw.items():
        if keys is not None and key not in keys:
            continue
        if key in SKIPPED_KEYS or key in skip or isinstance(value, dict) or _is_statement_list(value):
            continue
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            continue
        parsed = parser.get_parsed_content(key)
        try:
            json.dumps(parsed)
        except TypeError:
            if not objects:
                continue
            parsed = str(parsed)
        resolved[key] = parsed
    return resolved


def save_run_config(
    run_dir: str | Path, name: str = "config.json", skip: Sequence[str] = (), resume_from: str = "", changes=None
) -> str:
    """Write the merged config of this run (files + CLI overrides) and the resolved top-level values.

    Call it from a bundle config expression, e.g. ``"$scripts.common.run_folder.save_run_config(@run_dir)"``.
    Keys in ``skip`` are saved as written but not evaluated (values that load models or need files a later
    step writes). A resumed run (``resume_from``) keeps the ``config.json`` its run started with and writes
    ``resume.json`` (``resume_1.json``...) beside it, with the ``changes`` :func:`..resume.check_resume` allowed.
    The file is written whole or not at all (temporary file, then rename).
    """
    parser = calling_parser()
    if parser is None:
        raise RuntimeError("save_run_config must be called from a monai.bundle config expression")
    content = {"config": parser.get(), "resolved": resolved_config(parser, skip)}
    folder = Path(run_dir) / "config"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if resume_from:
        content.update(resumed_from=str(resume_from), changes=changes or {})
        path = unused_path(folder / "resume.json")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2, default=str) + "\n")
    os.replace(temporary, path)
    return str(path)


def latest_checkpoint(output_dir: str | Path, fold: int | None = None, filename: str = "last.pt") -> str:
    """``last.pt`` of the newest run of ``fold`` (``resume: true``); an error when that run has none.

    The newest run is the newest folder, not the newest checkpoint: a run killed before its first epoch
    ended has no ``last.pt``, and continuing an older run in its place would be a silent jump to other work.
    """
    parent = Path(output_dir) / (f"fold_{fold}" if fold is not None else "all")
    runs = sorted((p for p in parent.glob("run_*") if p.is_dir()), key=_run_order)
    if not runs:
        raise FileNotFoundError(f"resume: no run folder under {parent} to resume (train without --resume first)")
    checkpoint = runs[-1] / "checkpoints" / filename
    if not checkpoint.is_file():
        older = [r / "checkpoints" / filename for r in runs[:-1] if (r / "checkpoints" / filename).is_file()]
        hint = f"; to continue an older run, pass --resume_from {older[-1]}" if older else ""
        raise FileNotFoundError(
            f"resume: the newest run {runs[-1]} has no checkpoints/{filename} (stopped before its first epoch "
            f"ended): train it again without --resume{hint}"
        )
    return str(checkpoint)


def _run_order(run: Path) -> tuple[str, int]:
    """Run folders by creation: ``run_<time>`` then ``run_<time>_1``, ``_2``... (``unused_path``'s suffixes)."""
    stem, _, suffix = run.name.rpartition("_")
    if suffix.isdigit() and len(suffix) < 6 and stem.count("_") >= 2:
        return stem, int(suffix)
    return run.name, 0


def log_to_file(run_dir: str | Path, prefix: str = "train") -> str:
    """Send the root logger's records also to ``<run_dir>/logs/<prefix>_YYYYmmdd_HHMMSS.log``."""
    import logging

    path = Path(run_dir) / "logs" / f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return str(path)
