"""MLflow tracking of a bundle run: ``--tracking mlflow`` (MONAI's settings) completed for this bundle's workflows.

MONAI's tracking patch adds an ``MLFlowHandler`` to the trainer, validator and evaluator handler lists and
the keys of :data:`monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS`. Three things it leaves undone here:

- the run's settings are not logged (only ``max_epochs`` and ``epoch_length``);
- with ``--output_dir`` given as a plain path its ``save_execute_config`` becomes an unresolvable string,
  so the config artifact is silently dropped;
- an evaluation (the validator alone) never closes its run, and a workflow without an ignite engine (the
  ensemble's fit) logs nothing.

:func:`complete_tracking`, first in a config's ``initialize`` list after the key check, fixes the first
three; :func:`log_fit` logs an engine-free workflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["complete_tracking", "log_fit", "run_settings", "tracking_enabled"]

_HANDLER = "MLFlowHandler"
_REFERENCE_PREFIXES = ("$", "@", "%")


def _is_literal(value: Any) -> bool:
    if isinstance(value, str):
        return not value.startswith(_REFERENCE_PREFIXES)
    if isinstance(value, (bool, int, float)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return len(value) <= 16 and all(isinstance(v, (bool, int, float, str)) and _is_literal(v) for v in value)
    return False


def run_settings(config: dict) -> dict[str, str]:
    """The top-level settings of ``config`` written as literals (numbers, words, short lists): the run's
    hyper-parameters and paths as the user set them, without expressions or components."""
    return {k: str(v) for k, v in config.items() if not k.startswith("_") and _is_literal(v)}


def _tracking_handlers(node: Any) -> list[dict]:
    if isinstance(node, dict):
        found = [node] if str(node.get("_target_", "")).endswith(_HANDLER) else []
        return found + [h for v in node.values() for h in _tracking_handlers(v)]
    if isinstance(node, list):
        return [h for v in node for h in _tracking_handlers(v)]
    return []


def _repair_config_artifact(parser) -> None:
    """MONAI writes the executed config to ``<output_dir>/config_<time>.json`` but, when ``output_dir`` is a
    plain path, stores ``"<path> + '/config_<time>.json'"`` as ``save_execute_config``: an artifact that
    never exists. Store the path it wrote."""
    value = parser.get("save_execute_config")
    output_dir = parser.get("output_dir")
    if not isinstance(value, str) or not isinstance(output_dir, str) or output_dir.startswith("$"):
        return
    prefix = f"{output_dir} + '/"
    if value.startswith(prefix) and value.endswith("'"):
        parser["save_execute_config"] = os.path.join(output_dir, value[len(prefix) : -1])


def tracking_enabled(parser) -> bool:
    """Whether ``--tracking`` patched this run's config (its handlers or keys are there)."""
    return bool(_tracking_handlers(parser.get())) or "tracking_uri" in parser.get()


def complete_tracking(closing_engine: str = "") -> bool:
    """Complete MONAI's tracking of this run (see the module docstring); a no-op without ``--tracking``.

    ``closing_engine`` names the handler list (``"validate#handlers"``) of a workflow whose only engine is a
    validator: its handler then logs the config artifact and closes the run, as the trainer's does in training.
    Returns whether tracking is on.
    """
    from .run_folder import calling_parser

    parser = calling_parser()
    if parser is None:
        raise RuntimeError("complete_tracking must be called from a monai.bundle config expression")
    if not tracking_enabled(parser):
        return False
    _repair_config_artifact(parser)
    handlers = _tracking_handlers(parser.get())
    settings = run_settings(parser.get())
    for handler in handlers:
        handler["experiment_param"] = settings
    if closing_engine:
        for handler in _tracking_handlers(parser.get(closing_engine)):
            handler["artifacts"] = "@save_execute_config"
            handler["close_on_complete"] = True
    parser.ref_resolver.reset()  # the config was changed after the workflow parsed it
    return True


def log_fit(artifacts: list[str | Path], metrics: dict[str, float] | None = None) -> bool:
    """Log a workflow with no ignite engine (the ensemble's fit) as one MLflow run; a no-op without ``--tracking``.

    Logs the run's settings, ``metrics``, each file of ``artifacts`` (a folder: every file in it) and the
    executed config, using the tracking keys MONAI added (``tracking_uri``, ``experiment_name``,
    ``run_name``, ``save_execute_config``). Returns whether a run was logged.
    """
    from .run_folder import calling_parser

    parser = calling_parser()
    if parser is None or "tracking_uri" not in parser.get():
        return False
    import mlflow

    client = mlflow.MlflowClient(parser.get_parsed_content("tracking_uri"))
    name = parser.get_parsed_content("experiment_name")
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=parser.get_parsed_content("run_name"))
    params = [mlflow.entities.Param(k, v) for k, v in run_settings(parser.get()).items()]
    values = [mlflow.entities.Metric(k, float(v), 0, 0) for k, v in (metrics or {}).items()]
    client.log_batch(run.info.run_id, metrics=values, params=params)
    config_file = parser.get_parsed_content("save_execute_config")
    for path in map(Path, [*artifacts, *([config_file] if config_file else [])]):
        if path.is_dir():
            client.log_artifacts(run.info.run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return True
