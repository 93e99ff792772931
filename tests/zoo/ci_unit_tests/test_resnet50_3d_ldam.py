"""resnet50_3d_ldam as the model zoo's ``ci/unit_tests`` test it: train, train + evaluate, inference on a tiny dataset.

Written for the zoo's ``ci/unit_tests`` folder (with ``brats_cases.py``); runs unchanged in this repository.
"""

import csv
import os
import shutil
import tempfile
import unittest

from brats_cases import bundle_on_path, write_brats_cases
from monai.bundle import ConfigWorkflow
from utils import check_workflow

BUNDLE_ROOT = os.path.join(os.environ.get("ZOO_MODELS_DIR", "models"), "resnet50_3d_ldam")
SMALL = {"spatial_size": [32, 32, 32], "num_workers": 0}
TEST_CASE_1 = {**SMALL, "epochs": 1, "batch_size": 2, "val_batch_size": 2, "accumulation_steps": 1, "cache": "none",
               "ema_warmup_steps": 1}  # fmt: skip
TEST_CASE_2 = {**SMALL, "cache": "none", "use_latest_run": True}
TEST_CASE_3 = SMALL


class TestBundle(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp()
        self.dataset_dir = write_brats_cases(os.path.join(self.work, "data"))
        self.output_dir = os.path.join(self.work, "runs")
        with bundle_on_path(BUNDLE_ROOT):  # the bundle's own datalist entry point: patient-level stratified folds
            self.workflow("train.json", "train", run_id="make_datalist", num_folds=2).run()

    def tearDown(self):
        shutil.rmtree(self.work)

    def workflow(self, config, workflow_type, **override):
        configs = [os.path.join(BUNDLE_ROOT, "configs", c) for c in ([config] if isinstance(config, str) else config)]
        workflow = ConfigWorkflow(
            config_file=configs,
            meta_file=os.path.join(BUNDLE_ROOT, "configs", "metadata.json"),
            logging_file=os.path.join(BUNDLE_ROOT, "configs", "logging.conf"),
            workflow_type=workflow_type,
            bundle_root=BUNDLE_ROOT,
            dataset_dir=self.dataset_dir,
            **override,
        )
        if "run_id" in override:
            workflow.initialize()
        return workflow

    def check(self, config, workflow_type, override):
        with bundle_on_path(BUNDLE_ROOT):
            workflow = self.workflow(config, workflow_type, **override)
            check_workflow(workflow, check_properties=True)
            return workflow

    def test_train_then_evaluate_then_infer(self):
        self.check("train.json", "train", {**TEST_CASE_1, "output_dir": self.output_dir})
        evaluation = self.check(
            ["train.json", "evaluate.json"], "train", {**TEST_CASE_2, "output_dir": self.output_dir}
        )
        checkpoint = evaluation.parser.get_parsed_content("checkpoint")
        predictions = os.path.join(self.work, "predictions.csv")
        self.check("inference.json", "infer", {**TEST_CASE_3, "checkpoint": checkpoint, "output_file": predictions})
        with open(predictions, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.assertEqual(len(rows), 4)
        self.assertTrue(all(0.0 <= float(r["prob_hgg"]) <= 1.0 for r in rows))


if __name__ == "__main__":
    unittest.main()
