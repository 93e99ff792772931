"""The resnet50_3d_ldam bundle through real `monai.bundle run` calls: train -> evaluate -> infer, resume."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import (
    bundle_command,
    copy_bundle,
    failure_text,
    interrupt_training,
    only_run_dir,
    read_csv,
    run_bundle,
    run_evaluation,
    run_in_bundle,
)

pytestmark = pytest.mark.slow
BUNDLE = "resnet50_3d_ldam"

SMALL = ["--spatial_size", "[32,32,32]", "--batch_size", "2", "--num_workers", "0", "--accumulation_steps", "2"]
TRAIN = [*SMALL, "--epochs", "3", "--drw_start_epoch", "2", "--ema_warmup_steps", "4", "--fold", "1"]


def _run_dir(output_dir: Path, prefix: str = "run") -> Path:
    return only_run_dir(output_dir, fold=1, prefix=prefix)


@pytest.fixture(scope="module")
def trained(bundle, small_brats) -> Path:
    """One short training run on fold 1 that publishes its model; returns its run folder."""
    output = bundle / "runs_e2e"
    run_bundle(bundle, ["train.json"], "--dataset_dir", str(small_brats), "--output_dir", str(output), *TRAIN,
               "--publish_model", "True")  # fmt: skip
    return _run_dir(output)


def test_training_writes_the_run_layout(trained):
    names = {p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file()}
    for expected in (
        "checkpoints/best.pt",
        "checkpoints/best_ema.pt",
        "checkpoints/last.pt",
        "metrics/metrics.json",
        "config/config.json",
        "plots/loss_curve.png",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "predictions/val_ema_probs.npy",
        "predictions/val_probs.npy",
        "predictions/val_preds.npy",
        "predictions/val_labels.npy",
        "predictions/val_predictions.csv",
    ):
        assert expected in names, expected
    assert any(n.startswith("logs/train_") and n.endswith(".log") for n in names)
    assert any("tfevents" in n for n in names)


def test_metrics_json_round_trips_with_full_history(trained, small_datalist):
    metrics = json.loads((trained / "metrics" / "metrics.json").read_text())
    assert [e for e, _ in metrics["history"]["train_loss"]] == [1, 2, 3]
    assert [e for e, _ in metrics["history"]["val_ema_auc"]] == [1, 2, 3]
    assert len(metrics["history"]["lr"]) == 3
    final = metrics["final"]
    assert final["source"] in ("val", "val_ema")
    n_val = sum(1 for r in small_datalist["training"] if r["fold"] == 1)
    assert final["num_cases"] == n_val
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "auc", "sensitivity", "specificity"):
        assert 0.0 <= final[key] <= 1.0, key
    assert set(final["per_class"]) == {"LGG", "HGG"}
    assert final["false_negatives"] + final["true_positives"] == final["per_class"]["HGG"]["support"]


def test_validation_uses_the_requested_fold(trained, small_datalist):
    rows = read_csv(trained / "predictions" / "val_predictions.csv")
    assert {r["id"] for r in rows} == {r["id"] for r in small_datalist["training"] if r["fold"] == 1}


def test_config_records_the_cli_overrides(trained):
    saved = json.loads((trained / "config" / "config.json").read_text())
    assert saved["config"]["epochs"] == 3 and saved["resolved"]["fold"] == 1
    assert saved["resolved"]["spatial_size"] == [32, 32, 32]
    assert saved["resolved"]["run_dir"] == str(trained)


def _selected(trained: Path) -> tuple[str, dict]:
    """The better-validated of best_ema.pt / best.pt (EMA on ties), as training and evaluation choose."""
    ema = torch.load(trained / "checkpoints" / "best_ema.pt", weights_only=True)
    raw = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)
    assert set(ema) == {"model", "metrics"} and ema["metrics"]["source"] == "val_ema"
    assert raw["metrics"]["source"] == "val"
    if ema["metrics"]["selection_score"] >= raw["metrics"]["selection_score"]:
        return "best_ema.pt", ema
    return "best.pt", raw


def test_published_model_is_a_plain_state_dict_of_the_better_checkpoint(trained, bundle):
    published = torch.load(bundle / "models" / "model.pt", weights_only=True)
    _, chosen = _selected(trained)
    assert published.keys() == chosen["model"].keys()
    assert all(torch.equal(published[k], chosen["model"][k]) for k in published)
    final = json.loads((trained / "metrics" / "metrics.json").read_text())["final"]
    assert final["source"] == chosen["metrics"]["source"] and final["auc"] == chosen["metrics"]["auc"]


def test_published_model_carries_the_validation_operating_point(trained, bundle, small_datalist):
    point = json.loads((bundle / "models" / "model.operating_point.json").read_text())
    _, chosen = _selected(trained)
    assert point["threshold"] == chosen["metrics"]["threshold"]
    assert point["temperature"] == chosen["metrics"]["temperature"] > 0
    # the default rule: the share of HGG among the fold's training cases (calibrated P(HGG) above it is HGG)
    train_labels = [r["label"] for r in small_datalist["training"] if r["fold"] != 1]
    assert point["threshold_rule"] == "prior"
    assert point["threshold"] == pytest.approx(sum(train_labels) / len(train_labels))
    # a plain run selects on its validation fold, and says so: those are the cases the point was chosen on
    val_ids = sorted(r["id"] for r in small_datalist["training"] if r["fold"] == 1)
    assert sorted(point["selection_ids"]) == val_ids
    cases = json.loads((trained / "metrics" / "metrics.json").read_text())["cases"]
    assert cases["selection_is_scored"] and sorted(cases["scored_ids"]) == val_ids
    assert cases["num_train"] == len(train_labels)
    final = json.loads((trained / "metrics" / "metrics.json").read_text())["final"]
    assert final["threshold"] == point["threshold"] and "at_0_5" in final and "collapsed" in final


def test_last_checkpoint_holds_everything_needed_to_resume(trained):
    last = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "ema_network", "report", "trainer"} <= set(last)
    assert last["trainer"]["iteration"] == 3 * last["trainer"]["epoch_length"]


def test_evaluate_recomputes_the_stored_auc(bundle, small_brats, trained):
    evaluation = run_evaluation(bundle, small_brats, trained.parent.parent, *SMALL, fold=1)
    metrics = json.loads((evaluation / "metrics" / "metrics.json").read_text())
    stored = _selected(trained)[1]["metrics"]
    assert metrics["final"]["auc"] == pytest.approx(stored["auc"], abs=1e-6)
    # the stored operating point is used, not one refitted on the evaluated cases
    assert metrics["final"]["threshold"] == stored["threshold"]
    assert metrics["final"]["temperature"] == stored["temperature"]
    assert metrics["final"]["threshold_rule"] == "prior"
    assert metrics["cases"]["overlap"] == metrics["final"]["num_cases"]  # in-sample: the cases that chose it
    rows = read_csv(evaluation / "predictions" / "val_predictions.csv")
    assert all(r["predicted_grade"] == ("HGG" if float(r["prob_hgg"]) >= stored["threshold"] else "LGG") for r in rows)
    assert (evaluation / "plots" / "roc_curve.png").is_file()


def test_evaluate_fails_loudly_on_a_tampered_checkpoint_auc(bundle, small_brats, trained, tmp_path):
    state = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)
    stored = state["metrics"]["auc"]
    state["metrics"]["auc"] = stored - 0.25 if stored > 0.5 else stored + 0.25
    tampered = tmp_path / "tampered.pt"
    torch.save(state, tampered)
    result = run_bundle(
        bundle,
        ["train.json", "evaluate.json"],
        "--dataset_dir", str(small_brats), "--output_dir", str(tmp_path / "out"), *SMALL, "--fold", "1",
        "--checkpoint", str(tampered),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "differs from the AUC" in result.stdout + result.stderr


def test_inference_on_a_brats_folder_and_on_a_datalist(bundle, small_brats, trained, small_datalist, tmp_path):
    common = ["--spatial_size", "[32,32,32]", "--num_workers", "0", "--output_dir", str(tmp_path)]
    run_bundle(bundle, ["inference.json"], "--dataset_dir", str(small_brats), *common)
    run_bundle(bundle, ["inference.json"], "--dataset_dir", str(small_brats / "datalist.json"), *common)
    first = read_csv(tmp_path / "predictions.csv")
    second = read_csv(tmp_path / "predictions_1.csv")  # never overwritten
    assert sorted(r["id"] for r in first) == sorted(r["id"] for r in small_datalist["training"])
    by_id = {r["id"]: r for r in second}
    threshold = json.loads((bundle / "models" / "model.operating_point.json").read_text())["threshold"]
    for row in first:
        assert float(row["prob_hgg"]) == pytest.approx(float(by_id[row["id"]]["prob_hgg"]), abs=1e-5)
        assert row["predicted_grade"] == ("HGG" if float(row["prob_hgg"]) >= threshold else "LGG")
        assert row["logit"] == by_id[row["id"]]["logit"]


def _stderr_on_a_terminal(cmd: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal as its stderr (where ignite's ProgressBar draws); return what it drew."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns: tqdm draws to width
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_a_progress_bar_is_drawn_on_a_terminal_and_plain_log_lines_otherwise(bundle, small_brats, trained, tmp_path):
    args = ["--dataset_dir", str(small_brats), "--spatial_size", "[32,32,32]", "--num_workers", "0"]
    cmd, env = bundle_command(bundle, ["inference.json"], *args, "--output_dir", str(tmp_path / "tty"))
    code, drawn = _stderr_on_a_terminal(cmd, bundle, env)
    assert code == 0, drawn[-3000:]
    assert re.search(r"\[\d+/10\] +\d+%\|", drawn), drawn[-2000:]  # ignite's bar over 20 cases in batches of 2
    piped = run_bundle(bundle, ["inference.json"], *args, "--output_dir", str(tmp_path / "pipe"))
    assert "/10]" not in piped.stderr and "%|" not in piped.stderr
    assert read_csv(tmp_path / "tty" / "predictions.csv") == read_csv(tmp_path / "pipe" / "predictions.csv")


@pytest.fixture(scope="module")
def published(trained, tmp_path_factory) -> tuple[Path, dict]:
    """export_bundle with ONNX, a hosting URL (the hub folder it writes, as file://) and the hub layout."""
    from brats_grading.zoo.export import export_bundle

    work = tmp_path_factory.mktemp("published")
    source = copy_bundle(BUNDLE, work / "source")
    hub_url = (work / "dist" / "hub" / BUNDLE).as_uri()
    return source, export_bundle(source, trained, work / "dist", onnx=True, url=hub_url, hub=True)


def test_onnx_export_served_by_onnx_runtime_gives_the_eager_log_odds(small_brats, published, tmp_path):
    """export_bundle --onnx: the ONNX model, run by inference.json's use_onnx switch, equals eager PyTorch."""
    from brats_grading.zoo.onnx_export import ONNX_ATOL, ONNX_RTOL

    source, summary = published
    assert summary["onnx"]["max_abs_logit_difference"] <= ONNX_ATOL
    assert 'path: "models/model.onnx"' in (source / "large_files.yml").read_text()
    common = ["--input", str(small_brats), "--num_workers", "0"]
    run_bundle(source, ["inference.json"], *common, "--output_file", str(tmp_path / "eager.csv"), "--amp", "False")
    run_bundle(source, ["inference.json"], *common, "--output_file", str(tmp_path / "onnx.csv"), "--use_onnx", "True")
    eager = {r["id"]: r for r in read_csv(tmp_path / "eager.csv")}
    served = read_csv(tmp_path / "onnx.csv")
    assert sorted(r["id"] for r in served) == sorted(eager)
    for row in served:
        logit = float(eager[row["id"]]["logit"])
        assert abs(float(row["logit"]) - logit) <= ONNX_ATOL + ONNX_RTOL * abs(logit), row["id"]
        assert row["predicted_grade"] == eager[row["id"]]["predicted_grade"]
    refused = run_bundle(source, ["inference.json"], *common, "--use_onnx", "True", "--layout", "strided", check=False)
    assert refused.returncode != 0
    assert 'was exported with layout "medicalnet" but this config builds layout "strided"' in refused.stderr


def test_the_hub_layout_export_is_read_back_by_monai_bundle_download_and_load(published, tmp_path):
    """The hub folder is the bundle at the root with a model card; `monai.bundle download` of the zip from a
    file:// URL, then `download_large_files` from the hub folder (sha256 checked), then `load` from it."""
    from brats_grading.zoo.static_checks import file_hash

    source, summary = published
    hub = Path(summary["hub"])
    card = (hub / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: monai\n") and "# ResNet" in card
    assert (hub / "configs" / "metadata.json").is_file() and (hub / "models" / "model.pt").is_file()
    downloads = tmp_path / "downloads"
    monai_cli = [sys.executable, "-m", "monai.bundle"]
    subprocess.run([*monai_cli, "download", "--name", BUNDLE, "--url", Path(summary["archive"]).as_uri(),
                    "--bundle_dir", str(downloads)], check=True, capture_output=True)  # fmt: skip
    downloaded = downloads / BUNDLE
    large_files = (downloaded / "large_files.yml").read_text()
    assert f'url: "{hub.as_uri()}/models/model.pt"' in large_files
    for name in ("model.pt", "model.ts", "model.onnx"):
        (downloaded / "models" / name).unlink()
    fetched = subprocess.run([*monai_cli, "download_large_files", "--bundle_path", str(downloaded)],
                             capture_output=True, text=True)  # fmt: skip
    assert fetched.returncode == 0, failure_text(fetched)
    for name in ("model.pt", "model.ts", "model.onnx"):
        assert file_hash(downloaded / "models" / name) == file_hash(source / "models" / name), name
    loaded = run_in_bundle(hub, f"""
import monai
net = monai.bundle.load(name={BUNDLE!r}, bundle_dir={str(hub.parent)!r}, device="cpu")
stored = torch.load("models/model.pt", map_location="cpu", weights_only=True)
print(json.dumps({{"equal": all(torch.equal(v, stored[k]) for k, v in net.state_dict().items())}}))
""")  # fmt: skip
    assert loaded == {"equal": True}
    tampered = downloads / "tampered"
    shutil.copytree(downloaded, tampered)
    (tampered / "models" / "model.pt").unlink()
    (tampered / "large_files.yml").write_text(large_files.replace(hub.as_uri(), (tampered / "elsewhere").as_uri()))
    (tampered / "elsewhere" / "models").mkdir(parents=True)
    (tampered / "elsewhere" / "models" / "model.pt").write_bytes(b"other weights")
    refused = subprocess.run([*monai_cli, "download_large_files", "--bundle_path", str(tampered)],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "sha256" in refused.stderr and "check" in refused.stderr.lower()


def test_a_checkpoint_is_refused_by_a_network_of_another_layout_with_the_same_tensors(bundle, small_brats, trained):
    """The strided and medicalnet layouts have identical tensor shapes: the stored settings tell them apart."""
    result = run_bundle(bundle, ["train.json", "evaluate.json"], "--dataset_dir", str(small_brats), *SMALL,
                        "--output_dir", str(trained.parent.parent), "--fold", "1", "--use_latest_run", "True",
                        "--layout", "strided", check=False)  # fmt: skip
    assert result.returncode != 0
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: CheckpointMismatchError: checkpoint")
        and 'trained with layout "medicalnet" but this config builds layout "strided"' in result.stderr
    )


def test_batch_inference_checks_the_output_folder_first_and_grades_the_cases_around_a_bad_one(
    bundle, small_brats, trained, small_datalist, tmp_path
):
    common = ["--spatial_size", "[32,32,32]", "--num_workers", "0", "--dataset_dir", str(small_brats)]
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    refused = run_bundle(bundle, ["inference.json"], *common, "--output_dir", str(tmp_path / "out"),
                         "--output_file", str(blocked / "predictions.csv"), check=False)  # fmt: skip
    assert refused.returncode != 0 and "the folder of output_file" in refused.stderr.strip().splitlines()[-1]
    assert "Epoch[1]" not in refused.stdout + refused.stderr  # refused before any case ran
    dataset = Path(shutil.copytree(small_brats, tmp_path / "data", ignore=shutil.ignore_patterns("cache")))
    case = small_datalist["training"][0]
    flair = dataset / case["image"][3]
    image = nib.load(flair)
    two = np.stack([np.asanyarray(image.dataobj)] * 2, axis=-1)  # (X, Y, Z, 2): its header still passes
    nib.save(nib.Nifti1Image(two, image.affine), flair)
    output = tmp_path / "predictions"
    result = run_bundle(bundle, ["inference.json"], *common[:-1], str(dataset), "--output_dir", str(output),
                        check=False)  # fmt: skip
    assert result.returncode != 0 and "1 of 20 cases could not be graded" in result.stderr.strip().splitlines()[-1]
    rows = read_csv(output / "predictions.csv")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in small_datalist["training"][1:])
    assert [r["id"] for r in read_csv(output / "predictions_failed.csv")] == [case["id"]]


def _killed_at() -> int:
    """A random global iteration after the first epoch (8 iterations of fold 1's 16 cases at batch 2), before the end."""
    return random.SystemRandom().randint(9, 23)


def _resume_and_compare(bundle: Path, args: list[str], output: Path, trained: Path, at) -> None:
    """``--resume True`` continues the interrupted run in its folder to the uninterrupted run's result."""
    interrupted = _run_dir(output)
    resumed_run = run_bundle(bundle, ["train.json"], *args, "--resume", "True")
    assert _run_dir(output) == interrupted  # continued in the same folder
    assert f"resume: continuing run {interrupted}" in resumed_run.stdout + resumed_run.stderr
    resumed = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)
    uninterrupted = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["trainer"]["iteration"] == 3 * resumed["trainer"]["epoch_length"]
    assert resumed["early_stopper"] == uninterrupted["early_stopper"]
    for part in ("network", "ema_network"):
        a, b = resumed[part], uninterrupted[part]
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), (at, part, key)
    for name in ("best.pt", "best_ema.pt"):  # a resume must not replace the best model with a worse one
        a = torch.load(interrupted / "checkpoints" / name, weights_only=True)
        b = torch.load(trained / "checkpoints" / name, weights_only=True)
        assert a["metrics"]["epoch"] == b["metrics"]["epoch"], (at, name)
        assert a["metrics"]["auc"] == pytest.approx(b["metrics"]["auc"]), (at, name)
    ra = json.loads((interrupted / "metrics" / "metrics.json").read_text())
    rb = json.loads((trained / "metrics" / "metrics.json").read_text())
    for key in ("val_auc", "val_ema_auc", "train_loss"):
        assert [e for e, _ in ra["history"][key]] == [e for e, _ in rb["history"][key]] == [1, 2, 3]
        assert [v for _, v in ra["history"][key]] == pytest.approx([v for _, v in rb["history"][key]], abs=1e-6)
    assert ra["final"]["auc"] == pytest.approx(rb["final"]["auc"])


