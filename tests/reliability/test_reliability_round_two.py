"""Faults found outside the first round's list: a stale disk cache, a resume that jumps to another run, a
checkpoint file replaced with a moment in which none exists, garbage graded, messages a user cannot read, a
checkpoint of another network, a batch inference that loses its batch."""

from __future__ import annotations

import json
import os
import shutil
import signal

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import BUNDLES, import_bundle_scripts, read_csv, run_bundle
from ignite.engine import Engine, Events
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from brats_grading.components.calibration import read_operating_point
from brats_grading.components.data import DatasetError, load_records, read_grades_csv, scan_cases
from brats_grading.components.datasets import cached_dataset
from brats_grading.components.handlers import InterruptHandler, LastCheckpointSaver, PredictionSaver, SaliencySaver
from brats_grading.components.handlers.checkpoints import ReplacingSaver
from brats_grading.components.preflight import CheckpointMismatchError, check_checkpoint
from brats_grading.components.preprocessing import CheckVoxelsd
from brats_grading.components.run_folder import latest_checkpoint
from brats_grading.components.validation import DataValidationError, check_cases, check_volume


def _volume(path, value: float) -> None:
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), value, dtype=np.float32), np.eye(4)), str(path))


def test_a_case_replaced_in_place_is_preprocessed_again_not_served_from_the_disk_cache(tmp_path):
    image = tmp_path / "case_flair.nii"
    _volume(image, 1.0)
    record = {"id": "case", "label": 1, "image": [str(image)]}
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image", channel_dim="no_channel")])
    cache = tmp_path / "cache"
    assert float(cached_dataset([dict(record)], load, "disk", cache)[0]["image"].max()) == 1.0
    stat = image.stat()
    _volume(image, 7.0)  # same name, same size, new content; even the modification time put back
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image.stat().st_size == stat.st_size
    assert float(cached_dataset([dict(record)], load, "disk", cache)[0]["image"].max()) == 7.0


def test_resume_refuses_to_jump_to_an_older_run_when_the_newest_has_no_checkpoint(tmp_path):
    older = tmp_path / "fold_1" / "run_20260101_000000" / "checkpoints"
    newer = tmp_path / "fold_1" / "run_20260101_000000_1" / "checkpoints"  # same second: unused_path's suffix
    older.mkdir(parents=True)
    newer.mkdir(parents=True)
    (older / "last.pt").write_bytes(b"old run")
    try:
        latest_checkpoint(tmp_path, 1)
    except FileNotFoundError as error:
        message = str(error)
    else:
        raise AssertionError("resumed an older run silently")
    assert str(newer.parent) in message and f"--resume_from {older / 'last.pt'}" in message
    (newer / "last.pt").write_bytes(b"new run")
    os.utime(older / "last.pt")  # the older file is now the newest by time: the newest *run* still wins
    assert latest_checkpoint(tmp_path, 1) == str(newer / "last.pt")


class _Weights:
    def __init__(self, value: float) -> None:
        self.value = value

    def state_dict(self) -> dict:
        return {"w": torch.tensor([self.value])}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["w"])


def test_last_pt_is_never_absent_while_it_is_replaced(tmp_path, monkeypatch):
    """Every file-system call the saver makes while replacing ``last.pt`` finds the previous one in place."""
    weights = _Weights(1.0)
    trainer = Engine(lambda e, b: None)
    LastCheckpointSaver(str(tmp_path), {"weights": weights}).attach(trainer)
    trainer.run([0], max_epochs=1)
    last = tmp_path / "last.pt"
    assert torch.load(last, weights_only=True)["weights"]["w"].item() == 1.0
    seen = []
    for name in ("replace", "remove", "unlink"):
        original = getattr(os, name)

        def watched(*args, _original=original, **kwargs):
            seen.append(last.is_file())
            return _original(*args, **kwargs)

        monkeypatch.setattr(os, name, watched)
    original_save = torch.save

    def watched_save(*args, **kwargs):
        seen.append(last.is_file())
        return original_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", watched_save)
    weights.value = 2.0
    trainer.run([0], max_epochs=2)  # ignite asks its save handler to remove the old file before saving the new
    monkeypatch.undo()
    assert seen and all(seen)
    assert torch.load(last, weights_only=True)["weights"]["w"].item() == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no partial file left


