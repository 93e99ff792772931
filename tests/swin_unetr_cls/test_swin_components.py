"""Tests of the swin_unetr_cls bundle components: encoder classifier, SSL weight loader, TorchScript export.

The bundle's ``scripts`` package is loaded from its file path under a private module name so it cannot clash
with the ``scripts`` packages of the other bundles. Models are tiny (feature_size 12, 32^3) to stay fast on CPU.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from helpers import BUNDLES, import_bundle_scripts
from monai.bundle import ConfigParser

SIZE = 32
FS = 12

networks = import_bundle_scripts("swin_unetr_cls", "networks")
ssl_weights = import_bundle_scripts("swin_unetr_cls", "ssl_weights")
SwinEncoderClassifier = networks.SwinEncoderClassifier


def _model(**kwargs) -> torch.nn.Module:
    kwargs.setdefault("feature_size", FS)
    torch.manual_seed(kwargs.pop("seed", 0))
    return SwinEncoderClassifier(**kwargs)


def _input(batch: int = 1, channels: int = 4, size: int = SIZE) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, size, generator=torch.Generator().manual_seed(1))


def _published_checkpoint(path: Path, feature_size: int = FS, in_channels: int = 1) -> dict[str, torch.Tensor]:
    """Write a checkpoint laid out like MONAI's published Swin UNETR SSL weights; return the encoder tensors.

    Layout: ``{"state_dict": ...}``, ``module.`` prefix, no ``swinViT.`` prefix, old ``mlp.fc1/fc2`` names and
    extra SSL-head keys.
    """
    source = _model(feature_size=feature_size, in_channels=in_channels, seed=123).swinViT.state_dict()
    published = {}
    for key, value in source.items():
        key = key.replace("mlp.linear1.", "mlp.fc1.").replace("mlp.linear2.", "mlp.fc2.")
        published["module." + key] = value.clone()
    published["module.rotation_head.weight"] = torch.zeros(4, 16 * feature_size)
    torch.save({"state_dict": published}, path)
    return source


@pytest.mark.parametrize("pooled_stages", [(4,), (2, 3, 4), (0, 1)])
@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("pooling", ["avg", "max", "attention"])
def test_output_shape_for_every_option(pooling: str, head: str, pooled_stages: tuple) -> None:
    model = _model(pooling=pooling, head=head, pooled_stages=pooled_stages).eval()
    with torch.no_grad():
        logits = model(_input(batch=2))
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("use_v2", [False, True])
def test_encode_equals_monais_encoder_forward(use_v2: bool) -> None:
    """``encode`` re-implements ``SwinTransformer.forward`` so it can stop early; with every stage it must agree."""
    model = _model(use_v2=use_v2).eval()
    x = _input()
    with torch.no_grad():
        ours, monai_hidden = model.encode(x), model.swinViT(x, model.normalize)
    assert len(ours) == len(monai_hidden) == 5
    for a, b in zip(ours, monai_hidden, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shallow_pooled_stages_build_and_run_only_the_stages_they_use() -> None:
    shallow = _model(use_v2=True, pooled_stages=(0, 1), pooling="max")
    names = list(shallow.state_dict())
    assert any(n.startswith("swinViT.layers1.0.") for n in names)
    assert not [n for n in names if n.startswith(("swinViT.layers2", "swinViT.layers3", "swinViT.layers4"))]
    # the same weights in a full encoder give the same first two hidden states
    full = _model(use_v2=True, seed=1)
    encoder = {k: v for k, v in shallow.state_dict().items() if k.startswith("swinViT.")}
    missing, unexpected = full.load_state_dict(encoder, strict=False)
    assert not unexpected and all(k.startswith(("swinViT.layers", "head.")) for k in missing)
    x = _input()
    with torch.no_grad():
        torch.testing.assert_close(shallow.encode(x), full.encode(x)[:2], rtol=0, atol=0)
    # every parameter gets a gradient (DistributedDataParallel fails on unused ones)
    shallow(x).sum().backward()
    assert all(p.grad is not None for p in shallow.parameters())
    # only two patch merges: 8^3 input is enough
    assert shallow(_input(size=8)).shape == (1, 2)


@pytest.mark.parametrize("stages", [(), (1, 1), (5,), (-1, 2)])
def test_invalid_pooled_stages_are_refused(stages: tuple) -> None:
    with pytest.raises(ValueError, match="pooled_stages"):
        _model(pooled_stages=stages)


def test_max_pooling_keeps_a_single_bright_voxel() -> None:
    features = torch.zeros(2, 3, 4, 4, 4)
    features[0, 1, 2, 3, 0] = 5.0
    pooled = networks.build_pool("max", 3)(features)
    assert pooled.tolist() == [[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]


def test_no_decoder_parameters() -> None:
    model = _model(pooling="attention", pooled_stages=(2, 3, 4))
    names = list(model.state_dict())
    decoder_prefixes = ("encoder1.", "encoder2.", "encoder3.", "encoder4.", "encoder10.", "decoder", "out.")
    assert not [n for n in names if n.startswith(decoder_prefixes)]
    assert all(n.startswith(("swinViT.", "pools.", "head.")) for n in names)
    assert any(n.startswith("swinViT.patch_embed.") for n in names)
    assert any(n.startswith("swinViT.layers1.0.") for n in names)


def test_deepest_hidden_state_has_16x_feature_size_channels() -> None:
    model = _model(feature_size=24).eval()
    with torch.no_grad():
        hidden = model.encode(_input())
    assert [h.shape[1] for h in hidden] == [24, 48, 96, 192, 384]
    assert hidden[-1].shape == (1, 16 * 24, 1, 1, 1)


def test_feature_size_not_multiple_of_12_raises() -> None:
    with pytest.raises(ValueError, match="feature_size must be a positive multiple of 12"):
        SwinEncoderClassifier(feature_size=16)


def test_spatial_size_not_divisible_by_32_raises() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"divisible by 32.*\(32, 48, 32\)"):
        model(torch.zeros(1, 4, 32, 48, 32))


def test_invalid_pooling_and_head_raise() -> None:
    with pytest.raises(ValueError, match="pooling must be one of"):
        _model(pooling="median")
    with pytest.raises(ValueError, match="head must be one of"):
        _model(head="transformer")


def test_flash_attention_inference_matches_default_attention() -> None:
    default = _model().eval()
    flash = _model(use_flash_attention=True, seed=7).eval()
    flash.load_state_dict(default.state_dict())
    x = _input()
    with torch.no_grad():
        torch.testing.assert_close(flash(x), default(x), atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_same_loss_and_gradients() -> None:
    plain = _model(head_dropout=0.0).train()
    checkpointed = _model(head_dropout=0.0, use_checkpoint=True, seed=99).train()
    checkpointed.load_state_dict(plain.state_dict())
    x, target = _input(batch=2), torch.tensor([0, 1])

    losses, grads = [], []
    for model in (plain, checkpointed):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})

    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def _assert_two_groups_cover_model(groups: list[dict], model: torch.nn.Module) -> None:
    assert [g["lr"] for g in groups] == [5e-5, 1e-4]
    encoder_ids = {id(p) for p in model.swinViT.parameters()}
    group_ids = [[id(p) for p in g["params"]] for g in groups]
    assert set(group_ids[0]) == encoder_ids
    assert not set(group_ids[1]) & encoder_ids
    flat = group_ids[0] + group_ids[1]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))


class _Wrapped(torch.nn.Module):
    """Stands in for DistributedDataParallel: the network sits under ``.module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.mark.parametrize("wrapped", [False, True])
