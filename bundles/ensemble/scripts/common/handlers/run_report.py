"""Write the run report's files (metrics.json, plots, predictions) when an engine completes."""

from __future__ import annotations

from ignite.engine import Engine, Events

from ..run_report import RunReport

__all__ = ["RunReportSaver"]


class RunReportSaver:
    """At ``COMPLETED``: write metrics.json, the history plots, and each evaluator's best predictions and plots.

    Args:
        report: the run's :class:`RunReport`.
    """

    def __init__(self, report: RunReport) -> None:
        if not isinstance(report, RunReport):
            raise TypeError(f"report must be a RunReport, got {type(report).__name__}")
        self.report = report

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, _engine: Engine) -> None:
        self.report.finalize()
