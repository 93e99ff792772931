"""Ignite handlers the bundles need beyond what MONAI and ignite ship, each the thin glue it must be.

Library parts are used where they exist: ignite's ``EMAHandler`` and ``Checkpoint``, MONAI's
``EarlyStopHandler``; what is here adds the missing piece (a minimum number of epochs, resumable
EMA state, clipping between backward and step, per-epoch seeding, the metric collection).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EMAHandler
from monai.engines import IterationEvents
from monai.handlers import CheckpointLoader, EarlyStopHandler
from monai.utils import evenly_divisible_all_gather, set_determinism, string_list_all_gather

from .report import RunReport
from .reporting import classification_metrics, write_prediction_csv
from .runs import select_checkpoint, stored_metrics

logger = logging.getLogger(__name__)


def _items(output) -> list[dict]:
    """Engine output as a list of per-case dicts (MONAI decollates unless ``decollate=False``)."""
    if isinstance(output, dict):
        batch = output["pred"].shape[0]
        return [
            {k: (v[i] if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in output.items()}
            for i in range(batch)
        ]
    return list(output)


def batch_ids(engine: Engine) -> list[str]:
    """Case ids of the current batch: engine outputs hold only image / label / pred, the batch keeps ``id``."""
    batch = engine.state.batch
    if isinstance(batch, dict):
        ids = batch.get("id")
        return [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(batch["image"]))]
    return [str(item.get("id", i)) for i, item in enumerate(batch)]


def hgg_probability_output(output) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``output_transform`` for MONAI's ROCAUC: softmax P(HGG) and the label, per case."""
    items = _items(output)
    probs = [torch.softmax(item["pred"].float(), dim=0)[1:] for item in items]
    labels = [torch.as_tensor(item["label"]).reshape(1).float() for item in items]
    return probs, labels


class EpochMetrics:
    """Collect P(HGG), labels, ids and loss over an epoch; compute the grading metrics at its end.

    Metrics go to ``engine.state.metrics`` as ``<prefix>_<name>`` (so ``CheckpointSaver`` and
    early stopping can key on ``<prefix>_selection_score``) and into the run report. Under DDP the
    ranks' predictions are gathered first. For an evaluator, the epoch is the trainer's (MONAI's
    ``ValidationHandler`` runs the evaluator with the trainer's epoch).

    Args:
        report: the run's :class:`RunReport`.
        prefix: ``train``, ``val``, ``val_ema``...
        loss_function: recomputes the loss on the collected logits (evaluators have none of their own).
        optimizer: when given, its learning rates are logged per epoch.
        logit_scale: P(HGG) = softmax(logit_scale * logits); LDAM trains softmax(s * logits), so pass s.
    """

    def __init__(
        self,
        report: RunReport,
        prefix: str,
        loss_function: Callable | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        logit_scale: float = 1.0,
    ) -> None:
        self.logit_scale = logit_scale
        self.report = report
        self.prefix = prefix
        self.loss_function = loss_function
        self.optimizer = optimizer
        self._reset(None)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, _engine: Engine | None) -> None:
        self.logits: list[torch.Tensor] = []
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.losses: list[float] = []

    def _collect(self, engine: Engine) -> None:
        items = _items(engine.state.output)
        for item, case_id in zip(items, batch_ids(engine), strict=True):
            self.logits.append(item["pred"].detach().float().cpu().reshape(-1))
            self.labels.append(int(torch.as_tensor(item["label"]).reshape(-1)[0]))
            self.ids.append(case_id)
        loss = items[0].get("loss") if items else None
        if loss is not None:
            self.losses.append(float(loss))

    def __call__(self, engine: Engine) -> None:
        logits = torch.stack(self.logits) if self.logits else torch.zeros(0, 2)
        labels = torch.tensor(self.labels, dtype=torch.long)
        ids = list(self.ids)
        if idist.get_world_size() > 1:
            logits = evenly_divisible_all_gather(logits, concat=True)
            labels = evenly_divisible_all_gather(labels, concat=True)
            ids = string_list_all_gather(ids)
        if not torch.isfinite(logits).all():
            raise FloatingPointError(
                f"{self.prefix} epoch {engine.state.epoch}: the network produced non-finite outputs (training "
                "diverged); lower learning_rate, keep grad_clip on, or train in float32 (autocast_dtype)"
            )
        probs = torch.softmax(self.logit_scale * logits, dim=1)[:, 1].tolist()
        metrics = classification_metrics(labels.tolist(), probs)
        if self.losses:
            metrics["loss"] = sum(self.losses) / len(self.losses)
        elif self.loss_function is not None and len(logits):
            with torch.no_grad():
                metrics["loss"] = float(self.loss_function(logits, labels))
        epoch = engine.state.epoch
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and value is not None:
                engine.state.metrics[f"{self.prefix}_{key}"] = value
        if self.optimizer is not None:
            for i, group in enumerate(self.optimizer.param_groups):
                self.report.log_value("lr" if i == 0 else f"lr_group{i}", epoch, group["lr"])
        self.report.record(self.prefix, epoch, metrics, ids, labels.tolist(), probs)
        auc = metrics["auc"]
        logger.info(
            f"epoch {epoch} {self.prefix}: loss {metrics.get('loss', float('nan')):.6f} "
            f"auc {auc if auc is None else round(auc, 4)} f1 {metrics['f1']:.4f} acc {metrics['accuracy']:.4f}"
        )


