"""The MONAI Label app's classification task on a stacked 4-channel volume, in the MONAI Label environment.

``make test-label`` builds that environment (monailabel 0.8.5 on the CPU torch, see docs/deployment.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import REPO, copy_bundle

pytestmark = pytest.mark.label

APP = REPO / "src" / "brats_grading" / "label_app" / "main.py"
sys.path.insert(0, str(REPO / "src"))  # the repository is not installed in the MONAI Label environment
from brats_grading.components.bundle_env import bundle_importable  # noqa: E402  (standard library only)


def _app_module():
    spec = importlib.util.spec_from_file_location("brats_label_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bundle_with_random_weights(tmp_path: Path) -> Path:
    bundle = copy_bundle("resnet50_3d_ldam", tmp_path)
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["spatial_size"] = [32, 32, 32]
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=4) + "\n")
    with bundle_importable(bundle):
        from monai.bundle import ConfigParser

        parser = ConfigParser(config)
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def", lazy=False)
        (bundle / "models").mkdir(exist_ok=True)
        torch.save(network.state_dict(), bundle / "models" / "model.pt")
    return bundle


def _stacked_case(path: Path) -> Path:
    rng = np.random.default_rng(0)
    volume = np.zeros((48, 44, 40, 4), dtype=np.float32)
    volume[8:40, 6:38, 5:35] = rng.normal(100.0, 20.0, size=(32, 32, 30, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    return path


def _bundle_probabilities(bundle: Path, case: Path) -> np.ndarray:
    """The bundle's own inference.json pipeline: preprocessing, inferer (its autocast and layout), postprocessing."""
    with bundle_importable(bundle):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser.update({"bundle_root": str(bundle), "device": "cpu"})
        network = parser.get_parsed_content("network", lazy=False).eval()
        network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
        data = parser.get_parsed_content("preprocessing")({"image": str(case)})
        with torch.no_grad():
            data["pred"] = parser.get_parsed_content("inferer")(data["image"][None].float(), network)[0]
        return np.asarray(parser.get_parsed_content("postprocessing")(data)["pred"])


def test_the_label_task_returns_the_bundles_class_probabilities(tmp_path):
    bundle = _bundle_with_random_weights(tmp_path)
    case = _stacked_case(tmp_path / "case_0001.nii.gz")
    task = _app_module().grading_task(str(bundle), {"preload": "false"})
    assert task.is_valid() and task.type == "classification"
    _, result = task({"image": str(case), "device": "cpu"})
    scores = {p["label"]: p["score"] for p in result["prediction"]}
    assert set(scores) == {"lgg", "hgg"} and sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    expected = _bundle_probabilities(bundle, case)
    assert [scores["lgg"], scores["hgg"]] == pytest.approx(expected.tolist(), abs=1e-5)