def test_a_run_killed_at_a_random_iteration_resumes_to_the_uninterrupted_result(bundle, small_brats, trained, tmp_path):
    """SIGKILL after a random iteration, then ``--resume True``: same weights, best models and metrics.

    The run waits after iteration ``at`` until the kill lands (a pause point), so the kill cannot arrive
    after the run has finished on a loaded machine; the kill inside a checkpoint write has its own test.
    """
    output = tmp_path / "resume"
    args = ["--dataset_dir", str(small_brats), "--output_dir", str(output), *TRAIN, "--publish_model", "False"]
    at = _killed_at()
    status, log = interrupt_training(
        bundle, ["train.json"], *args, pause_at=f"iteration:{at}", signal_number=signal.SIGKILL
    )
    assert status == -signal.SIGKILL, (at, log[-2000:])
    state = torch.load(_run_dir(output) / "checkpoints" / "last.pt", weights_only=True)["trainer"]
    assert state["iteration"] == (at // state["epoch_length"]) * state["epoch_length"], (at, state)
    _resume_and_compare(bundle, args, output, trained, at)


def test_a_kill_while_last_pt_is_replaced_leaves_the_previous_one_and_resumes_exactly(
    bundle, small_brats, trained, tmp_path
):
    """SIGKILL after epoch 2's checkpoint is written but before it replaces epoch 1's: epoch 1's is still there."""
    output = tmp_path / "window"
    args = ["--dataset_dir", str(small_brats), "--output_dir", str(output), *TRAIN, "--publish_model", "False"]
    status, log = interrupt_training(
        bundle, ["train.json"], *args, pause_at="replace_last.pt:2", signal_number=signal.SIGKILL
    )
    assert status == -signal.SIGKILL, log[-2000:]
    checkpoints = _run_dir(output) / "checkpoints"
    assert (checkpoints / ".last.pt.partial").is_file()  # the kill did land inside the replacement
    state = torch.load(checkpoints / "last.pt", weights_only=True)["trainer"]
    assert state["iteration"] == state["epoch_length"]  # epoch 1's checkpoint, complete
    _resume_and_compare(bundle, args, output, trained, "replace_last.pt:2")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_resume_with_another_fold_or_learning_rate_is_refused_before_anything_is_written(
    bundle, small_brats, trained, tmp_path
):
    """A fold-1 last.pt resumed as fold 0 would train on cases it validated on, and replace fold 1's best.pt."""
    run = Path(shutil.copytree(trained, tmp_path / "out" / "fold_1" / trained.name))
    before = _tree(run)
    args = [
        "--dataset_dir",
        str(small_brats),
        "--output_dir",
        str(tmp_path / "out"),
        *TRAIN,
        "--publish_model",
        "False",
    ]
    last = str(run / "checkpoints" / "last.pt")
    refused = run_bundle(bundle, ["train.json"], *args, "--fold", "0", "--learning_rate", "0.01", "--resume_from", last,
                         check=False)  # fmt: skip
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: ResumeMismatchError: resume: --fold 0 differs from the 1 that run") and str(run) in line
    )
    assert "also: ['learning_rate', 'split_digest']" in line, line
    assert _tree(run) == before  # nothing of the run it named was touched
    assert not (tmp_path / "out" / "fold_0").exists()
    changed = run_bundle(bundle, ["train.json"], *args, "--epochs", "4", "--resume_from", last,
                         "--allow_resume_changes", "True")  # fmt: skip
    assert "resume: continuing run" in changed.stdout + changed.stderr
    assert (run / "config" / "config.json").read_bytes() == before["config/config.json"]  # kept as the run began
    record = json.loads((run / "config" / "resume.json").read_text())
    assert record["resumed_from"] == last and record["changes"] == {"epochs": [3, 4]}


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_ctrl_c_and_sigterm_stop_cleanly_naming_the_checkpoint_to_resume_from(
    bundle, small_brats, tmp_path, signal_number
):
    """The run waits after iteration ``at`` until the signal lands: it stops there, whatever the machine's load."""
    output = tmp_path / f"stop_{signal_number}"
    args = ["--dataset_dir", str(small_brats), "--output_dir", str(output), *TRAIN, "--publish_model", "False"]
    at = _killed_at()
    status, log = interrupt_training(
        bundle, ["train.json"], *args, pause_at=f"iteration:{at}", signal_number=signal_number
    )
    assert status == 128 + signal_number, (at, log[-3000:])
    assert "Traceback" not in log, (at, log[-3000:])
    last = _run_dir(output) / "checkpoints" / "last.pt"
    assert log.strip().splitlines()[-1].endswith(f"last complete checkpoint: {last} (resume with --resume True)"), at
    assert f"interrupted in epoch {at // 8 + 1} after iteration {at};" in log, at
    assert torch.load(last, weights_only=True)["trainer"]["iteration"] == (at // 8) * 8  # the epochs completed


def test_bundle_properties_and_loss_optimizer_options_resolve(bundle, small_brats):
    names = run_in_bundle(
        bundle,
        f"""
from monai.bundle import ConfigWorkflow
wf = ConfigWorkflow(config_file="configs/train.json", workflow_type="train", dataset_dir={str(small_brats)!r},
                    output_dir={str(bundle / "runs_props")!r}, spatial_size=[32, 32, 32])
wf.initialize()
assert wf.check_properties() in (None, []), wf.check_properties()
names = {{}}
for loss in ("ldam", "focal", "ce"):
    for opt in ("adam", "adamw", "sgd"):
        wf.parser["loss_name"], wf.parser["optimizer_name"] = loss, opt
        wf.parser.ref_resolver.reset()
        names[loss + "/" + opt] = [type(wf.parser.get_parsed_content(k)).__name__ for k in ("loss", "optimizer")]
wf.parser["loss_name"] = "ldam"
wf.parser.ref_resolver.reset()
stopper = [h for h in wf.parser.get_parsed_content("train#handlers") if type(h).__name__ == "MinEpochsEarlyStopHandler"]
names["early_stop_min_epochs"] = stopper[0].min_epochs
print(json.dumps(names))
""",
    )
    assert names["ldam/adam"] == ["LDAMLoss", "Adam"]
    assert names["focal/adamw"] == ["LabelFocalLoss", "AdamW"]
    assert names["ce/sgd"] == ["LabelCrossEntropy", "SGD"]
    # LDAM: no early stop before DRW has had a full patience window (drw_start_epoch 15 + patience 7)
    assert names["early_stop_min_epochs"] == 22


def test_bfloat16_autocast_training_with_focal_loss_and_sgd(bundle, small_brats, tmp_path):
    """The CPU stand-in for CUDA AMP, with the other loss and optimiser choices, through a real run.

    The strided layout and 16^3 inputs: bfloat16 kernels are emulated on CPUs without AVX-512 BF16 or AMX."""
    small = [*SMALL[2:], "--spatial_size", "[16,16,16]", "--layout", "strided"]
    args = ["--dataset_dir", str(small_brats), "--output_dir", str(tmp_path), *small, "--epochs", "1"]
    args += [
        "--autocast_dtype",
        "bfloat16",
        "--loss_name",
        "focal",
        "--optimizer_name",
        "sgd",
        "--publish_model",
        "False",
    ]
    run_bundle(bundle, ["train.json"], *args, "--use_ema", "False")
    run = next((tmp_path / "fold_0").glob("run_*"))
    metrics = json.loads((run / "metrics" / "metrics.json").read_text())
    assert metrics["final"]["source"] == "val"  # EMA off: no val_ema evaluator
    assert not (run / "checkpoints" / "best_ema.pt").exists()
    saved = json.loads((run / "config" / "config.json").read_text())["resolved"]
    assert saved["autocast_dtype"] == "bfloat16" and saved["loss_name"] == "focal"