class EMA(EMAHandler):
    """ignite's ``EMAHandler`` with a decay, an update every ``every`` iterations, and resumable state.

    ``momentum = 1 - decay`` (decay 0.999 -> momentum 0.001). With gradient accumulation the EMA
    should follow optimiser steps, so ``every`` = accumulation steps. The momentum warm-up only
    works under ignite's default attribute name ``ema_momentum``, which :meth:`attach` keeps.
    ``state_dict`` holds the EMA weights and the warm-up position, so a resumed run continues
    the same average. Buffers are averaged too (``handle_buffers="update"``, as timm does).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        decay: float = 0.999,
        warmup_decay: float | None = None,
        warmup_iters: int = 0,
        every: int = 1,
        handle_buffers: str = "update",
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        warm = warmup_iters > 0 and warmup_decay is not None
        super().__init__(
            model,
            momentum=1.0 - decay,
            momentum_warmup=(1.0 - warmup_decay) if warm else None,
            warmup_iters=warmup_iters if warm else None,
            handle_buffers=handle_buffers,
        )
        self.every = max(1, int(every))

    def attach(
        self, engine: Engine, name: str = "ema_momentum", warn_if_exists: bool = False, event=None
    ) -> None:
        super().attach(engine, name, warn_if_exists, event or Events.ITERATION_COMPLETED(every=self.every))

    def state_dict(self) -> dict:
        state = {"ema_model": self.ema_model.state_dict()}
        scheduler = getattr(self, "momentum_scheduler", None)
        if scheduler is not None:  # only the position: the schedule itself is rebuilt from the config
            state["warmup_event_index"] = scheduler.event_index
        return state

    def load_state_dict(self, state: dict) -> None:
        self.ema_model.load_state_dict(state["ema_model"])
        scheduler = getattr(self, "momentum_scheduler", None)
        if scheduler is not None and "warmup_event_index" in state:
            scheduler.event_index = int(state["warmup_event_index"])


class EarlyStopping(EarlyStopHandler):
    """MONAI's ``EarlyStopHandler`` on an evaluator's metric, that never stops before ``min_epochs``.

    Attached to the trainer (so the config has no trainer <-> evaluator cycle); it acts only on
    epochs where ``evaluator`` ran. Patience still counts during the first ``min_epochs``; a stop
    they would trigger is deferred to the first validation at or after ``min_epochs``
    (seed 001: patience 7, minimum 10, any improvement counts).
    """

    def __init__(
        self,
        evaluator: Engine,
        metric_name: str = "val_selection_score",
        patience: int = 7,
        min_epochs: int = 10,
        min_delta: float = 0.0,
    ) -> None:
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.min_epochs = min_epochs
        super().__init__(patience=patience, score_function=self._score, trainer=None, min_delta=min_delta)

    def attach(self, engine: Engine) -> None:
        self.set_trainer(engine)
        super().attach(engine)

    def _score(self, _engine: Engine) -> float:
        metrics = self.evaluator.state.metrics
        if self.metric_name not in metrics:
            raise KeyError(f"early stopping: metric '{self.metric_name}' not in {sorted(metrics)}")
        return float(metrics[self.metric_name])

    def __call__(self, engine: Engine) -> None:
        if self.evaluator.state.epoch != engine.state.epoch:  # no validation this epoch (val_interval > 1)
            return
        super().__call__(engine)
        if engine.should_terminate and engine.state.epoch < self.min_epochs:
            engine.should_terminate = False
            logger.info(f"early stopping deferred: epoch {engine.state.epoch} < min_epochs {self.min_epochs}")


class GradientClipping:
    """Clip the gradient norm between backward and the optimiser step (MONAI's trainer has no option).

    Runs on ``BACKWARD_COMPLETED`` and only on iterations that step (gradient accumulation); with
    a CUDA ``GradScaler`` the gradients are unscaled first so the norm is in real units.
    """

    def __init__(self, max_norm: float = 0.5, parameters: Sequence[torch.nn.Parameter] | None = None) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = max_norm
        self.parameters = parameters

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        acc = getattr(engine, "accumulation_steps", 1)
        if acc > 1:
            local = (engine.state.iteration - 1) % engine.state.epoch_length
            if (local + 1) % acc and local + 1 != engine.state.epoch_length:
                return
        if getattr(engine, "scaler", None) is not None and engine.amp:
            engine.scaler.unscale_(engine.optimizer)
        params = self.parameters if self.parameters is not None else engine.network.parameters()
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)


class EpochSeeding:
    """Reseed every random source at each epoch start from ``seed + epoch``.

    Each epoch's augmentation, sampling and dropout then depend only on (seed, epoch), so a run
    resumed from ``last.pt`` draws the same numbers as an uninterrupted one (with
    ``num_workers`` 0 or non-persistent workers, whose seeds come from the main process).
    """

    def __init__(self, seed: int = 42, datasets: Sequence | None = None) -> None:
        self.seed = seed
        self.datasets = list(datasets or [])

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_seed = self.seed + engine.state.epoch
        set_determinism(seed=epoch_seed)
        for dataset in self.datasets:
            transform = getattr(dataset, "transform", None)
            if hasattr(transform, "set_random_state"):
                transform.set_random_state(seed=epoch_seed)


class StopAtEpoch:
    """End training after ``epoch`` epochs without changing the schedule (time-limited or preemptible jobs).

    The learning-rate schedule and everything else still follow ``max_epochs``; resume later from
    ``last.pt``. 0 disables.
    """

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def attach(self, engine: Engine) -> None:
        if self.epoch > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch >= self.epoch:
            logger.info(
                f"stopping after epoch {engine.state.epoch} as asked (stop_epoch); resume from last.pt"
            )
            engine.terminate()


class Resume(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` that also restores the trainer it is attached to.

    The trainer cannot be listed in the config's ``load_dict`` (it holds this handler: a cycle),
    so it is added at attach time under the key ``trainer``. An empty ``load_path`` disables it.
    """

    def __init__(self, load_path: str, load_dict: dict, map_location=None) -> None:
        self.enabled = bool(load_path)
        super().__init__(load_path=load_path or ".", load_dict=dict(load_dict), map_location=map_location)

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            self.load_dict["trainer"] = engine
            super().attach(engine)


class LastCheckpoint:
    """Save ``save_dict`` to ``<save_dir>/last.pt`` after every epoch (ignite ``Checkpoint``, atomic write)."""

    def __init__(
        self, save_dir: str, save_dict: dict, filename: str = "last.pt", enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.save_dir = save_dir
        self.save_dict = dict(save_dict)
        self.filename = filename

    def attach(self, engine: Engine) -> None:
        """Adds the trainer itself (epoch, iteration) to what is saved, as :class:`Resume` expects."""
        if not self.enabled:
            return
        checkpoint = Checkpoint(
            {**self.save_dict, "trainer": engine},
            DiskSaver(self.save_dir, require_empty=False, atomic=True),
            filename_pattern=self.filename,
            n_saved=1,
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)


class RunFinalizer:
    """At the end of training: write the report's plots and predictions, publish the best weights.

    The published file is a plain state dict (what the model zoo's ``ckpt_export`` expects), taken
    from the candidate with the best stored validation score (``best_ema.pt`` wins ties with ``best.pt``).
    A file already at ``publish_path`` is kept as ``<name>.previous.pt``.
    """

    def __init__(
        self,
        report: RunReport,
        candidates: Sequence[str] = (),
        publish_path: str = "",
        enabled: bool = True,
    ) -> None:
        self.report = report
        self.candidates = list(candidates)
        self.publish_path = publish_path
        self.enabled = enabled

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            return
        self.report.finalize()
        if not self.publish_path:
            return
        source = select_checkpoint(self.candidates)
        if source is None:
            logger.warning(f"no best checkpoint among {self.candidates}: nothing published")
            return
        state = torch.load(source, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        target = Path(self.publish_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.copy2(target, target.with_suffix(".previous.pt"))
        torch.save(state, target)
        logger.info(f"published {source} as {target}")


class PredictionWriter:
    """Write one CSV row per case (id, P(HGG), predicted grade[, true grade]) when inference completes.

    The file is never overwritten: an existing ``predictions.csv`` makes ``predictions_1.csv``...
    ``probabilities`` says the engine's ``pred`` is already softmaxed (postprocessing), else logits.
    """

    def __init__(self, output_file: str, probabilities: bool = False) -> None:
        self.output_file = Path(output_file)
        self.probabilities = probabilities
        self.ids: list[str] = []
        self.probs: list[float] = []
        self.labels: list[int] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _collect(self, engine: Engine) -> None:
        items = _items(engine.state.output)
        self.ids.extend(batch_ids(engine))
        for item in items:
            pred = item["pred"].detach().float().reshape(-1)
            self.probs.append(float(pred[1] if self.probabilities else torch.softmax(pred, dim=0)[1]))
            label = item.get("label")
            if label is not None:
                self.labels.append(int(torch.as_tensor(label).reshape(-1)[0]))

    def __call__(self, _engine: Engine) -> None:
        path, n = self.output_file, 0
        while path.exists():
            n += 1
            path = self.output_file.with_name(f"{self.output_file.stem}_{n}{self.output_file.suffix}")
        labels = self.labels if len(self.labels) == len(self.ids) else None
        write_prediction_csv(path, self.ids, self.probs, labels)
        logger.info(f"wrote {len(self.ids)} predictions to {path}")


class CheckpointMetricCheck:
    """Fail evaluation when the AUC it computes differs from the AUC stored with the checkpoint.

    Seed 000's checkpoint policy: a checkpoint must reproduce the number it was selected on; a
    mismatch means wrong weights, wrong fold or wrong preprocessing, and must not pass silently.
    """

    def __init__(self, checkpoint_path: str, metric_name: str = "val_auc", tolerance: float = 1e-3) -> None:
        self.checkpoint_path = checkpoint_path
        self.metric_name = metric_name
        self.tolerance = tolerance

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        stored = stored_metrics(self.checkpoint_path).get("auc")
        if stored is None:
            logger.warning(f"{self.checkpoint_path} stores no AUC: nothing to check against")
            return
        computed = engine.state.metrics.get(self.metric_name)
        if computed is None or abs(computed - stored) > self.tolerance:
            raise RuntimeError(
                f"evaluation AUC {computed} differs from the AUC {stored} stored in {self.checkpoint_path} "
                f"(tolerance {self.tolerance}): wrong checkpoint, fold, data or preprocessing?"
            )
        logger.info(f"AUC {computed:.4f} matches the {stored:.4f} stored in {self.checkpoint_path}")
