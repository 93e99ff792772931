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
reweighting = import_bundle_scripts("resnet50_3d_ldam", "reweighting")

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


def test_ldam_without_margin_equals_plain_cross_entropy_on_the_logits() -> None:
    logits = 30.0 * torch.randn(8, 2)  # the head carries the scale: logits = s * cos
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(losses.LDAMLoss([10, 30], max_m=0.0, s=30.0)(logits, labels), expected)
    ones = losses.LDAMLoss([10, 30], max_m=0.0, s=30.0, weight=[1.0, 1.0])
    assert torch.allclose(ones(logits, labels), expected)


def test_ldam_with_weights_equals_weighted_cross_entropy() -> None:
    logits = torch.randn(8, 2)
    labels = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    weight = torch.tensor([1.7, 1.0])
    loss = losses.LDAMLoss([10, 30], max_m=0.0, s=5.0, weight=weight)
    assert torch.allclose(loss(logits, labels), F.cross_entropy(logits, labels, weight=weight))


def test_ldam_margin_lowers_only_the_target_logit_by_s_times_its_margin() -> None:
    logits = torch.tensor([[2.0, -1.0], [3.0, 4.0]])  # s * cos with s = 10
    labels = torch.tensor([0, 1])
    loss = losses.LDAMLoss([75, 210], max_m=0.5, s=10.0, reduction="none")
    # Sample 0 (class 0, margin 0.5): [2 - 10 * 0.5, -1]; sample 1 (class 1, margin 0.386527588): [3, 4 - 10 m1].
    adjusted = torch.tensor([[2.0 - 5.0, -1.0], [3.0, 4.0 - 3.86527588]])
    expected = -torch.log_softmax(adjusted, dim=1)[[0, 1], [0, 1]]
    assert torch.allclose(loss(logits, labels), expected, atol=1e-5)


def test_ldam_on_scaled_cosines_equals_the_papers_formula() -> None:
    # Cao et al.: cross_entropy(s * (cos - m_y * onehot(y))), with cosines from a normalised last layer.
    torch.manual_seed(0)
    cos = torch.rand(32, 2) * 2 - 1
    labels = torch.randint(0, 2, (32,))
    margins = losses.ldam_margins([75, 210], max_m=0.5)
    for s, weight in ((30.0, None), (16.0, torch.tensor([1.7, 1.0]))):
        reference = F.cross_entropy(s * (cos - margins * F.one_hot(labels, 2)), labels, weight=weight)
        loss = losses.LDAMLoss([75, 210], max_m=0.5, s=s, weight=weight)
        assert torch.allclose(loss(s * cos, labels), reference, atol=1e-5)


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
    weights = reweighting.drw_class_weights([60, 168])
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([1.673320053, 1.0], abs=1e-6)


def test_drw_effective_number_weights_match_hand_computed_values() -> None:
    # 1 - 0.9999^60 = 0.005982334171, 1 - 0.9999^168 = 0.016660493025;
    # raw w = 1e-4 / those = 0.016715883322, 0.006002223335; x 2 / their sum (0.022718106657):
    weights = reweighting.drw_class_weights([60, 168], rule="effective_number", beta=0.9999)
    assert weights.tolist() == pytest.approx([1.471591236, 0.528408764], abs=1e-6)
    assert float(weights.sum()) == pytest.approx(2.0)


def test_drw_unknown_rule_names_allowed_rules() -> None:
    with pytest.raises(ValueError, match="inverse.*sqrt_inverse.*effective_number"):
        reweighting.drw_class_weights([60, 168], rule="inverse")


def _run_recording_weights(handler_kwargs: dict, max_epochs: int, resume_epoch: int = 0) -> dict[int, list | None]:
    loss = losses.LDAMLoss([60, 168])
    engine = Engine(lambda engine, batch: None)
    reweighting.DeferredReweightingHandler(loss, [60, 168], **handler_kwargs).attach(engine)
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
    seen = _run_recording_weights({"start_epoch": 4, "rule": "effective_number"}, max_epochs=5, resume_epoch=2)
    assert sorted(seen) == [3, 4, 5]
    assert seen[3] is None
    assert seen[4] == pytest.approx([1.471591236, 0.528408764], abs=1e-6)


def test_drw_handler_rejects_start_epoch_zero() -> None:
    with pytest.raises(ValueError, match="start_epoch"):
        reweighting.DeferredReweightingHandler(losses.LDAMLoss([1, 2]), [1, 2], start_epoch=0)


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


def test_both_layouts_start_with_7_cubed_stride_2_conv(medicalnet_model: nn.Module, strided_model: nn.Module) -> None:
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
    model = strided_model if channels == 4 else networks.MedicalNetResNet50(in_channels=1, layout="strided").eval()
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


