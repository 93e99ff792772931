"""Every loader of weights, checkpoints and coefficients refuses a file that needs pickled code, and never runs it."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch
from helpers import import_bundle_scripts
from ignite.engine import Engine

from brats_grading.components import calibration, checkpoints, preflight, pretrained_weights
from brats_grading.components.checkpoints import UntrustedFileError
from brats_grading.components.handlers import BestModelSaver, TrainerCheckpointLoader

MARKER = "code_ran"


class RunsCode:
    """Unpickling it creates a file next to the checkpoint: proof that pickled code ran."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self):
        return (pathlib.Path.touch, (self.folder / MARKER,))


def _resnet_medicalnet(path):
    medicalnet = import_bundle_scripts("resnet50_3d_ldam", "medicalnet")
    networks = import_bundle_scripts("resnet50_3d_ldam", "networks")
    return medicalnet.load_medicalnet_weights(networks.MedicalNetResNet50(in_channels=4, num_classes=2), path)


def _swin_ssl(path):
    ssl = import_bundle_scripts("swin_unetr_cls", "ssl_weights")
    networks = import_bundle_scripts("swin_unetr_cls", "networks")
    return ssl.load_ssl_weights(networks.SwinEncoderClassifier(in_channels=4, num_classes=2, feature_size=12), path)


def _ensemble_member(path):
    members = import_bundle_scripts("ensemble", "members")
    repo = Path(__file__).resolve().parents[2]
    spec = {"name": "m", "bundle": str(repo / "bundles" / "resnet50_3d_ldam"), "checkpoints": [str(path)]}
    return members.load_member(spec)


def _ensemble_torchscript_member(path):
    members = import_bundle_scripts("ensemble", "members")
    return members.load_member({"name": "m", "torchscript": [str(path)]})


def _trainer_resume(path):
    engine = Engine(lambda e, b: None)
    TrainerCheckpointLoader(str(path), {"network": torch.nn.Linear(2, 2)}).attach(engine)
    engine.run([0])


def _publish(path):
    engine = Engine(lambda e, b: None)
    BestModelSaver([str(path)], str(path.parent / "published" / "model.pt"), str(path.parent / "run")).attach(engine)
    engine.run([0])


LOADERS = {
    "load_weights": checkpoints.load_weights,
    "stored_metrics": checkpoints.stored_metrics,
    "select_checkpoint": lambda p: checkpoints.select_checkpoint([p]),
    "read_operating_point": calibration.read_operating_point,
    "read_state_dict (pretrained)": pretrained_weights.read_state_dict,
    "check_checkpoint (inference / evaluation)": lambda p: preflight.check_checkpoint(p, torch.nn.Linear(2, 2)),
    "resume (TrainerCheckpointLoader)": _trainer_resume,
    "publish (BestModelSaver)": _publish,
    "MedicalNet weights": _resnet_medicalnet,
    "Swin SSL weights": _swin_ssl,
    "ensemble member checkpoint": _ensemble_member,
    "ensemble TorchScript member": _ensemble_torchscript_member,
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_loader_refuses_a_file_holding_pickled_code(tmp_path, loader):
    path = tmp_path / "pickled_code.pt"
    torch.save(
        {"model": RunsCode(tmp_path), "metrics": {"selection_score": 1.0}, "state_dict": RunsCode(tmp_path)}, path
    )
    with pytest.raises(ValueError) as info:
        LOADERS[loader](path)
    assert str(path) in str(info.value)
    if loader != "ensemble TorchScript member":  # not a TorchScript archive at all: refused for that
        assert isinstance(info.value, UntrustedFileError) or "refused" in str(info.value), info.value
    assert not (tmp_path / MARKER).exists(), "pickled code ran"


def test_the_pickled_code_really_runs_when_loaded_unsafely(tmp_path):
    """The fixture is a real threat: an unsafe load creates the marker."""
    path = tmp_path / "pickled_code.pt"
    torch.save({"model": RunsCode(tmp_path)}, path)
    torch.load(path, weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_stacking_coefficients_are_json_and_never_unpickled(tmp_path):
    combination = import_bundle_scripts("ensemble", "combination")
    path = tmp_path / "stacking.json"
    torch.save({"coef": RunsCode(tmp_path)}, path)  # a pickle where JSON is expected
    with pytest.raises(ValueError, match="not a stacking JSON file") as info:
        combination.StackingModel.from_json(path, ["a", "b"])
    assert str(path) in str(info.value)
    assert not (tmp_path / MARKER).exists()
