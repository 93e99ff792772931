"""The preprocessing written out as MONAI transforms in the bundles' configs is the shared preprocessing.

``inference.json`` lists it (``loading`` + ``network_input``), ``train.json`` repeats it and adds
``augmentation``; each must give, tensor for tensor, what the package's own transform lists give.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO, parsed_config_item
from monai.transforms import Compose

from brats_grading.components.data import load_records
from brats_grading.components.preprocessing import (
    augmentation_transforms,
    intensity_augmentation_transforms,
    preprocessing_transforms,
)

MODEL_BUNDLES = ("resnet50_3d_ldam", "swin_unetr_cls")
SIZE = [32, 40, 24]


@pytest.fixture(scope="module")
def one_case(small_brats) -> dict:
    return load_records(small_brats / "datalist.json")[0]


def _parsed(bundle: str, config: str, key: str, **overrides):
    folder = REPO / "bundles" / bundle
    config = json.loads((folder / "configs" / config).read_text())
    return parsed_config_item(folder, config, key, spatial_size=SIZE, **overrides)


@pytest.mark.parametrize("bundle", MODEL_BUNDLES)
@pytest.mark.parametrize("saliency", [False, True])
def test_inference_preprocessing_equals_the_shared_transforms(bundle, saliency, one_case):
    from_config = _parsed(bundle, "inference.json", "preprocessing", saliency=saliency)(dict(one_case))
    expected = Compose(preprocessing_transforms(SIZE, keep_meta=saliency))(dict(one_case))
    assert type(from_config["image"]) is type(expected["image"])
    assert torch.equal(from_config["image"], expected["image"])
    assert sorted(from_config) == sorted(expected)


@pytest.mark.parametrize("bundle", MODEL_BUNDLES)
def test_training_and_validation_preprocessing_equal_the_shared_transforms(bundle, one_case):
    validate = _parsed(bundle, "train.json", "validate#preprocessing")(dict(one_case))
    assert torch.equal(validate["image"], Compose(preprocessing_transforms(SIZE))(dict(one_case))["image"])
    train = _parsed(bundle, "train.json", "train#preprocessing").set_random_state(seed=7)
    spatial = preprocessing_transforms(SIZE) + augmentation_transforms(SIZE)
    expected = Compose(spatial + intensity_augmentation_transforms()).set_random_state(seed=7)
    for _ in range(3):  # three draws: the affine fires on some, not others
        assert torch.equal(train(dict(one_case))["image"], expected(dict(one_case))["image"])


@pytest.mark.parametrize("bundle", MODEL_BUNDLES)
def test_intensity_augmentation_is_off_by_default_and_the_shared_transforms_when_on(bundle, one_case):
    on = {"intensity_augmentation_prob": 1.0}
    train = _parsed(bundle, "train.json", "train#preprocessing", **on).set_random_state(seed=3)
    spatial = preprocessing_transforms(SIZE) + augmentation_transforms(SIZE)
    expected = Compose(spatial + intensity_augmentation_transforms(prob=1.0)).set_random_state(seed=3)
    without = Compose(preprocessing_transforms(SIZE) + augmentation_transforms(SIZE)).set_random_state(seed=3)
    for _ in range(2):
        image = train(dict(one_case))["image"]
        assert torch.equal(image, expected(dict(one_case))["image"])
        moved = (image - without(dict(one_case))["image"]).abs().mean()
        assert moved > 0.05  # every step fired: the values moved well beyond rounding


@pytest.mark.parametrize("bundle", MODEL_BUNDLES)
def test_one_step_can_be_overridden_from_the_command_line(bundle, one_case):
    """A user changes one transform by its config id, e.g. ``--network_input#2#mode nearest``."""
    preprocessing = _parsed(bundle, "inference.json", "preprocessing", **{"network_input#2#mode": "nearest"})
    image = preprocessing(dict(one_case))["image"]
    assert not torch.equal(image, Compose(preprocessing_transforms(SIZE))(dict(one_case))["image"])
    assert tuple(image.shape[1:]) == tuple(SIZE)


@pytest.mark.parametrize("bundle", MODEL_BUNDLES)
def test_train_and_inference_configs_list_the_same_preprocessing(bundle):
    """``train.json`` stands alone, so it repeats ``inference.json``'s lists; only the saliency switch differs.
    The ensemble's ``loading`` (one load for all members) is the same list too."""
    folder = REPO / "bundles" / bundle / "configs"
    inference = json.loads((folder / "inference.json").read_text())
    train = json.loads((folder / "train.json").read_text())
    ensemble = json.loads((REPO / "bundles" / "ensemble" / "configs" / "inference.json").read_text())
    assert train["loading"] == inference["loading"] == ensemble["loading"]
    without_saliency = [dict(t) for t in inference["network_input"] if t["_target_"] != "FromMetaTensord"]
    without_saliency[-1]["track_meta"] = False
    assert train["network_input"] == without_saliency
