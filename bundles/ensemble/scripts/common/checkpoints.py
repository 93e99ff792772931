"""Checkpoints of a run: the metrics stored beside the weights, and which checkpoint is the run's model.

Training keeps ``best.pt`` (raw weights) and ``best_ema.pt`` (EMA weights), each with the validation
metrics of the epoch that saved it; the run's model is whichever of the two validated better.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

__all__ = ["UntrustedFileError", "best_checkpoint", "load_weights", "select_checkpoint", "stored_metrics"]


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


class UntrustedFileError(ValueError):
    """A weight file needs pickled code to load; it is refused, since unpickling code runs it."""


def load_weights(path: str | Path, description: str = "weight file", mmap: bool = False):
    """``torch.load`` of tensors and plain containers only (``weights_only=True``); pickled code is refused.

    Every checkpoint, weight and pretrained file of the package is read here, so a file that would run
    code when unpickled fails with one message naming it (:class:`UntrustedFileError`), and a missing or
    damaged file is named too. Nothing is downloaded.
    """
    shown = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"{description} not found at '{shown}'. Nothing is downloaded: put the file there, or set "
            "the option that names it to ''."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED_GLOBAL.search(str(err))
        holds = f" (it references {found.group(1)})" if found else ""
        raise UntrustedFileError(
            f"{description} '{shown}' was refused: loading it would run pickled code{holds}, and weight files "
            "are read with weights_only=True so that none runs. Re-save only the state dict, e.g. "
            "torch.save(model.state_dict(), path), from a source you trust."
        ) from err
    except (RuntimeError, EOFError, KeyError, OSError, ValueError) as err:  # truncated, or not a torch.save file
        raise ValueError(
            f"{description} '{shown}' is not a readable PyTorch checkpoint ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]})."
        ) from err


def stored_metrics(checkpoint: str | Path) -> dict:
    """The validation metrics saved beside a checkpoint's weights (``{}`` when it holds none).

    The file is memory-mapped, so reading the metrics does not read the weights.
    """
    state = load_weights(checkpoint, "checkpoint", mmap=True)
    return dict(state.get("metrics") or {}) if isinstance(state, dict) else {}


def select_checkpoint(candidates: list[str | Path]) -> str | None:
    """Of the existing ``candidates``, the one with the highest stored selection score; earlier wins ties."""
    existing = [Path(c) for c in candidates if Path(c).is_file()]
    if not existing:
        return None
    scores = [stored_metrics(c).get("selection_score", float("-inf")) for c in existing]
    return str(existing[scores.index(max(scores))])


def best_checkpoint(output_dir: str | Path, fold: int | None = None, prefer_ema: bool = True) -> str:
    """The newest run's selected model: ``best_ema.pt`` or ``best.pt``, whichever validated better.

    Short runs leave the EMA behind the raw weights, long ones usually the reverse, so the stored
    validation score decides (EMA on ties). Never ``last.pt``: name a checkpoint to evaluate that.
    """
    parent = Path(output_dir) / (f"fold_{fold}" if fold is not None else "all")
    runs = sorted(parent.glob("run_*/checkpoints"), key=lambda p: p.stat().st_mtime)
    names = ("best_ema.pt", "best.pt") if prefer_ema else ("best.pt",)
    for checkpoints in reversed(runs):
        chosen = select_checkpoint([checkpoints / n for n in names])
        if chosen:
            return chosen
    raise FileNotFoundError(f"no {' or '.join(names)} under {parent}/run_*/checkpoints; pass --checkpoint PATH")
