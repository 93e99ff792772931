"""Grad-CAM saliency at inference: one NIfTI per case, in the space of the case's input image, for both bundles."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import BUNDLES, copy_bundle, import_bundle_scripts, run_bundle, run_in_bundle
from monai.bundle import ConfigParser
from monai.transforms import Compose
from torch import nn

from brats_grading.components.data import load_records
from brats_grading.components.handlers import SaliencySaver
from brats_grading.components.preprocessing import preprocessing_transforms

SMALL = ["--spatial_size", "[32,32,32]", "--num_workers", "0"]
N_CASES = 5  # batches of 2, 2 and 1 at the default batch size: full and partial batches are decollated
# At 32^3 the Swin's last stage (swinViT.layers4.0, the default) is a single voxel, so its Grad-CAM is constant
# (and ~0: the layer norm after it makes the class score scale-invariant there). The end-to-end run uses the
# stage before it (2^3); test_swin_default_layer_gives_a_map_at_a_larger_input covers the default.
EXTRA = {
    "resnet50_3d_ldam": {"cli": [], "config": {}},
    "swin_unetr_cls": {
        "cli": ["--feature_size", "12", "--saliency_layer", "swinViT.layers3.0"],
        "config": {"feature_size": 12},
    },
}


def _small_datalist(small_brats: Path, small_datalist: dict, folder: Path) -> tuple[Path, list[dict]]:
    """The first ``N_CASES`` cases of the session dataset, with absolute image paths, as a datalist file."""
    content = dict(small_datalist)
    content["training"] = [
        {**case, "image": [str(small_brats / p) for p in case["image"]]}
        for case in small_datalist["training"][:N_CASES]
    ]
    path = folder / "datalist.json"
    path.write_text(json.dumps(content, indent=4))
    return path, content["training"]


def _untrained_model(bundle: Path, overrides: dict) -> None:
    """``models/model.pt``: the state dict of inference.json's ``network_def``, randomly initialised (seed 0)."""
    run_in_bundle(
        bundle,
        f"""
parser = ConfigParser()
parser.read_config("configs/inference.json")
parser.update({overrides!r})
torch.manual_seed(0)
torch.save(parser.get_parsed_content("network_def").state_dict(), "models/model.pt")
print(json.dumps({{"saved": True}}))
""",
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXTRA))
def test_inference_writes_one_saliency_map_per_case_in_the_input_image_space(
    name, small_brats, small_datalist, tmp_path
):
    bundle = copy_bundle(name, tmp_path)
    _untrained_model(bundle, EXTRA[name]["config"])
    datalist, cases = _small_datalist(small_brats, small_datalist, tmp_path)
    output = tmp_path / "out"
    run_bundle(
        bundle,
        ["inference.json"],
        "--saliency",
        "True",
        "--input",
        str(datalist),
        "--output_dir",
        str(output),
        *SMALL,
        *EXTRA[name]["cli"],
    )
    t1_index = small_datalist["channel_order"].index("t1")
    written = sorted(p.name for p in (output / "saliency").iterdir())
    assert written == sorted(f"{c['id']}_saliency.nii.gz" for c in cases)
    for case in cases:
        t1 = nib.load(case["image"][t1_index])
        saliency = nib.load(output / "saliency" / f"{case['id']}_saliency.nii.gz")
        data = saliency.get_fdata(dtype=np.float32)
        assert saliency.shape == t1.shape, case["id"]
        np.testing.assert_allclose(saliency.affine, t1.affine, atol=1e-4)
        assert saliency.get_data_dtype() == np.float32
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() > 0, case["id"]
    assert len((output / "predictions.csv").read_text().strip().splitlines()) == len(cases) + 1


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv3d(4, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))


@pytest.fixture(scope="module")
def one_case(small_brats) -> dict:
    return load_records(small_brats / "datalist.json")[0]