def test_normed_head_outputs_cosines_times_the_logit_scale() -> None:
    torch.manual_seed(0)
    model = networks.MedicalNetResNet50(in_channels=4, layout="strided", normed_head=True, logit_scale=30.0).eval()
    assert isinstance(model.fc[1], networks.NormedLinear)
    x = torch.randn(3, 4, 32, 32, 32)
    with torch.no_grad():
        logits = model(x)
        features = torch.flatten(model.avgpool(model.feature_maps(x)["layer4"]), 1)
    assert logits.shape == (3, 2)
    assert bool((logits.abs() <= 30.0 * (1.0 + 1e-6)).all())
    cosines = F.normalize(features, dim=1) @ F.normalize(model.fc[1].weight.detach(), dim=1).T
    assert torch.allclose(logits, 30.0 * cosines, atol=1e-4)


def test_normed_head_is_identity_then_normed_linear_keeping_the_state_dict_keys() -> None:
    model = networks.MedicalNetResNet50(layout="strided", normed_head=True, dropout=0.3, logit_scale=16.0)
    identity, head = model.fc
    assert isinstance(identity, nn.Identity) and isinstance(head, networks.NormedLinear)
    assert (head.in_features, head.out_features, head.dropout, head.scale) == (2048, 2, 0.3, 16.0)
    # the weight keeps its key; the scale travels with it (see the checkpoint test below)
    assert {k for k in model.state_dict() if k.startswith("fc.")} == {"fc.1.weight", "fc.1.scale"}
    assert losses.NormedLinear is networks.NormedLinear  # still re-exported by losses


