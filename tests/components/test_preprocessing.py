"""The shared preprocessing: shape, dtype, orientation, per-channel z-score, and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from brats_grading.components.data import load_records
from brats_grading.components.preprocessing import (
    augmentation_transforms,
    loading_transforms,
    network_input_transforms,
    preprocessing_transforms,
)


@pytest.fixture(scope="module")
def one_case(small_brats) -> dict:
    return load_records(small_brats / "datalist.json")[0]


def test_output_is_float32_channels_first_at_spatial_size(one_case):
    out = Compose(preprocessing_transforms((32, 40, 24)))(dict(one_case))
    assert out["image"].dtype == torch.float32
    assert tuple(out["image"].shape) == (4, 32, 40, 24)
    assert out["label"] == one_case["label"] and out["id"] == one_case["id"]


def test_nonzero_voxels_are_z_scored_per_channel_before_resizing(one_case):
    transforms = preprocessing_transforms(64)[:-2]  # stop before resize: statistics are exact there
    image = Compose(transforms)(dict(one_case))["image"]
    for channel in image:
        brain = channel[channel != 0]
        assert abs(float(brain.mean())) < 1e-3
        assert abs(float(brain.std()) - 1.0) < 1e-2


def test_crop_removes_empty_border(one_case):
    cropped = Compose(loading_transforms() + network_input_transforms(64)[:1])(dict(one_case))["image"]
    for axis in (1, 2, 3):
        profile = cropped.abs().sum(dim=[d for d in (0, 1, 2, 3) if d != axis])
        assert profile[0] > 0 and profile[-1] > 0


def test_channels_follow_the_record_order(one_case):
    swapped = dict(one_case, image=list(reversed(one_case["image"])))
    a = Compose(preprocessing_transforms(24))(dict(one_case))["image"]
    b = Compose(preprocessing_transforms(24))(swapped)["image"]
    assert torch.allclose(a, b.flip(0))


def test_bad_spatial_size_is_rejected():
    with pytest.raises(ValueError, match="spatial_size"):
        preprocessing_transforms((32, 32))


def test_augmentation_keeps_shape_and_changes_values_with_seed():
    image = torch.rand(4, 32, 32, 32)
    augment = Compose(augmentation_transforms(32))
    augment.set_random_state(seed=1)
    first = augment({"image": image.clone()})["image"]
    augment.set_random_state(seed=1)
    again = augment({"image": image.clone()})["image"]
    augment.set_random_state(seed=2)
    other = augment({"image": image.clone()})["image"]
    assert first.shape == image.shape
    assert torch.equal(torch.as_tensor(first), torch.as_tensor(again))
    assert not torch.equal(torch.as_tensor(first), torch.as_tensor(other))
    assert np.isfinite(np.asarray(first)).all()
