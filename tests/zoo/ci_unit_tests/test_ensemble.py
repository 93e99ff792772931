"""ensemble as the model zoo's ``ci/unit_tests`` test it: inference over its two default members.

The members are the sibling bundles with random weights saved here (what is tested is the workflow,
not the weights). Written for the zoo's ``ci/unit_tests`` folder (with ``brats_cases.py``).
"""

import csv
import json
import os
import shutil
import tempfile
import unittest

import torch
from brats_cases import bundle_on_path, write_brats_cases
from monai.bundle import ConfigParser, ConfigWorkflow
from utils import check_workflow

MODELS_DIR = os.environ.get("ZOO_MODELS_DIR", "models")
BUNDLE_ROOT = os.path.join(MODELS_DIR, "ensemble")
MEMBERS = ("resnet50_3d_ldam", "swin_unetr_cls")
MEMBER_OVERRIDES = {"spatial_size": [32, 32, 32]}
TEST_CASE_1 = {"num_workers": 0, "method": "mean"}


def random_member(name: str, folder: str) -> dict:
    """A member spec: the sibling bundle with a random-weight checkpoint (and default operating point)."""
    bundle = os.path.join(MODELS_DIR, name)
    with bundle_on_path(bundle):
        with open(os.path.join(bundle, "configs", "inference.json")) as handle:
            parser = ConfigParser(json.load(handle))
        parser.update({"bundle_root": bundle, **MEMBER_OVERRIDES})
        torch.manual_seed(0)
        checkpoint = os.path.join(folder, f"{name}.pt")
        torch.save(parser.get_parsed_content("network_def").state_dict(), checkpoint)
    return {"name": name, "bundle": bundle, "checkpoints": [checkpoint], "overrides": MEMBER_OVERRIDES}


class TestBundle(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp()
        self.dataset_dir = write_brats_cases(os.path.join(self.work, "data"))
        self.members = [random_member(name, self.work) for name in MEMBERS]

    def tearDown(self):
        shutil.rmtree(self.work)

    def test_inference(self):
        predictions = os.path.join(self.work, "ensemble.csv")
        override = {**TEST_CASE_1, "members": self.members, "input": self.dataset_dir, "output_file": predictions}
        with bundle_on_path(BUNDLE_ROOT):
            workflow = ConfigWorkflow(
                config_file=os.path.join(BUNDLE_ROOT, "configs", "inference.json"),
                meta_file=os.path.join(BUNDLE_ROOT, "configs", "metadata.json"),
                logging_file=os.path.join(BUNDLE_ROOT, "configs", "logging.conf"),
                workflow_type="infer",
                bundle_root=BUNDLE_ROOT,
                **override,
            )
            check_workflow(workflow, check_properties=True)
        with open(predictions, newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.assertEqual(len(rows), 4)
        self.assertLessEqual({"id", "prob_hgg", "predicted_grade", *(f"prob_{m}" for m in MEMBERS)}, set(rows[0]))


if __name__ == "__main__":
    unittest.main()