def test_inverse_puts_the_network_grid_back_onto_the_input_image(one_case, tmp_path):
    """The preprocessed brain, mapped back by the saver, lies on the original brain: orientation, crop, resize."""
    preprocessing = Compose(preprocessing_transforms(32, keep_meta=True))
    case = preprocessing(dict(one_case))
    assert type(case["image"]) is torch.Tensor  # the network gets a plain tensor
    saver = SaliencySaver(_tiny_net(), preprocessing, str(tmp_path), target_layer="0")
    brain_on_grid = (case["image"].abs().sum(0, keepdim=True) > 0).float()
    back = saver.to_input_space(brain_on_grid, case)
    flair = nib.load(one_case["image"][-1])
    assert tuple(back.shape[1:]) == flair.shape
    np.testing.assert_allclose(np.asarray(back.affine), flair.affine, atol=1e-4)
    mapped, brain = back[0].numpy() > 0.5, np.asarray(flair.dataobj) != 0
    dice = 2 * (mapped & brain).sum() / (mapped.sum() + brain.sum())
    assert dice > 0.9, dice


def test_an_existing_file_is_never_overwritten(one_case, tmp_path):
    preprocessing = Compose(preprocessing_transforms(16, keep_meta=True))
    case = preprocessing(dict(one_case))
    saver = SaliencySaver(_tiny_net(), preprocessing, str(tmp_path / "saliency"), target_layer="0")
    first = saver.save_case(case["id"], case)
    first_bytes = first.read_bytes()
    second = saver.save_case(case["id"], case)
    assert first.name == f"{case['id']}_saliency.nii.gz"
    assert second.name == f"{case['id']}_saliency_1.nii.gz"
    assert first.read_bytes() == first_bytes


def test_target_layer_and_meta_are_checked(one_case, tmp_path):
    net = import_bundle_scripts("swin_unetr_cls", "networks").SwinEncoderClassifier(feature_size=12)
    preprocessing = Compose(preprocessing_transforms(32, keep_meta=True))
    with pytest.raises(ValueError, match=r"'swinViT.layers4.0'"):
        SaliencySaver(net, preprocessing, str(tmp_path), target_layer="swinViT.layers4")  # a ModuleList
    with pytest.raises(ValueError, match="not a module"):
        SaliencySaver(net, preprocessing, str(tmp_path), target_layer="layer4")
    plain = Compose(preprocessing_transforms(16))
    saver = SaliencySaver(_tiny_net(), plain, str(tmp_path), target_layer="0")
    with pytest.raises(ValueError, match="keep_meta=True"):
        saver.save_case(one_case["id"], plain(dict(one_case)))


def test_swin_default_layer_gives_a_map_at_a_larger_input(tmp_path):
    config = json.loads((BUNDLES / "swin_unetr_cls" / "configs" / "inference.json").read_text())
    torch.manual_seed(0)
    net = import_bundle_scripts("swin_unetr_cls", "networks").SwinEncoderClassifier(feature_size=12)
    layer = ConfigParser({k: config[k] for k in ("saliency_layer", "pooled_stages")}).get_parsed_content(
        "saliency_layer"
    )
    assert layer == "swinViT.layers4.0"  # the deepest stage, which the default network pools
    saver = SaliencySaver(net, preprocessing_transforms(64, keep_meta=True), str(tmp_path), layer)
    saliency = saver.compute(torch.randn(4, 64, 64, 64))
    assert tuple(saliency.shape) == (1, 64, 64, 64)
    assert saliency.min() >= 0 and saliency.max() > 0 and saliency.std() > 0  # 2^3 map: not constant
    assert all(p.requires_grad for p in net.parameters())  # restored after the map


def test_the_default_map_explains_the_predicted_class(one_case, tmp_path):
    """Without a class index the map explains the class the network predicts, so no case gets an empty map."""
    torch.manual_seed(0)
    net = _tiny_net()
    preprocessing = Compose(preprocessing_transforms(32, keep_meta=True))
    image = preprocessing(dict(one_case))["image"]
    with torch.no_grad():
        predicted = int(net(image[None]).argmax())
    default = SaliencySaver(net, preprocessing, str(tmp_path / "a"), target_layer="0").compute(image)
    chosen = SaliencySaver(net, preprocessing, str(tmp_path / "b"), target_layer="0", class_index=predicted)
    other = SaliencySaver(net, preprocessing, str(tmp_path / "c"), target_layer="0", class_index=1 - predicted)
    assert torch.equal(default, chosen.compute(image))
    assert not torch.equal(default, other.compute(image))