def test_a_file_checkpoint_asks_to_remove_goes_only_once_its_successor_is_written(tmp_path):
    saver = ReplacingSaver(tmp_path)
    saver({"w": torch.tensor([1.0])}, "epoch_1.pt")
    saver.remove("epoch_1.pt")  # what ignite's Checkpoint does before saving the next file
    assert (tmp_path / "epoch_1.pt").is_file()
    saver({"w": torch.tensor([2.0])}, "epoch_2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_2.pt"]


BUNDLE = "resnet50_3d_ldam"


def test_a_batch_larger_than_the_training_set_is_refused_with_the_message_as_the_last_line(
    bundle, small_brats, tmp_path
):
    """drop_last would leave no batch: the run trained nothing and exited 0. Now one line says why, and no
    traceback reaches the terminal (it goes to the log file; BRATS_GRADING_DEBUG=1 prints it)."""
    output = tmp_path / "out"
    args = ["--dataset_dir", str(small_brats), "--output_dir", str(output), "--spatial_size", "[16,16,16]"]
    result = run_bundle(bundle, ["train.json"], *args, "--batch_size", "100", "--num_workers", "0", check=False)
    assert result.returncode != 0
    shown = (result.stdout + result.stderr).strip()
    assert result.stderr.strip().splitlines()[-1] == (
        "error: TrainingSetupError: batch_size 100 is larger than the 16 training cases of fold 0 (per process): "
        "no batch would run and nothing would be trained. Lower --batch_size"
    )
    assert "Traceback" not in shown and "Failed to evaluate" not in shown
    assert not (output / "fold_0").exists()  # refused before a run folder was made


# --- garbage that used to be graded, and datalists that used to pass the data check ---


def _case(folder, case_id: str, seed: int, names=("t1", "t1ce", "t2", "flair")) -> list[str]:
    case_dir = folder / case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = case_dir / f"{case_id}_{name}.nii.gz"
        nib.save(nib.Nifti1Image(rng.uniform(1, 100, (12, 14, 10)).astype(np.float32), np.eye(4)), str(path))
        paths.append(str(path))
    return paths


def _one_bright_voxel():
    volume = np.zeros((32, 32, 32), np.float32)
    volume[5, 5, 5] = 1.0
    return volume


DEGENERATE = {
    "one slice": (np.random.default_rng(0).uniform(1, 2, (32, 32, 1)).astype(np.float32), "a side under 8"),
    "one non-zero voxel": (_one_bright_voxel(), "non-zero voxels"),
    "constant image": (np.full((32, 32, 32), 5.0, np.float32), "no contrast"),
    "2x2x2": (np.random.default_rng(0).uniform(1, 2, (2, 2, 2)).astype(np.float32), "a side under 8"),
}


@pytest.mark.parametrize("kind", list(DEGENERATE))
def test_a_degenerate_volume_is_refused_by_the_data_check_and_by_inference_with_the_reason(kind):
    volume, reason = DEGENERATE[kind]
    with pytest.raises(DataValidationError, match=reason):
        check_volume(volume, "case 'x': x_flair.nii.gz")
    with pytest.raises(DataValidationError, match=reason):  # the preprocessing step every bundle runs
        CheckVoxelsd(keys="image")({"id": "x", "image": torch.as_tensor(volume)[None]})


def test_a_file_holding_two_volumes_is_refused_by_inference_and_one_with_a_trailing_axis_of_1_passes_both():
    with pytest.raises(DataValidationError, match="one 3-D volume per file"):
        CheckVoxelsd(keys="image")({"id": "x", "image": torch.rand(4, 16, 16, 16, 2) + 1})
    check_volume(np.random.default_rng(0).uniform(1, 2, (16, 16, 16, 1)), "case 'x'")  # as inference reads it


