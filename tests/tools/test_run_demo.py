"""The demo's held-out figures come from the held-out labels and the package's own metrics code."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from helpers import REPO

from brats_grading.components.metrics import classification_metrics
from brats_grading.components.outputs import write_prediction_csv

spec = importlib.util.spec_from_file_location("run_demo", REPO / "scripts" / "run_demo.py")
run_demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_demo)


def test_held_out_metrics_score_the_csv_against_the_datalist_labels_at_its_threshold(tmp_path):
    labels = [1, 1, 0, 0, 1, 0]
    probs = [0.9, 0.35, 0.4, 0.1, 0.6, 0.2]
    ids = [f"case{i}" for i in range(len(labels))]
    records = [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": records}))
    logits = [math.log(p / (1 - p)) for p in probs]  # temperature 1
    csv_path = write_prediction_csv(tmp_path / "predictions.csv", ids, probs, logits, threshold=0.3)
    held = run_demo.held_out_metrics(csv_path, tmp_path)
    assert not held["collapsed"]
    expected = classification_metrics(labels, probs, threshold=0.35)  # the lowest P(HGG) called HGG
    for key in ("auc", "balanced_accuracy", "sensitivity", "specificity", "num_cases"):
        assert held[key] == expected[key], key
    low, high = held["auc_95ci"]
    assert low <= held["auc"] <= high
    # the same probabilities from near-constant logits (a tiny temperature stretched them): collapsed
    flat = write_prediction_csv(tmp_path / "flat.csv", ids, probs, [z * 1e-4 for z in logits], threshold=0.3)
    assert run_demo.held_out_metrics(flat, tmp_path)["collapsed"]


def test_demo_refuses_a_held_out_seed_equal_to_the_training_seed():
    with pytest.raises(SystemExit):
        run_demo.main(["--seed", "3", "--held-out-seed", "3"])
