"""The run report: per-epoch history, the best epoch per evaluator, and the files a run leaves.

One object per run collects what the metric handlers measure and writes ``metrics/metrics.json``
after every epoch (so an interrupted run still has its history), then the plots and prediction
files at the end. It has ``state_dict`` so a resumed run keeps the history of its first part.
"""

from __future__ import annotations

from pathlib import Path

from .outputs import write_json, write_prediction_arrays
from .plots import plot_evaluation, plot_history

__all__ = ["HISTORY_KEYS", "CheckpointMetrics", "RunReport"]

HISTORY_KEYS: tuple[str, ...] = ("loss", "auc", "f1", "accuracy", "balanced_accuracy", "sensitivity", "specificity")


class RunReport:
    """Collects metrics of a run and writes them into its run folder.

    Args:
        run_dir: the run folder (``metrics/``, ``plots/``, ``predictions/`` are written inside).
        primary: evaluators that may give the run's final result, in order of preference on ties (EMA first).
        per_epoch_plots: also write ``*_epoch_<k>.png`` plots for every validation epoch.
        write_files: False on DDP ranks other than 0, which collect metrics but must not write files.
        network_settings: what built the network, stored with every checkpoint.
        cases: which cases trained, chose and are scored (:func:`..selection.case_roles`), for ``metrics.json``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        primary: tuple[str, ...] = ("val_ema", "val"),
        per_epoch_plots: bool = False,
        write_files: bool = True,
        network_settings: dict | None = None,
        cases: dict | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.cases = dict(cases or {})
        self.network_settings = dict(network_settings or {})
        self.primary = tuple(primary)
        self.per_epoch_plots = per_epoch_plots
        self.write_files = write_files
        self.history: dict[str, list[list]] = {}
        self.best: dict[str, dict] = {}
        self.latest: dict[str, dict] = {}

    def record(
        self, prefix: str, epoch: int, metrics: dict, ids: list, labels: list, probs: list, logits: list
    ) -> None:
        """Store one epoch of one engine (``train``, ``val``, ``val_ema``...); keep the best validation epoch.

        ``probs`` are P(HGG) as reported (calibrated for validation), ``logits`` the HGG log-odds before it.
        """
        for key in HISTORY_KEYS:
            if metrics.get(key) is not None:
                self.log_value(f"{prefix}_{key}", epoch, metrics[key])
        entry = {
            "epoch": epoch,
            "metrics": metrics,
            "ids": list(ids),
            "labels": list(labels),
            "probs": list(probs),
            "logits": list(logits),
        }
        self.latest[prefix] = entry
        if prefix != "train":
            best = self.best.get(prefix)
            if best is None or metrics["selection_score"] > best["metrics"]["selection_score"]:
                self.best[prefix] = entry
            if self.per_epoch_plots and self.write_files:
                plot_evaluation(labels, probs, self.run_dir / "plots", f"_{prefix}_epoch_{epoch}", metrics["threshold"])
        self.write_metrics()

    def log_value(self, key: str, epoch: int, value: float) -> None:
        """Append ``(epoch, value)`` to a history series, replacing a value already logged for that epoch."""
        series = self.history.setdefault(key, [])
        series[:] = [item for item in series if item[0] != epoch] + [[epoch, float(value)]]

    def final_prefix(self) -> str | None:
        """The evaluator whose best epoch is the run's result: the best-scoring of ``primary`` (earlier wins ties).

        This matches the checkpoint training publishes and evaluation picks by default.
        """
        measured = [p for p in self.primary if p in self.best]
        if not measured:
            return None
        return max(measured, key=lambda p: (self.best[p]["metrics"]["selection_score"], -measured.index(p)))

    def summary(self) -> dict:
        final = self.final_prefix()
        final_entry = None
        if final is not None:
            final_entry = {"source": final, "epoch": self.best[final]["epoch"], **self.best[final]["metrics"]}
        return {
            "final": final_entry,
            "best": {p: {"epoch": b["epoch"], **b["metrics"]} for p, b in self.best.items()},
            "latest": {p: {"epoch": b["epoch"], **b["metrics"]} for p, b in self.latest.items()},
            "history": self.history,
            "cases": self.cases,
        }

    def write_metrics(self) -> Path | None:
        if not self.write_files:
            return None
        return write_json(self.run_dir / "metrics" / "metrics.json", self.summary())

    def finalize(self) -> None:
        """Write metrics.json, the history plots, and plots + predictions of each evaluator's best epoch."""
        if not self.write_files:
            return
        self.write_metrics()
        plot_history(self.history, self.run_dir / "plots")
        for prefix, best in self.best.items():
            threshold = best["metrics"]["threshold"]
            write_prediction_arrays(
                self.run_dir / "predictions",
                best["ids"],
                best["labels"],
                best["probs"],
                best["logits"],
                threshold,
                prefix=prefix,
            )
            suffix = "" if prefix == self.final_prefix() else f"_{prefix}"
            plot_evaluation(best["labels"], best["probs"], self.run_dir / "plots", suffix, threshold)

    def state_dict(self) -> dict:
        return {"history": self.history, "best": self.best, "latest": self.latest}

    def load_state_dict(self, state: dict) -> None:
        self.history = {k: [list(item) for item in v] for k, v in state["history"].items()}
        self.best = dict(state["best"])
        self.latest = dict(state["latest"])

    def snapshot(self, prefix: str) -> CheckpointMetrics:
        """An object for a checkpoint's ``save_dict`` that stores the metrics of ``prefix``'s latest epoch."""
        return CheckpointMetrics(self, prefix)


class CheckpointMetrics:
    """Saved with a checkpoint so evaluation can check that it reproduces the AUC stored beside the weights."""

    def __init__(self, report: RunReport, prefix: str) -> None:
        self.report = report
        self.prefix = prefix

    def state_dict(self) -> dict:
        latest = self.report.latest.get(self.prefix)
        if latest is None:
            return {}
        state = {"source": self.prefix, "epoch": latest["epoch"], **latest["metrics"]}
        state["selection_ids"] = list(latest["ids"])  # the cases that chose this checkpoint and its operating point
        if self.report.network_settings:  # what built the network: a checkpoint refuses another network
            state["network"] = self.report.network_settings
        return state

    def load_state_dict(self, state: dict) -> None:  # the metrics describe a past epoch; nothing to restore
        pass
