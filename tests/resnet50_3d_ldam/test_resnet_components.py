"""Tests of the resnet50_3d_ldam bundle's components: network layouts, MedicalNet loader, LDAM + DRW."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import import_bundle_scripts
from ignite.engine import Engine, Events
from torch import nn

networks = import_bundle_scripts("resnet50_3d_ldam", "networks")
medicalnet = import_bundle_scripts("resnet50_3d_ldam", "medicalnet")
losses = import_bundle_scripts("resnet50_3d_ldam", "losses")

FC_KEYS = ["fc.1.weight", "fc.1.bias"]


@pytest.fixture(scope="module")
def medicalnet_model() -> nn.Module:
    torch.manual_seed(0)
    return networks.MedicalNetResNet50(in_channels=4, layout="medicalnet").eval()


@pytest.fixture(scope="module")
def strided_model() -> nn.Module:
    torch.manual_seed(0)
    return networks.MedicalNetResNet50(in_channels=4, layout="strided").eval()


@pytest.fixture(scope="module")
def pretrained_1ch() -> nn.Module:
    """Stands in for MedicalNet's pretrained 1-channel ResNet50, with non-trivial BN statistics."""
    torch.manual_seed(1)
    model = networks.MedicalNetResNet50(in_channels=1, layout="medicalnet")
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def medicalnet_checkpoint(pretrained_1ch: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in MedicalNet's release format: ``{"state_dict": {"module.<key>": ...}}`` + seg head."""
    state = {f"module.{k}": v for k, v in pretrained_1ch.state_dict().items() if not k.startswith("fc.")}
    state["module.conv_seg.0.weight"] = torch.randn(2048, 32, 2, 2, 2)
    path = tmp_path_factory.mktemp("medicalnet") / "resnet_50.pth"
    torch.save({"state_dict": state}, path)
    return path


# ----------------------------------------------------------------------------------------------- LDAM


def test_ldam_margins_match_hand_computed_values() -> None:
    # m_j ~ n_j^(-1/4); the rarer class (75) gets max_m = 0.5, the other 0.5 * (75/210)^(1/4):
    # 75/210 = 0.357142857, sqrt -> 0.597614305, sqrt -> 0.773055176, x 0.5 = 0.386527588.
    margins = losses.ldam_margins([75, 210], max_m=0.5)
    assert margins.dtype == torch.float32
    assert margins.tolist() == pytest.approx([0.5, 0.386527588], abs=1e-6)
    assert losses.LDAMLoss([75, 210]).margins.tolist() == pytest.approx([0.5, 0.386527588], abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_counts": [10, 0]}, "positive"),
        ({"class_counts": [10]}, "at least 2"),
        ({"class_counts": [10, 20], "max_m": -0.1}, "max_m"),
        ({"class_counts": [10, 20], "s": 0.0}, "s must be"),
        ({"class_counts": [10, 20], "reduction": "mode"}, "reduction"),
        ({"class_counts": [10, 20], "weight": [1.0, 2.0, 3.0]}, "2 class weights"),
    ],
)
def test_ldam_rejects_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losses.LDAMLoss(**kwargs)


def test_ldam_without_margin_equals_scaled_cross_entropy() -> None:
    logits = torch.randn(8, 2)
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    expected = F.cross_entropy(30.0 * logits, labels)
    assert torch.allclose(losses.LDAMLoss([10, 30], max_m=0.0, s=30.0)(logits, labels), expected)
    ones = losses.LDAMLoss([10, 30], max_m=0.0, s=30.0, weight=[1.0, 1.0])
    assert torch.allclose(ones(logits, labels), expected)


def test_ldam_with_weights_equals_weighted_cross_entropy() -> None:
    logits = torch.randn(8, 2)
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    weight = torch.tensor([1.7, 1.0])
    loss = losses.LDAMLoss([10, 30], max_m=0.0, s=5.0, weight=weight)
    assert torch.allclose(loss(logits, labels), F.cross_entropy(5.0 * logits, labels, weight=weight))


def test_ldam_margin_lowers_only_the_target_logit() -> None:
    logits = torch.tensor([[0.2, -0.1], [0.3, 0.4]])
    labels = torch.tensor([0, 1])
    loss = losses.LDAMLoss([75, 210], max_m=0.5, s=10.0, reduction="none")
    # Sample 0 (class 0, margin 0.5): [0.2 - 0.5, -0.1]; sample 1 (class 1, margin 0.386527588): [0.3, 0.4 - m1].
    adjusted = torch.tensor([[0.2 - 0.5, -0.1], [0.3, 0.4 - 0.386527588]])
    expected = -torch.log_softmax(10.0 * adjusted, dim=1)[[0, 1], [0, 1]]
    assert torch.allclose(loss(logits, labels), expected, atol=1e-5)


