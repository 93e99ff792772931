"""resnet50_3d_ldam in the model zoo's unit-test style: train, train + evaluate, inference on a tiny dataset."""

from __future__ import annotations

import pytest
from helpers import copy_bundle
from zoo_workflow import train_evaluate_infer

from brats_grading.zoo.runtime_checks import tiny_dataset

pytestmark = pytest.mark.slow

TEST_CASE_1 = {  # train: one epoch, small input, no workers, no publishing
    "epochs": 1,
    "spatial_size": [32, 32, 32],
    "batch_size": 2,
    "val_batch_size": 2,
    "accumulation_steps": 1,
    "num_workers": 0,
    "cache": "none",
    "ema_warmup_steps": 1,
}
TEST_CASE_2 = {"spatial_size": [32, 32, 32], "num_workers": 0, "cache": "none", "use_latest_run": True}
TEST_CASE_3 = {"spatial_size": [32, 32, 32], "num_workers": 0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo_resnet")
    return copy_bundle("resnet50_3d_ldam", work), tiny_dataset(work / "data"), work / "runs"


def test_train_then_evaluate_then_infer(setup):
    rows = train_evaluate_infer(*setup, TEST_CASE_1, TEST_CASE_2, TEST_CASE_3)
    assert len(rows) == 4 and all(0.0 <= float(r["prob_hgg"]) <= 1.0 for r in rows)
