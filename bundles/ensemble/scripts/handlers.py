"""The ensemble's one ignite handler: collect members' probabilities per case, then combine, write and report."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from .combination import Combiner
from .common.handlers.engine_outputs import batch_ids
from .common.handlers.failures import CaseFailures
from .members import Member
from .reports import write_comparison, write_ensemble_predictions

__all__ = ["EnsembleOutputSaver"]

logger = logging.getLogger(__name__)


class EnsembleOutputSaver:
    """Write the ensemble's predictions CSV; with ``report_dir``, also compare members and ensemble on the labels.

    The engine's ``pred`` is :class:`.panel.MemberPanel`'s ``(B, M)`` member probabilities.

    Args:
        members: the loaded members (names and thresholds).
        combiner: the combination method.
        output_file: predictions CSV (never overwritten).
        report_dir: folder of the comparison (metrics table, ROC, diversity), or None for inference.
        compared: other methods scored beside ``combiner`` in the comparison (label -> combiner), so
            one evaluation compares every method with the best member on the same cases.
        strict: stop at the first case that cannot be read; by default such cases are listed in
            ``<stem>_failed.csv`` and the run fails after writing the others.
    """

    def __init__(
        self,
        members: Sequence[Member],
        combiner: Combiner,
        output_file: str,
        report_dir: str | None = None,
        strict: bool = False,
        compared: Mapping[str, Combiner] | None = None,
    ) -> None:
        self.names = [m.name for m in members]
        self.thresholds = np.array([m.threshold for m in members])
        self.combiner = combiner
        self.compared = dict(compared or {})
        self.output_file = Path(output_file)
        self.report_dir = Path(report_dir) if report_dir else None
        # tensors until inference completes: reading them per iteration would sync the host with the device
        self.ids: list[str] = []
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.failures = CaseFailures(strict)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self)

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        good = self.failures.good_cases(engine)
        labels = output["label"].reshape(-1) if torch.is_tensor(output.get("label")) else None
        for i, (case_id, keep) in enumerate(zip(batch_ids(engine), good, strict=True)):
            if keep:
                self.ids.append(case_id)
                self.probs.append(output["pred"][i].detach().float())
                if labels is not None:
                    self.labels.append(labels[i].long())

    def __call__(self, _engine: Engine) -> None:
        probs = torch.stack(self.probs).cpu().numpy() if self.probs else np.zeros((0, len(self.names)))
        scores, grades = self.combiner(probs, self.thresholds)
        labels = [int(label) for label in self.labels] if len(self.labels) == len(self.ids) else None
        path = write_ensemble_predictions(self.output_file, self.ids, scores, grades, self.names, probs, labels)
        logger.info(f"wrote {len(self.ids)} ensemble predictions ({self.combiner.method}) to {path}")
        if self.report_dir is None:
            self.failures.finish(path, len(self.ids))
            return
        if labels is None:
            raise ValueError("evaluation needs a label for every case; the input has cases without one")
        title = f"Ensemble ({self.combiner.method}) and its members"
        ensembles = {"ensemble": (scores, grades)}
        ensembles.update({label: combiner(probs, self.thresholds) for label, combiner in self.compared.items()})
        written = write_comparison(self.report_dir, title, labels, self.names, probs, self.thresholds, ensembles)
        rows = written["comparison"]["rows"]
        summary = ", ".join(f"{n} {rows[n]['auc']}" for n in [*self.names, "ensemble"])
        logger.info(f"AUC: {summary}; report in {self.report_dir}")
        self.failures.finish(path, len(self.ids))