def test_float64_values_beyond_float32_are_refused_by_the_data_check():
    volume = np.random.default_rng(0).uniform(1, 2, (16, 16, 16))
    volume[0, 0, 0] = 1e300
    with pytest.raises(DataValidationError, match="1 NaN or Inf voxels .* once read as float32"):
        check_volume(volume, "case 'x'")


def test_the_data_check_finds_one_patient_under_two_ids(tmp_path):
    records = [{"id": f"c{i}", "image": _case(tmp_path, f"c{i}", seed=i)} for i in range(3)]
    copy = _case(tmp_path, "c9", seed=99)
    for source, target in zip(records[1]["image"], copy, strict=True):
        shutil.copyfile(source, target)  # c9 is c1 again
    records.append({"id": "c9", "image": copy})
    stamps = tmp_path / "stamps.json"
    bad = check_cases(records, stamps, raise_on_error=False)
    assert list(bad) == ["c9"] and "same voxels as" in bad["c9"] and "case 'c1'" in bad["c9"]
    assert check_cases(records, stamps, raise_on_error=False) == bad  # found again from the stamps, unread


def _datalist(tmp_path, items: list[dict]):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"channel_order": ["t1", "t1ce", "t2", "flair"], "training": items}))
    return path


def _item(case_id: str, fold: int, label: int = 1, **extra) -> dict:
    names = [f"{case_id}/{case_id}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair")]
    return {"id": case_id, "image": names, "label": label, "fold": fold, **extra}


@pytest.mark.parametrize(
    "fault, words",
    [
        ("one id in two folds", "case id 'a' is listed twice (entries 0 and 2, folds 0 and 1)"),
        ("flair listed as t1", "lists a/a_flair.nii.gz as t1 (channel 0"),
        ("label 0 with grade HGG", "has label 0 (LGG) but grade 'HGG'"),
    ],
)
def test_a_datalist_contradicting_itself_is_refused_naming_the_case(tmp_path, fault, words):
    items = [_item("a", 0), _item("b", 1, label=0), _item("c", 1)]
    if fault == "one id in two folds":
        items[2] = _item("a", 1)
    if fault == "flair listed as t1":
        items[0]["image"][0], items[0]["image"][3] = items[0]["image"][3], items[0]["image"][0]
    if fault == "label 0 with grade HGG":
        items[0] = _item("a", 0, label=0, grade="HGG")
    with pytest.raises(DatasetError) as info:
        load_records(_datalist(tmp_path, items), tmp_path)
    assert words in str(info.value)


# --- messages a user can read ---


def test_a_grades_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "name_mapping.csv"
    path.write_bytes("\ufeffBraTS_2020_subject_ID,Grade\nc1,HGG\nc2,LGG\n".encode("utf-8"))
    assert read_grades_csv(path) == {"c1": "HGG", "c2": "LGG"}


def test_hidden_folders_are_not_cases_and_a_folder_one_level_too_high_names_the_one_meant(tmp_path):
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    for i in range(2):
        _case(root, f"c{i}", seed=i)
    (root / "name_mapping.csv").write_text("BraTS_2020_subject_ID,Grade\nc0,HGG\nc1,LGG\n")
    (root / ".ipynb_checkpoints").mkdir()
    assert [r["id"] for r in scan_cases(root)] == ["c0", "c1"]
    with pytest.raises(DatasetError, match=f"holds a dataset folder, not cases: {root} has a grades CSV; pass"):
        scan_cases(tmp_path)


def test_a_malformed_operating_point_file_is_named(tmp_path):
    (tmp_path / "model.operating_point.json").write_text('{"temperature": 1.2, ')
    with pytest.raises(ValueError, match="operating point .*model.operating_point.json is not readable JSON"):
        read_operating_point(tmp_path / "model.pt")