def test_train_config_param_groups_give_encoder_and_head_groups(wrapped: bool) -> None:
    """The bundle's one param-group mechanism, read from train.json, also finds the encoder behind DDP."""
    model = _model(pooling="attention", head="mlp")
    train = json.loads((BUNDLES / "swin_unetr_cls" / "configs" / "train.json").read_text())
    config = {
        "network": "$net",
        "encoder_learning_rate": 5e-5,
        "param_groups": train["param_groups"],
        "optimizer": {"_target_": "torch.optim.AdamW", "params": "@param_groups", "lr": 1e-4},
    }
    net = _Wrapped(model) if wrapped else model
    parser = ConfigParser(config, globals={"monai": "monai", "torch": "torch", "net": net})
    optimizer = parser.get_parsed_content("optimizer")
    _assert_two_groups_cover_model(optimizer.param_groups, model)


def test_ssl_loader_maps_published_layout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "model_swinvit.pt"
    source = _published_checkpoint(path)
    model = _model(in_channels=4)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}

    with caplog.at_level(logging.INFO, logger=ssl_weights.__name__):
        report = ssl_weights.load_ssl_weights(model, path)

    total = len(source)
    assert report == {
        "loaded": total,
        "total": total,
        "missing": [],
        "unexpected": ["rotation_head.weight"],  # named without the module. prefix the shared reader strips
        "adapted": ["swinViT.patch_embed.proj.weight"],
    }
    assert f"loaded {total}/{total} encoder keys" in caplog.text
    state = model.state_dict()
    key = "layers2.0.blocks.1.mlp.linear1.weight"
    torch.testing.assert_close(state["swinViT." + key], source[key], rtol=0, atol=0)
    key = "layers1.0.downsample.reduction.weight"
    torch.testing.assert_close(state["swinViT." + key], source[key], rtol=0, atol=0)
    for name, value in model.head.state_dict().items():
        torch.testing.assert_close(value, head_before[name], rtol=0, atol=0)