def test_ldam_accepts_column_float_and_onehot_targets() -> None:
    logits = torch.randn(4, 2)
    labels = torch.tensor([0, 1, 1, 0])
    loss = losses.LDAMLoss([10, 30])
    reference = loss(logits, labels)
    assert torch.allclose(loss(logits, labels[:, None]), reference)
    assert torch.allclose(loss(logits, labels.float()[:, None]), reference)
    assert torch.allclose(loss(logits, F.one_hot(labels, 2).float()), reference)


def test_ldam_is_float32_under_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 2)
    features = torch.randn(16, 6)
    labels = torch.randint(0, 2, (16,))
    loss = losses.LDAMLoss([20, 60], s=30.0)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = layer(features)
        value = loss(logits, labels)
    assert logits.dtype == torch.bfloat16
    assert value.dtype == torch.float32
    assert torch.allclose(value, loss(logits.float(), labels), rtol=1e-6, atol=1e-6)


def test_set_class_weights_sets_and_clears_the_weight() -> None:
    loss = losses.LDAMLoss([10, 30])
    loss.set_class_weights([2.0, 1.0])
    assert loss.weight.dtype == torch.float32
    assert loss.weight.tolist() == [2.0, 1.0]
    loss.set_class_weights(None)
    assert loss.weight is None
    assert loss.state_dict() == {}


# ------------------------------------------------------------------------------------------------ DRW


def test_drw_sqrt_inverse_weights_match_hand_computed_values() -> None:
    # sqrt(168 / 60) = sqrt(2.8) = 1.673320053; the majority class keeps weight 1.
    weights = losses.drw_class_weights([60, 168])
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([1.673320053, 1.0], abs=1e-6)


def test_drw_effective_number_weights_match_hand_computed_values() -> None:
    # 1 - 0.9999^60 = 0.005982334171, 1 - 0.9999^168 = 0.016660493025;
    # raw w = 1e-4 / those = 0.016715883322, 0.006002223335; x 2 / their sum (0.022718106657):
    weights = losses.drw_class_weights([60, 168], rule="effective_number", beta=0.9999)
    assert weights.tolist() == pytest.approx([1.471591236, 0.528408764], abs=1e-6)
    assert float(weights.sum()) == pytest.approx(2.0)


def test_drw_unknown_rule_names_allowed_rules() -> None:
    with pytest.raises(ValueError, match="inverse.*sqrt_inverse.*effective_number"):
        losses.drw_class_weights([60, 168], rule="inverse")


def _run_recording_weights(
    handler_kwargs: dict, max_epochs: int, resume_epoch: int = 0
) -> dict[int, list | None]:
    loss = losses.LDAMLoss([60, 168])
    engine = Engine(lambda engine, batch: None)
    losses.DeferredReweighting(loss, [60, 168], **handler_kwargs).attach(engine)
    seen: dict[int, list | None] = {}

    @engine.on(Events.ITERATION_COMPLETED)
    def _record(engine: Engine) -> None:
        seen[engine.state.epoch] = None if loss.weight is None else loss.weight.tolist()

    if resume_epoch:
        loss.set_class_weights([5.0, 5.0])  # stale value that the handler must overwrite
        engine.load_state_dict({"epoch": resume_epoch, "epoch_length": 2, "max_epochs": max_epochs})
    engine.run([0, 1], max_epochs=max_epochs)
    return seen


def test_drw_handler_applies_weights_from_start_epoch_inclusive() -> None:
    seen = _run_recording_weights({"start_epoch": 3}, max_epochs=4)
    expected = pytest.approx([1.673320053, 1.0], abs=1e-6)
    assert seen[1] is None and seen[2] is None
    assert seen[3] == expected and seen[4] == expected


def test_drw_handler_restores_weights_on_resume() -> None:
    seen = _run_recording_weights(
        {"start_epoch": 4, "rule": "effective_number"}, max_epochs=5, resume_epoch=2
    )
    assert sorted(seen) == [3, 4, 5]
    assert seen[3] is None
    assert seen[4] == pytest.approx([1.471591236, 0.528408764], abs=1e-6)


def test_drw_handler_rejects_start_epoch_zero() -> None:
    with pytest.raises(ValueError, match="start_epoch"):
        losses.DeferredReweighting(losses.LDAMLoss([1, 2]), [1, 2], start_epoch=0)


# -------------------------------------------------------------------------------------------- network


def _conv2_of(layer: nn.Sequential) -> list[nn.Conv3d]:
    return [block.conv2 for block in layer]


