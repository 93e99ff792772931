"""Faults found outside the first round's list: a stale disk cache, a resume that jumps to another run, a
checkpoint file replaced with a moment in which none exists."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import torch
from helpers import run_bundle
from ignite.engine import Engine
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from brats_grading.components.datasets import cached_dataset
from brats_grading.components.handlers import LastCheckpointSaver
from brats_grading.components.handlers.checkpoints import ReplacingSaver
from brats_grading.components.run_folder import latest_checkpoint


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