def test_logit_scale_is_ignored_by_the_plain_linear_head() -> None:
    torch.manual_seed(0)
    plain = networks.MedicalNetResNet50(layout="strided", logit_scale=5.0)
    torch.manual_seed(0)
    default = networks.MedicalNetResNet50(layout="strided")
    assert isinstance(plain.fc[1], nn.Linear)
    assert torch.equal(plain.fc[1].weight, default.fc[1].weight)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"dropout": 1.0}, "dropout"), ({"scale": 0.0}, "scale"), ({"scale": math.inf}, "scale")]
)
def test_normed_linear_rejects_invalid_dropout_and_scale(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        networks.NormedLinear(8, 2, **kwargs)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_normed_head_stays_float32_under_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    head = networks.NormedLinear(2048, 2, scale=30.0).eval()
    features = torch.relu(torch.randn(16, 2048))
    with torch.no_grad():
        reference = head(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(features)
            logits_from_bf16 = head(features.bfloat16())  # a bfloat16 backbone's output is cast up
            naive = 30.0 * F.linear(_unit(features), _unit(head.weight))  # the old, unguarded matmul
    assert reference.dtype == logits.dtype == logits_from_bf16.dtype == torch.float32
    assert torch.allclose(logits, reference, atol=1e-5)
    assert torch.allclose(logits_from_bf16, head(features.bfloat16().float()), atol=1e-5)
    assert naive.dtype == torch.bfloat16  # what the guard prevents: a visibly coarser result
    assert float((naive.float() - reference).abs().max()) > 1e-3


def test_normed_model_output_is_float32_under_bfloat16_autocast_and_matches_the_float32_head() -> None:
    torch.manual_seed(0)
    model = networks.MedicalNetResNet50(in_channels=4, layout="strided", normed_head=True).eval()
    x = torch.randn(2, 4, 32, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        features = torch.flatten(model.avgpool(model.feature_maps(x)["layer4"]), 1)
        assert model.conv1(x).dtype == torch.bfloat16  # the backbone's convs do run in low precision
    assert logits.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(logits, model.fc(features.float()), atol=1e-5)


def test_normed_head_dropout_keeps_the_expected_training_cosine_equal_to_the_eval_cosine() -> None:
    torch.manual_seed(0)
    p = 0.4
    head = networks.NormedLinear(2048, 2, dropout=p, scale=30.0)
    with torch.no_grad():
        # A feature with cosine ~0.78 to class 1, replicated: each row gets its own dropout mask.
        feature = _unit(head.weight[1]) + 0.8 * torch.randn(2048) / math.sqrt(2048)
        rows = feature.expand(4000, -1).clone()
        expected = head.eval()(rows[:1])[0]
        trained = head.train()(rows).mean(dim=0)
        old_placement = nn.Sequential(nn.Dropout(p), networks.NormedLinear(2048, 2, scale=30.0))
        old_placement[1].weight.copy_(head.weight)
        old = old_placement.train()(rows).mean(dim=0)
    assert float(expected[1]) > 0.3 * 30.0  # a clearly non-zero cosine, so the ratio is meaningful
    ratio, old_ratio = (trained / expected)[1].item(), (old / expected)[1].item()
    assert ratio == pytest.approx(1.0, abs=0.02)
    assert old_ratio == pytest.approx(math.sqrt(1 - p), abs=0.02)  # 0.775: dropout before normalising


def test_cross_entropy_on_the_normed_models_logits_is_no_longer_capped() -> None:
    # With bare cosines in [-1, 1], CE could not go below log(1 + e^-2) = 0.127, nor P(class) above 0.881.
    torch.manual_seed(0)
    model = networks.MedicalNetResNet50(layout="strided", normed_head=True, logit_scale=30.0).eval()
    with torch.no_grad():
        aligned = model.fc[1].weight[1:2].clone()  # a feature pointing along class 1's vector
        logits = model.fc(aligned)
    loss = F.cross_entropy(logits, torch.tensor([1]))
    probability = torch.softmax(logits, dim=1)[0, 1]
    assert float(loss) < 0.127 and float(probability) > 0.881
    assert float(probability) > 0.99


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


def test_torchscript_script_and_trace_of_the_normed_head_give_same_outputs() -> None:
    torch.manual_seed(0)
    head = networks.NormedLinear(64, 2, dropout=0.4, scale=30.0).eval()
    features = torch.randn(3, 64)
    with torch.no_grad():
        expected = head(features)
        assert torch.allclose(torch.jit.script(head)(features), expected, atol=1e-5)
        assert torch.allclose(torch.jit.trace(head, features)(features), expected, atol=1e-5)


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


def test_multi_channel_first_conv_is_adapted_by_the_shared_sum_rule(tmp_path: Path) -> None:
    kernel = torch.randn(64, 2, 7, 7, 7, generator=torch.Generator().manual_seed(2))
    torch.save({"state_dict": {"module.conv1.weight": kernel}}, tmp_path / "two_channel.pth")
    model = networks.MedicalNetResNet50(in_channels=4, layout="strided")

    report = medicalnet.load_medicalnet_weights(model, tmp_path / "two_channel.pth", strict_backbone=False)

    assert report["adapted"] == ["conv1.weight"] and report["loaded"] == 1
    summed = kernel.sum(dim=1, keepdim=True)  # the mean would halve the response of the 2-channel kernel
    assert torch.allclose(model.conv1.weight, summed.repeat(1, 4, 1, 1, 1) / 4)
    image, conv = torch.randn(1, 1, 16, 16, 16), model.conv1
    with torch.no_grad():
        pretrained = F.conv3d(image.repeat(1, 2, 1, 1, 1), kernel, conv.bias, conv.stride, conv.padding)
        actual = conv(image.repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(actual, pretrained, rtol=1e-4, atol=1e-4)


def test_pretrained_path_loads_weights_in_constructor(pretrained_1ch: nn.Module, medicalnet_checkpoint: Path) -> None:
    model = networks.MedicalNetResNet50(in_channels=1, pretrained_path=str(medicalnet_checkpoint))
    assert torch.equal(model.layer4[2].conv3.weight, pretrained_1ch.layer4[2].conv3.weight)
    assert torch.equal(model.conv1.weight, pretrained_1ch.conv1.weight)


def test_plain_state_dict_loads_and_reports_missing_when_not_strict(pretrained_1ch: nn.Module, tmp_path: Path) -> None:
    subset = {k: v for k, v in pretrained_1ch.state_dict().items() if k.startswith(("conv1.", "bn1.", "layer1."))}
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
    torch.save({"state_dict": {"module.layer1.0.conv1.weight": torch.zeros(64, 32, 1, 1, 1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*\(64, 32, 1, 1, 1\).*\(64, 64, 1, 1, 1\)"):
        medicalnet.load_medicalnet_weights(strided_model, tmp_path / "bad.pth", strict_backbone=False)


def test_missing_checkpoint_raises_file_not_found_naming_path(tmp_path: Path, strided_model: nn.Module) -> None:
    path = tmp_path / "absent" / "resnet_50_23dataset.pth"
    with pytest.raises(FileNotFoundError, match="resnet_50_23dataset.pth.*Nothing is downloaded"):
        medicalnet.load_medicalnet_weights(strided_model, path)


def test_normed_head_gradient_is_finite_for_an_all_zero_feature_row() -> None:
    head = networks.NormedLinear(8, 2)
    features = torch.zeros(2, 8, requires_grad=True)
    head(features).sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.weight.grad).all()


def test_a_checkpoint_carries_the_logit_scale_it_was_trained_with() -> None:
    trained = networks.MedicalNetResNet50(in_channels=4, layout="strided", normed_head=True, logit_scale=20.0).eval()
    state = trained.state_dict()
    assert float(state["fc.1.scale"]) == 20.0
    loaded = networks.MedicalNetResNet50(in_channels=4, layout="strided", normed_head=True, logit_scale=30.0).eval()
    loaded.load_state_dict(state)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