def test_medicalnet_layout_keeps_layer3_and_layer4_at_one_eighth(medicalnet_model: nn.Module) -> None:
    with torch.no_grad():
        maps = medicalnet_model.feature_maps(torch.randn(1, 4, 64, 64, 64))
    assert maps["layer2"].shape == (1, 512, 8, 8, 8)
    assert maps["layer3"].shape == (1, 1024, 8, 8, 8)
    assert maps["layer4"].shape == (1, 2048, 8, 8, 8)


def test_medicalnet_layout_dilates_layer3_by_2_and_layer4_by_4(medicalnet_model: nn.Module) -> None:
    for layer, dilation in ((medicalnet_model.layer3, 2), (medicalnet_model.layer4, 4)):
        for conv in _conv2_of(layer):
            assert conv.dilation == (dilation,) * 3 and conv.padding == (dilation,) * 3
            assert conv.stride == (1, 1, 1)
        assert layer[0].downsample[0].stride == (1, 1, 1)
    assert all(conv.dilation == (1, 1, 1) for conv in _conv2_of(medicalnet_model.layer2))
    assert medicalnet_model.layer2[0].conv2.stride == (2, 2, 2)


def test_strided_layout_reduces_layer4_to_one_thirtysecond(strided_model: nn.Module) -> None:
    with torch.no_grad():
        maps = strided_model.feature_maps(torch.randn(1, 4, 64, 64, 64))
    assert maps["layer4"].shape == (1, 2048, 2, 2, 2)
    assert strided_model.layer4[0].conv2.stride == (2, 2, 2)
    assert strided_model.layer4[0].conv2.dilation == (1, 1, 1)


def test_both_layouts_start_with_7_cubed_stride_2_conv(
    medicalnet_model: nn.Module, strided_model: nn.Module
) -> None:
    for model in (medicalnet_model, strided_model):
        assert model.conv1.kernel_size == (7, 7, 7)
        assert model.conv1.stride == (2, 2, 2)
        assert model.conv1.padding == (3, 3, 3)
        assert model.conv1.bias is None


def test_invalid_layout_names_value_and_allowed_layouts() -> None:
    with pytest.raises(ValueError, match="'dilated'.*'medicalnet'.*'strided'"):
        networks.MedicalNetResNet50(layout="dilated")


def test_backbone_keys_use_medicalnet_names(medicalnet_model: nn.Module) -> None:
    keys = set(medicalnet_model.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight"):
        assert key in keys
    assert "layer1.0.downsample.0.bias" not in keys  # bias_downsample=False, as MedicalNet
    assert {k for k in keys if k.startswith("fc.")} == set(FC_KEYS)
    assert sum(k.startswith("layer3.") and k.endswith("conv2.weight") for k in keys) == 6


@pytest.mark.parametrize("channels", [1, 4])
def test_logits_have_shape_batch_by_2(channels: int, strided_model: nn.Module) -> None:
    model = (
        strided_model
        if channels == 4
        else networks.MedicalNetResNet50(in_channels=1, layout="strided").eval()
    )
    with torch.no_grad():
        logits = model(torch.randn(2, channels, 32, 32, 32))
    assert logits.shape == (2, 2)


def test_head_is_dropout_then_xavier_linear_with_zero_bias(medicalnet_model: nn.Module) -> None:
    dropout, linear = medicalnet_model.fc
    assert isinstance(dropout, nn.Dropout) and dropout.p == pytest.approx(0.4)
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (2048, 2)
    assert torch.count_nonzero(linear.bias) == 0
    xavier_std = math.sqrt(2.0 / (2048 + 2))
    assert float(linear.weight.detach().std()) == pytest.approx(xavier_std, rel=0.2)
    conv = medicalnet_model.layer1[0].conv1  # Kaiming fan_out: std = sqrt(2 / (out_channels * kernel volume))
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / 64), rel=0.1)
    assert torch.all(medicalnet_model.bn1.weight == 1) and torch.all(medicalnet_model.bn1.bias == 0)


def test_normed_head_outputs_cosines_within_unit_interval() -> None:
    torch.manual_seed(0)
    model = networks.MedicalNetResNet50(in_channels=4, layout="strided", normed_head=True).eval()
    assert isinstance(model.fc[1], networks.NormedLinear)
    with torch.no_grad():
        logits = model(torch.randn(3, 4, 32, 32, 32))
    assert logits.shape == (3, 2)
    assert bool((logits.abs() <= 1.0 + 1e-6).all())


