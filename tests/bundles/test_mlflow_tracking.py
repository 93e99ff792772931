"""``--tracking mlflow`` on real runs: train, evaluate and infer each log a finished MLflow run that holds the
run's settings, its per-epoch metrics and the executed config, read back from a real SQLite tracking store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from helpers import TINY_CV, copy_bundle, run_bundle

pytestmark = pytest.mark.slow


def _store(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlruns.db'}"


def _only_run(uri: str, experiment: str):
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def _logged_config(client, run, tmp: Path) -> dict:
    names = [a.path for a in client.list_artifacts(run.info.run_id)]
    configs = [n for n in names if n.startswith("config_") and n.endswith(".json")]
    assert len(configs) == 1, names
    local = client.download_artifacts(run.info.run_id, configs[0], str(tmp))
    return json.loads(Path(local).read_text())


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, small_brats) -> dict:
    """One tiny training of a copy of the ResNet bundle with ``--tracking mlflow``, then its evaluation and
    an inference, each into its own experiment of one SQLite store."""
    tmp = tmp_path_factory.mktemp("mlflow")
    bundle = copy_bundle("resnet50_3d_ldam", tmp)
    uri = _store(tmp)
    out = tmp / "runs"
    common = ["--dataset_dir", str(small_brats), "--output_dir", str(out), "--tracking", "mlflow"]
    run_bundle(bundle, ["train.json"], *common, *TINY_CV, "--tracking_uri", uri, "--experiment_name", "train")
    network = ["--layout", "strided", "--spatial_size", "[32,32,32]", "--num_workers", "0"]
    run_bundle(bundle, ["train.json", "evaluate.json"], *common, *network, "--use_latest_run", "True",
               "--tracking_uri", uri, "--experiment_name", "evaluate")  # fmt: skip
    checkpoint = next(out.glob("fold_0/run_*/checkpoints/best.pt"))
    run_bundle(bundle, ["inference.json"], "--input", str(small_brats / "LGG"), "--output_dir", str(tmp / "infer"),
               "--checkpoint", str(checkpoint), *network, "--tracking", "mlflow", "--tracking_uri", uri,
               "--experiment_name", "infer")  # fmt: skip
    return {"uri": uri, "tmp": tmp, "bundle": bundle}


def test_training_logs_its_settings_per_epoch_metrics_and_config(tracked):
    client, run = _only_run(tracked["uri"], "train")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["epochs"] == "2" and params["max_epochs"] == "2" and params["layout"] == "strided"
    defaults = json.loads((tracked["bundle"] / "configs" / "train.json").read_text())
    assert params["learning_rate"] == str(defaults["learning_rate"])
    for metric in ("val_auc", "val_balanced_accuracy", "val_threshold", "val_temperature"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2], metric
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 2  # one per iteration
    config = _logged_config(client, run, tracked["tmp"] / "train_artifacts")
    assert config["epochs"] == 2 and config["experiment_name"] == "train"


def test_evaluation_logs_its_metrics_and_closes_its_run(tracked):
    client, run = _only_run(tracked["uri"], "evaluate")
    assert run.info.status == "FINISHED"  # MONAI's validator handler alone would leave the run open
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_auc")] == [1]
    assert run.data.params["use_latest_run"] == "True"
    assert _logged_config(client, run, tracked["tmp"] / "eval_artifacts")["experiment_name"] == "evaluate"


def test_inference_logs_a_finished_run_with_its_config(tracked):
    client, run = _only_run(tracked["uri"], "infer")
    assert run.info.status == "FINISHED"
    assert run.data.params["input"].endswith("LGG")
    assert _logged_config(client, run, tracked["tmp"] / "infer_artifacts")["experiment_name"] == "infer"


def test_a_mistyped_key_is_still_refused_with_tracking_on(tracked, small_brats):
    result = run_bundle(
        tracked["bundle"], ["inference.json"], "--input", str(small_brats / "LGG"), "--tracking", "mlflow",
        "--tracking_uri", tracked["uri"], "--experiment_nam", "typo", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "unknown config key 'experiment_nam' (did you mean 'experiment_name'?)" in result.stderr