# --- a checkpoint of another network, and ensemble member overrides ---


def test_a_checkpoint_of_another_layout_with_the_same_tensors_is_refused_naming_the_setting(tmp_path):
    network = torch.nn.Linear(3, 2)
    trained = {"architecture": "MedicalNetResNet50", "layout": "strided", "modalities": ["t1", "t1ce", "t2", "flair"]}
    torch.save({"model": network.state_dict(), "metrics": {"network": trained}}, tmp_path / "best.pt")
    check_checkpoint(tmp_path / "best.pt", network, dict(trained))
    with pytest.raises(CheckpointMismatchError, match='trained with layout "strided" but this config builds layout'):
        check_checkpoint(tmp_path / "best.pt", network, {**trained, "layout": "medicalnet"})
    torch.save(network.state_dict(), tmp_path / "model.pt")  # a published model: the settings in its side file
    (tmp_path / "model.operating_point.json").write_text(
        json.dumps({"temperature": 1.0, "threshold": 0.5, "network": trained})
    )
    permuted = {**trained, "modalities": ["t1ce", "t1", "t2", "flair"]}
    with pytest.raises(CheckpointMismatchError, match="--modalities"):
        check_checkpoint(tmp_path / "model.pt", network, permuted)


def test_an_ensemble_member_override_that_is_no_key_of_the_member_is_refused():
    members = import_bundle_scripts("ensemble", "members")
    resnet = BUNDLES / "resnet50_3d_ldam"
    members._check_override_keys({"name": "resnet", "overrides": {"layout": "strided", "epochs": 2}}, resnet)
    with pytest.raises(ValueError, match="override 'layuot' \\(did you mean 'layout'\\?\\) is not a key"):
        members._check_override_keys({"name": "resnet", "overrides": {"layuot": "strided"}}, resnet)


# --- batch inference keeps what it computed ---


def test_inference_that_crashes_late_keeps_the_rows_computed_before(tmp_path):
    def step(engine, batch):
        if engine.state.iteration == 3:
            raise RuntimeError("out of memory")
        return [{"pred": torch.tensor([0.0, float(i)]), "id": f"c{engine.state.iteration}_{i}"} for i in range(2)]

    engine = Engine(step)
    PredictionSaver(str(tmp_path / "predictions.csv")).attach(engine)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.run([{"id": ["a", "b"]}, {"id": ["c", "d"]}, {"id": ["e", "f"]}])
    rows = read_csv(tmp_path / "predictions_partial.csv")
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert not (tmp_path / "predictions.csv").exists()  # an incomplete file is never taken for the whole batch


def test_a_case_id_with_a_path_separator_gets_a_saliency_file_in_the_saliency_folder(tmp_path):
    class _Saver:
        output_dir = tmp_path

    path = SaliencySaver.output_path(_Saver(), "site1/../case 7")
    assert path.parent == tmp_path and path.name == "site1_.._case_7_saliency.nii.gz"


# --- Ctrl-C and SIGTERM ---


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_checkpoint_write_lets_it_finish_then_stops_with_128_plus_the_signal(number, tmp_path):
    """Before, Ctrl-C inside ``torch.save`` broke the write and ended in a RuntimeError traceback."""
    before = signal.getsignal(number)
    trainer = Engine(lambda e, b: None)
    InterruptHandler(str(tmp_path / "last.pt")).attach(trainer)
    written = []

    def save(engine):
        os.kill(os.getpid(), number)  # arrives while the "checkpoint" is being written
        torch.save({"w": torch.zeros(1000)}, tmp_path / "last.pt")
        written.append(engine.state.epoch)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, save)
    with pytest.raises(SystemExit) as stop:
        trainer.run([0, 1], max_epochs=3)
    assert stop.value.code == 128 + number and written == [1]  # the write finished; epoch 2 never started
    assert torch.load(tmp_path / "last.pt", weights_only=True)["w"].shape == (1000,)
    assert signal.getsignal(number) is before  # the caller's handler is back