def test_torchscript_trace_round_trip_gives_same_outputs(medicalnet_model: nn.Module, tmp_path: Path) -> None:
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        expected = medicalnet_model(x)
        traced = torch.jit.trace(medicalnet_model, x)
    traced.save(str(tmp_path / "model.ts"))
    reloaded = torch.jit.load(str(tmp_path / "model.ts"))
    with torch.no_grad():
        assert torch.allclose(reloaded(x), expected, atol=1e-5)


def test_torchscript_script_gives_same_outputs(strided_model: nn.Module) -> None:
    x = torch.randn(1, 4, 32, 32, 32)
    scripted = torch.jit.script(strided_model)
    with torch.no_grad():
        assert torch.allclose(scripted(x), strided_model(x), atol=1e-5)


# --------------------------------------------------------------------------------- MedicalNet loading


def test_medicalnet_checkpoint_loads_into_4_channel_model(
    pretrained_1ch: nn.Module, medicalnet_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = networks.MedicalNetResNet50(in_channels=4, layout="medicalnet")
    with caplog.at_level(logging.INFO):
        report = medicalnet.load_medicalnet_weights(model, medicalnet_checkpoint)

    source, loaded = pretrained_1ch.state_dict(), model.state_dict()
    for key, value in source.items():
        if key != "conv1.weight" and not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    kernel = source["conv1.weight"]  # (64, 1, 7, 7, 7)
    assert torch.allclose(loaded["conv1.weight"], kernel.repeat(1, 4, 1, 1, 1) / 4)
    total = len(loaded)
    assert report == {
        "loaded": total - 2,
        "total": total,
        "missing": FC_KEYS,
        "unexpected": ["conv_seg.0.weight"],
        "adapted": ["conv1.weight"],
    }
    assert f"loaded {total - 2}/{total}" in caplog.text


def test_pretrained_path_loads_weights_in_constructor(
    pretrained_1ch: nn.Module, medicalnet_checkpoint: Path
) -> None:
    model = networks.MedicalNetResNet50(in_channels=1, pretrained_path=str(medicalnet_checkpoint))
    assert torch.equal(model.layer4[2].conv3.weight, pretrained_1ch.layer4[2].conv3.weight)
    assert torch.equal(model.conv1.weight, pretrained_1ch.conv1.weight)


def test_plain_state_dict_loads_and_reports_missing_when_not_strict(
    pretrained_1ch: nn.Module, tmp_path: Path
) -> None:
    subset = {
        k: v for k, v in pretrained_1ch.state_dict().items() if k.startswith(("conv1.", "bn1.", "layer1."))
    }
    torch.save(subset, tmp_path / "plain.pt")
    model = networks.MedicalNetResNet50(in_channels=1, layout="strided")
    report = medicalnet.load_medicalnet_weights(model, tmp_path / "plain.pt", strict_backbone=False)
    assert report["loaded"] == len(subset) and report["unexpected"] == [] and report["adapted"] == []
    assert "layer2.0.conv1.weight" in report["missing"]
    assert torch.equal(model.layer1[1].conv2.weight, pretrained_1ch.layer1[1].conv2.weight)


def test_missing_backbone_keys_raise_when_strict(pretrained_1ch: nn.Module, tmp_path: Path) -> None:
    torch.save({"conv1.weight": pretrained_1ch.conv1.weight.detach()}, tmp_path / "partial.pt")
    model = networks.MedicalNetResNet50(in_channels=1, layout="strided")
    with pytest.raises(ValueError, match="backbone keys missing"):
        medicalnet.load_medicalnet_weights(model, tmp_path / "partial.pt")


def test_shape_mismatch_raises_naming_key_and_shapes(tmp_path: Path, strided_model: nn.Module) -> None:
    torch.save(
        {"state_dict": {"module.layer1.0.conv1.weight": torch.zeros(64, 32, 1, 1, 1)}}, tmp_path / "bad.pth"
    )
    with pytest.raises(
        ValueError, match=r"layer1\.0\.conv1\.weight.*\(64, 32, 1, 1, 1\).*\(64, 64, 1, 1, 1\)"
    ):
        medicalnet.load_medicalnet_weights(strided_model, tmp_path / "bad.pth", strict_backbone=False)


def test_missing_checkpoint_raises_file_not_found_naming_path(
    tmp_path: Path, strided_model: nn.Module
) -> None:
    path = tmp_path / "absent" / "resnet_50_23dataset.pth"
    with pytest.raises(FileNotFoundError, match="resnet_50_23dataset.pth.*Nothing is downloaded"):
        medicalnet.load_medicalnet_weights(strided_model, path)


def test_normed_head_gradient_is_finite_for_an_all_zero_feature_row() -> None:
    head = networks.NormedLinear(8, 2)
    features = torch.zeros(2, 8, requires_grad=True)
    head(features).sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.weight.grad).all()