def test_ssl_patch_embedding_adaptation_preserves_single_channel_response(tmp_path: Path) -> None:
    path = tmp_path / "model_swinvit.pt"
    source = _model(in_channels=1, seed=123)
    _published_checkpoint(path)  # same seed -> same tensors as `source`
    model = _model(in_channels=4)
    ssl_weights.load_ssl_weights(model, path)

    image = _input(channels=1)
    with torch.no_grad():
        expected = source.swinViT.patch_embed(image)
        adapted = model.swinViT.patch_embed(image.repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(adapted, expected, atol=1e-5, rtol=1e-5)
    weight = model.swinViT.patch_embed.proj.weight
    torch.testing.assert_close(weight[:, 2:3], source.swinViT.patch_embed.proj.weight / 4)


def test_ssl_loader_accepts_swinvit_prefixed_plain_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    trained = _model(pooling="attention", seed=5)
    torch.save(trained.state_dict(), path)
    model = _model(pooling="attention")

    report = ssl_weights.load_ssl_weights(model, path)

    assert report["loaded"] == report["total"] == len(trained.swinViT.state_dict())
    assert report["adapted"] == [] and report["missing"] == []
    assert sorted(report["unexpected"]) == sorted(k for k in trained.state_dict() if not k.startswith("swinViT."))
    torch.testing.assert_close(model.swinViT.state_dict(), trained.swinViT.state_dict(), rtol=0, atol=0)


def test_ssl_loader_reports_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    encoder = _model(seed=3).swinViT.state_dict()
    partial = {"module." + k: v for k, v in encoder.items() if not k.startswith("layers4.")}
    torch.save({"state_dict": partial}, path)

    report = ssl_weights.load_ssl_weights(_model(), path)

    assert report["missing"] and all(k.startswith("swinViT.layers4.") for k in report["missing"])
    assert report["loaded"] + len(report["missing"]) == report["total"] == len(encoder)


def test_ssl_loader_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "fs24.pt"
    _published_checkpoint(path, feature_size=24)
    model = _model(feature_size=12)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(
        ValueError,
        match=r"layers1\.0\.blocks\.0\.norm1\.weight -> swinViT\.layers1\.0\.blocks\.0\.norm1\.weight: "
        r"checkpoint \(24,\) vs model \(12,\)",
    ):
        ssl_weights.load_ssl_weights(model, path)
    for name, value in model.state_dict().items():  # nothing was half-loaded
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_ssl_loader_missing_file_says_nothing_is_downloaded(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "model_swinvit.pt"
    with pytest.raises(FileNotFoundError, match=r"absent/model_swinvit\.pt.*Nothing is downloaded"):
        ssl_weights.load_ssl_weights(_model(), path)


def test_pretrained_path_argument_loads_ssl_weights(tmp_path: Path) -> None:
    path = tmp_path / "model_swinvit.pt"
    source = _published_checkpoint(path)
    model = _model(pretrained_path=str(path))
    assert model.pretrained_report["loaded"] == len(source)
    key = "layers3.0.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(model.swinViT.state_dict()[key], source[key], rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.save/load and numpy notices
def test_traced_model_saved_and_reloaded_matches_eager(tmp_path: Path) -> None:
    model = _model(pooling="attention", head="mlp", pooled_stages=(2, 3, 4)).eval()
    x = _input()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x)
    path = tmp_path / "model.ts"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))

    with torch.no_grad():
        expected = model(x)
        actual = loaded(x)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooled_stages", [[4], [2, 3, 4], [0, 1], [0]])
def test_saliency_layer_is_the_deepest_stage_the_network_runs(pooled_stages: list) -> None:
    inference = json.loads((BUNDLES / "swin_unetr_cls" / "configs" / "inference.json").read_text())
    parser = ConfigParser({k: inference[k] for k in ("saliency_layer", "pooled_stages")})
    parser["pooled_stages"] = pooled_stages
    layer = parser.get_parsed_content("saliency_layer")
    model = _model(pooled_stages=pooled_stages)
    captured = []
    dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        model(_input())
    assert captured[0].ndim == 5  # a channel-first map Grad-CAM can use
