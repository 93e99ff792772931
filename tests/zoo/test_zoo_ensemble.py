"""ensemble in the model zoo's unit-test style: inference over two members (random weights), on a tiny dataset."""

from __future__ import annotations

import csv

import pytest
from helpers import copy_bundle
from zoo_workflow import check_workflow

from brats_grading.zoo.runtime_checks import member_stand_ins, tiny_dataset

pytestmark = pytest.mark.slow

TEST_CASE_1 = {"num_workers": 0, "method": "mean"}


def test_inference(tmp_path):
    for member in ("resnet50_3d_ldam", "swin_unetr_cls"):
        copy_bundle(member, tmp_path)
    bundle = copy_bundle("ensemble", tmp_path)
    members = member_stand_ins(bundle, tmp_path / "stand_ins")["members"]
    members = [{**m, "overrides": {"spatial_size": [32, 32, 32]}} for m in members]
    dataset = tiny_dataset(tmp_path / "data")
    predictions = tmp_path / "ensemble.csv"
    check_workflow(bundle, ["inference.json"], "infer", {**TEST_CASE_1, "dataset_dir": str(dataset),
                   "members": members, "output_file": str(predictions)})  # fmt: skip
    with open(predictions, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert {"id", "prob_hgg", "predicted_grade", "prob_resnet50_3d_ldam", "prob_swin_unetr_cls"} <= set(rows[0])
