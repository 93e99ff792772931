"""scripts/cross_validate.py: every fold trained and evaluated, out-of-fold predictions exact, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, TINY_CV, copy_bundle, read_csv, run_cross_validate
from sklearn.metrics import roc_auc_score

from brats_grading.components.data import DatasetError
from brats_grading.cross_validation import summarize

pytestmark = pytest.mark.slow


def test_every_fold_is_trained_and_evaluated(tiny_cv):
    summary = json.loads((tiny_cv / "cv_summary.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    for fold in summary["folds"]:
        result = json.loads((tiny_cv / f"fold_{fold['fold']}" / "fold_result.json").read_text())
        assert (tiny_cv / f"fold_{fold['fold']}").as_posix() in result["run_dir"]
        assert (result["eval_dir"] + "/").startswith(str(tiny_cv / f"fold_{fold['fold']}" / "eval_"))
        assert result["checkpoint"].endswith(("best.pt", "best_ema.pt"))
        # the checkpoint's training epoch is the one its selection cases scored best (the run's history)
        history = json.loads((Path(result["run_dir"]) / "metrics" / "metrics.json").read_text())
        source = result["selection"]["source"]
        aucs = dict(history["history"][f"{source}_auc"])
        assert fold["epoch"] == history["best"][source]["epoch"] and aucs[fold["epoch"]] == max(aucs.values())
        assert result["overrides"]["layout"] == "strided"
    assert (tiny_cv / "plots" / "roc_pooled.png").stat().st_size > 0
    markdown = (tiny_cv / "cv_summary.md").read_text()
    assert "mean ± std" in markdown and "BraTS 2018" in markdown and "Pooled out-of-fold" in markdown


def test_no_scored_case_chose_its_fold_model_and_every_case_is_scored_once(tiny_cv, small_datalist):
    folds = {r["id"]: r["fold"] for r in small_datalist["training"]}
    scored = []
    for k in (0, 1):
        result = json.loads((tiny_cv / f"fold_{k}" / "fold_result.json").read_text())
        fold_cases = {c for c, f in folds.items() if f == k}
        assert set(result["scored_ids"]) == fold_cases
        assert result["selection_ids"] and not set(result["selection_ids"]) & fold_cases
        # the training run's validation evaluator (epoch, temperature, threshold) saw exactly the selection cases
        for prefix in ("val", "val_ema"):
            chose = read_csv(Path(result["run_dir"]) / "predictions" / f"{prefix}_predictions.csv")
            assert {r["id"] for r in chose} == set(result["selection_ids"])
        scored += [r["id"] for r in read_csv(Path(result["eval_dir"]) / "predictions" / "val_predictions.csv")]
        evaluation = json.loads((Path(result["eval_dir"]) / "metrics" / "metrics.json").read_text())
        assert evaluation["cases"]["overlap"] == 0
    assert sorted(scored) == sorted(c for c, f in folds.items() if f in (0, 1))
    summary = json.loads((tiny_cv / "cv_summary.json").read_text())
    assert summary["selection_free"] and "(selection-free)" in (tiny_cv / "cv_summary.md").read_text()


def test_a_fold_that_scored_its_own_selection_cases_is_refused_or_labelled_in_sample(tiny_cv, tmp_path):
    copy = tmp_path / "cv"
    shutil.copytree(tiny_cv, copy)
    path = copy / "fold_1" / "fold_result.json"
    result = json.loads(path.read_text())
    leaked = {**result, "selection_ids": [*result["selection_ids"], result["scored_ids"][0]]}
    path.write_text(json.dumps(leaked))
    with pytest.raises(
        DatasetError, match=f"fold 1 scored 1 case\\(s\\) that chose its model \\(e.g. '{result['scored_ids'][0]}'"
    ):
        summarize(copy)
    path.write_text(json.dumps({**result, "selection_ids": result["scored_ids"]}))  # selection_fraction 0
    assert not summarize(copy)["selection_free"]
    assert "**in-sample**" in (copy / "cv_summary.md").read_text()


def test_out_of_fold_predictions_cover_every_case_of_the_folds_once(tiny_cv, small_datalist):
    rows = read_csv(tiny_cv / "oof_predictions.csv")
    expected = {r["id"]: r["fold"] for r in small_datalist["training"] if r["fold"] in (0, 1)}
    assert sorted(r["id"] for r in rows) == sorted(expected)
    assert all(int(r["fold"]) == expected[r["id"]] for r in rows)
    labels = {r["id"]: r["label"] for r in small_datalist["training"]}
    assert all(int(r["label"]) == labels[r["id"]] for r in rows)
    summary = json.loads((tiny_cv / "cv_summary.json").read_text())
    thresholds = {f["fold"]: f["metrics"]["threshold"] for f in summary["folds"]}
    assert all(float(r["threshold"]) == thresholds[int(r["fold"])] for r in rows)
    pooled = roc_auc_score([int(r["label"]) for r in rows], [float(r["prob_hgg"]) for r in rows])
    assert summary["pooled"]["auc"] == pytest.approx(pooled, abs=1e-12)


def test_summary_recomputes_from_the_fold_files(tiny_cv, tmp_path):
    copy = tmp_path / "cv"
    shutil.copytree(tiny_cv, copy)
    before = json.loads((copy / "cv_summary.json").read_text())
    oof_before = (copy / "oof_predictions.csv").read_text()
    for name in ("cv_summary.json", "cv_summary.md", "oof_predictions.csv"):
        (copy / name).unlink()
    summarize(copy)
    after = json.loads((copy / "cv_summary.json").read_text())
    assert (copy / "oof_predictions.csv").read_text().replace(str(copy), str(tiny_cv)) == oof_before
    assert after["pooled"] == before["pooled"]
    assert after["mean_std"] == before["mean_std"]
    assert [f["metrics"] for f in after["folds"]] == [f["metrics"] for f in before["folds"]]
    fold_aucs = [json.loads((copy / f"fold_{k}" / "fold_result.json").read_text())["metrics"]["auc"] for k in (0, 1)]
    assert after["mean_std"]["auc"]["mean"] == pytest.approx(sum(fold_aucs) / 2)


def test_held_out_scores_every_fold_model_with_its_own_settings_and_scores_again_without_rerunning(
    tiny_cv, small_brats, small_datalist, tmp_path
):
    copy = tmp_path / "cv"
    shutil.copytree(tiny_cv, copy)
    run_cross_validate("held_out", str(copy), "--dataset_dir", str(small_brats), "--name", "again")
    summary = json.loads((copy / "held_out_again.json").read_text())
    assert sorted(summary["folds"]) == ["0", "1"] and summary["num_cases"] == len(small_datalist["training"])
    oof = {r["id"]: r for r in read_csv(copy / "oof_predictions.csv")}
    labels = {r["id"]: r["label"] for r in small_datalist["training"]}
    for fold in (0, 1):
        rows = read_csv(copy / "held_out" / "again" / f"fold_{fold}.csv")
        assert sorted(r["id"] for r in rows) == sorted(labels)
        # the fold model, its input size and layout, its temperature: what it gave its own validation cases
        for row in rows:
            if row["id"] in oof and int(oof[row["id"]]["fold"]) == fold:  # two of the datalist's five folds ran
                assert float(row["prob_hgg"]) == pytest.approx(float(oof[row["id"]]["prob_hgg"]), abs=1e-5)
        y = [labels[r["id"]] for r in rows]
        assert summary["folds"][str(fold)]["auc"] == pytest.approx(
            roc_auc_score(y, [float(r["prob_hgg"]) for r in rows])
        )
    stamp = (copy / "held_out" / "again" / "fold_0.csv").stat().st_mtime_ns
    run_cross_validate("held_out", str(copy), "--dataset_dir", str(small_brats), "--name", "again")
    assert (copy / "held_out" / "again" / "fold_0.csv").stat().st_mtime_ns == stamp  # scored, not predicted again


def test_a_deleted_fold_is_rerun_and_finished_folds_are_skipped(tiny_cv, small_brats, tmp_path):
    copy = tmp_path / "cv"
    shutil.copytree(tiny_cv, copy)
    bundle = copy_bundle("resnet50_3d_ldam", tmp_path)
    fold_0 = (copy / "fold_0" / "fold_result.json").read_text()
    shutil.rmtree(copy / "fold_1")
    result = run_cross_validate(
        "run", str(bundle), "--dataset_dir", str(small_brats), "--output_dir", str(copy), "--folds", "2", *TINY_CV
    )
    assert "fold 1/2: finished before, skipped" in result.stdout
    assert (copy / "fold_0" / "fold_result.json").read_text() == fold_0
    assert json.loads((copy / "fold_1" / "fold_result.json").read_text())["fold"] == 1
    assert len(read_csv(copy / "oof_predictions.csv")) == len(read_csv(tiny_cv / "oof_predictions.csv"))


def test_an_interrupted_fold_resumes_from_its_last_checkpoint(small_brats, tmp_path):
    bundle = copy_bundle("resnet50_3d_ldam", tmp_path)
    cv_dir = tmp_path / "cv"
    args = ["run", str(bundle), "--dataset_dir", str(small_brats), "--output_dir", str(cv_dir), "--folds", "1"]
    args += [*TINY_CV, "--epochs", "3"]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "cross_validate.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not list(cv_dir.glob("fold_0/run_*/checkpoints/last.pt")) and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the runner and the training it started
    process.wait()
    run_dir = next(cv_dir.glob("fold_0/run_*"))
    assert not (cv_dir / "fold_0" / "fold_result.json").exists()
    result = run_cross_validate(*args)
    assert "resuming training from" in result.stdout
    assert sorted(p.name for p in cv_dir.glob("fold_0/run_*")) == [run_dir.name]  # continued in its own folder
    history = json.loads((run_dir / "metrics" / "metrics.json").read_text())["history"]["train_loss"]
    assert [epoch for epoch, _ in history] == [1, 2, 3]
    assert json.loads((cv_dir / "fold_0" / "fold_result.json").read_text())["run_dir"] == str(run_dir)


def test_options_the_runner_sets_itself_are_refused(small_brats, tmp_path):
    result = run_cross_validate(
        "run", "resnet50_3d_ldam", "--dataset_dir", str(small_brats), "--output_dir", str(tmp_path), "--fold", "3",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "--fold" in result.stderr and "set by the runner" in result.stderr
    assert not list(tmp_path.iterdir())
