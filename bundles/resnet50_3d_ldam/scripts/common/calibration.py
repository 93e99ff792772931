"""Temperature scaling, expected calibration error, and the operating point stored beside a model.

A network's softmax is often over-confident (LDAM's scaled cosines saturate at 0 and 1). Dividing the
HGG log-odds by one temperature T, fitted on the validation set by minimising the negative
log-likelihood, makes P(HGG) honest without changing the ranking: AUC is unchanged.
The operating point (temperature + decision threshold) is stored as JSON, never pickle.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from .checkpoints import stored_metrics
from .outputs import write_json

__all__ = [
    "DEFAULT_OPERATING_POINT",
    "calibrated_probs",
    "expected_calibration_error",
    "fit_temperature",
    "operating_point_path",
    "read_operating_point",
    "read_operating_point_file",
    "write_operating_point",
]

logger = logging.getLogger(__name__)

DEFAULT_OPERATING_POINT: dict = {"temperature": 1.0, "threshold": 0.5, "threshold_rule": "fixed"}
#: temperatures are searched in [exp(-LOG_T_BOUND), exp(LOG_T_BOUND)].
LOG_T_BOUND = 6.0


def calibrated_probs(logits: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """P(HGG) = sigmoid(logit / T) from HGG log-odds (``logit[HGG] - logit[LGG]``)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(logits: Sequence[float], labels: Sequence[int]) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` under sigmoid(logit / T).

    Returns 1.0 when it cannot be fitted (one class only, or all log-odds zero).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(np.unique(y)) < 2 or not np.any(z):
        return 1.0

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        return -float(np.mean(y * log_expit(scaled) + (1 - y) * log_expit(-scaled)))

    result = minimize_scalar(nll, bounds=(-LOG_T_BOUND, LOG_T_BOUND), method="bounded")
    return float(math.exp(result.x))


def temperature_at_bound(temperature: float) -> bool:
    """Whether a fitted temperature sits at an end of its search range: the fit ran out of room (near-
    constant or perfectly separated log-odds), so the calibrated probabilities say little."""
    return abs(abs(math.log(temperature)) - LOG_T_BOUND) < 1e-3


def expected_calibration_error(labels: Sequence[int], probs: Sequence[float], n_bins: int = 10) -> float:
    """ECE of P(HGG): the case-weighted mean |mean P - fraction HGG| over ``n_bins`` equal-width bins."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        inside = bins == b
        error += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return float(error / len(p))


def operating_point_path(checkpoint: str | Path) -> Path:
    """The JSON stored next to a model: ``models/model.pt`` -> ``models/model.operating_point.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.operating_point.json")


def write_operating_point(checkpoint: str | Path, operating_point: dict) -> Path:
    """Write the temperature, threshold and how they were chosen next to ``checkpoint``."""
    return write_json(operating_point_path(checkpoint), operating_point)


def read_operating_point_file(checkpoint: str | Path) -> dict | None:
    """The JSON object stored next to ``checkpoint`` (None when there is none); a damaged one is refused by name."""
    side_file = operating_point_path(checkpoint)
    if not side_file.is_file():
        return None
    try:
        point = json.loads(side_file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"operating point {side_file} is not readable JSON ({type(err).__name__}: {err}); expected "
            'e.g. {"temperature": 1.3, "threshold": 0.42}: restore it, or delete it to use temperature 1 and '
            "threshold 0.5"
        ) from None
    if not isinstance(point, dict):
        raise ValueError(f"operating point {side_file} holds {type(point).__name__}; expected a JSON object")
    return point


def read_operating_point(checkpoint: str | Path) -> dict:
    """The operating point of a model: its JSON side file, else the metrics stored in the checkpoint.

    A model with neither (trained before operating points existed) gets T = 1 and threshold 0.5,
    with a warning, so its outputs are still produced and said to be uncalibrated.
    """
    point = read_operating_point_file(checkpoint)
    if point is None:
        stored = stored_metrics(checkpoint) if Path(checkpoint).is_file() else {}
        point = {k: stored[k] for k in ("temperature", "threshold", "threshold_rule", "network") if k in stored}
    if "temperature" not in point or "threshold" not in point:
        logger.warning(f"{checkpoint}: no operating point stored; using temperature 1 and threshold 0.5")
        return dict(DEFAULT_OPERATING_POINT)
    return point
