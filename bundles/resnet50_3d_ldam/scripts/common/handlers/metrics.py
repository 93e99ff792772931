"""The per-epoch grading metrics of an engine, with the operating point chosen on validation epochs.

MONAI's metric handlers compute one number each; grading needs the whole set (AUC, F1, sensitivity,
specificity at a chosen threshold, calibration) from the same P(HGG), and per-case predictions for
the report, so one handler collects the epoch's logits and computes them all at its end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from monai.utils import evenly_divisible_all_gather, string_list_all_gather

from ..calibration import calibrated_probs, expected_calibration_error, fit_temperature, temperature_at_bound
from ..metrics import THRESHOLD_RULES, choose_threshold, classification_metrics
from ..run_report import RunReport
from .engine_outputs import batch_ids, case_items, case_label_tensor, hgg_log_odds

__all__ = ["EpochMetricsHandler"]

logger = logging.getLogger(__name__)


class EpochMetricsHandler:
    """Collect logits, labels, ids and loss over an epoch; compute the grading metrics at its end.

    On a validation epoch the temperature (calibration) is fitted and the operating threshold chosen
    on that epoch's predictions, unless a stored ``operating_point`` is given (evaluation of a saved
    model). Metrics go to ``engine.state.metrics`` as ``<prefix>_<name>`` (``CheckpointSaver`` and
    early stopping key on ``<prefix>_selection_score``) and into the run report; a collapsed model
    (see :func:`..metrics.collapse_reason`) is logged as a warning. Under DDP the ranks' predictions
    are gathered first. For an evaluator the epoch is the trainer's (MONAI's ``ValidationHandler``
    runs the evaluator with the trainer's epoch).

    Args:
        report: the run's :class:`RunReport`.
        prefix: ``train``, ``val``, ``val_ema``...
        loss_function: recomputes the loss on the collected logits (evaluators have none of their own).
        optimizer: when given, its learning rates are logged per epoch.
        threshold_rule: ``"prior"``, ``"youden"``, ``"f1"`` or ``"fixed"`` (see :func:`..metrics.choose_threshold`).
        fixed_threshold: the ``"fixed"`` rule's threshold, in [0, 1].
        hgg_prior: the share of HGG among the training cases, the ``"prior"`` rule's threshold.
        calibrate: fit a temperature on this epoch's predictions (validation); False keeps T = 1.
        operating_point: ``{"temperature", "threshold"[, "threshold_rule"]}`` to use instead of fitting.
    """

    def __init__(
        self,
        report: RunReport,
        prefix: str,
        loss_function: Callable | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        threshold_rule: str = "youden",
        fixed_threshold: float = 0.5,
        hgg_prior: float | None = None,
        calibrate: bool = True,
        operating_point: dict | None = None,
    ) -> None:
        if threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"threshold_rule '{threshold_rule}' must be one of {THRESHOLD_RULES}")
        if not 0.0 <= fixed_threshold <= 1.0:
            raise ValueError(f"fixed_threshold must be in [0, 1], got {fixed_threshold}")
        if hgg_prior is not None and not 0.0 < hgg_prior < 1.0:
            raise ValueError(f"hgg_prior must be in (0, 1), got {hgg_prior}")
        if operating_point is not None and not {"temperature", "threshold"} <= set(operating_point):
            raise ValueError(f"operating_point needs 'temperature' and 'threshold', got {sorted(operating_point)}")
        if not prefix:
            raise ValueError("prefix must be a non-empty string such as 'val'")
        self.report = report
        self.prefix = prefix
        self.loss_function = loss_function
        self.optimizer = optimizer
        self.threshold_rule = threshold_rule
        self.fixed_threshold = fixed_threshold
        self.hgg_prior = hgg_prior
        self.calibrate = calibrate
        self.operating_point = operating_point
        self._reset(None)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, _engine: Engine | None) -> None:
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.ids: list[str] = []
        self.losses: list[torch.Tensor] = []

    def _collect(self, engine: Engine) -> None:
        items = case_items(engine.state.output)
        for item, case_id in zip(items, batch_ids(engine), strict=True):
            self.logits.append(item["pred"].detach().float().reshape(-1))
            self.labels.append(case_label_tensor(item))  # tensors until the epoch ends: no host sync per iteration
            self.ids.append(case_id)
        loss = items[0].get("loss") if items else None
        if loss is not None:  # kept as a tensor: no host sync per iteration
            self.losses.append(torch.as_tensor(loss).detach().float().reshape(()))

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        logits = torch.stack(self.logits).cpu() if self.logits else torch.zeros(0, 2)
        labels = torch.stack(self.labels).cpu() if self.labels else torch.zeros(0, dtype=torch.long)
        ids = list(self.ids)
        if idist.get_world_size() > 1:
            logits = evenly_divisible_all_gather(logits, concat=True)
            labels = evenly_divisible_all_gather(labels, concat=True)
            ids = string_list_all_gather(ids)
        return logits, labels, ids

    def _operating_point(self, log_odds: list[float], labels: list[int]) -> tuple[float, float, str, list[float]]:
        """Temperature, threshold, threshold rule and the calibrated P(HGG) they give."""
        if self.operating_point is not None:
            point = self.operating_point
            temperature, threshold = float(point["temperature"]), float(point["threshold"])
            return (
                temperature,
                threshold,
                point.get("threshold_rule", "stored"),
                calibrated_probs(log_odds, temperature).tolist(),
            )
        temperature = fit_temperature(log_odds, labels) if self.calibrate else 1.0
        probs = calibrated_probs(log_odds, temperature).tolist()
        threshold = choose_threshold(labels, probs, self.threshold_rule, self.fixed_threshold, self.hgg_prior)
        return temperature, threshold, self.threshold_rule, probs

    def __call__(self, engine: Engine) -> None:
        logits, labels, ids = self._gathered()
        epoch = engine.state.epoch
        if not torch.isfinite(logits).all():
            raise FloatingPointError(
                f"{self.prefix} epoch {epoch}: the network produced non-finite outputs (training diverged); "
                "lower learning_rate, keep grad_clip on, or train in float32 (autocast_dtype)"
            )
        log_odds = hgg_log_odds(logits).tolist() if len(logits) else []
        label_list = labels.tolist()
        temperature, threshold, rule, probs = self._operating_point(log_odds, label_list)
        raw_probs = calibrated_probs(log_odds, 1.0).tolist()
        metrics = classification_metrics(label_list, probs, threshold, raw_probs=raw_probs)
        metrics.update(
            temperature=temperature,
            temperature_at_bound=self.operating_point is None and self.calibrate and temperature_at_bound(temperature),
            threshold_rule=rule,
            ece=expected_calibration_error(label_list, probs),
            ece_uncalibrated=expected_calibration_error(label_list, raw_probs),
        )
        if self.losses:
            metrics["loss"] = float(torch.stack(self.losses).mean())
        elif self.loss_function is not None and len(logits):
            with torch.no_grad():
                metrics["loss"] = float(self.loss_function(logits, labels))
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                engine.state.metrics[f"{self.prefix}_{key}"] = value
        if self.optimizer is not None:
            for i, group in enumerate(self.optimizer.param_groups):
                self.report.log_value("lr" if i == 0 else f"lr_group{i}", epoch, group["lr"])
        self.report.record(self.prefix, epoch, metrics, ids, label_list, probs, log_odds)
        auc = metrics["auc"]
        logger.info(
            f"epoch {epoch} {self.prefix}: loss {metrics.get('loss', float('nan')):.6f} "
            f"auc {auc if auc is None else round(auc, 4)} f1 {metrics['f1']:.4f} acc {metrics['accuracy']:.4f} "
            f"threshold {threshold:.4g} T {temperature:.3g}"
        )
        if metrics["collapsed"]:
            logger.warning(f"epoch {epoch} {self.prefix}: model collapsed: {metrics['collapse_reason']}")
        if metrics["temperature_at_bound"]:
            logger.warning(
                f"epoch {epoch} {self.prefix}: fitted temperature {temperature:.3g} is at a bound of its search "
                "range: the calibrated P(HGG) and threshold rest on near-constant or perfectly separated log-odds"
            )
