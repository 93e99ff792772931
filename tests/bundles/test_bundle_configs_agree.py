"""The two model bundles share one training recipe: their train.json files differ only where the model does.

A fix made in one bundle's config (a handler, a data-loader option, the run layout) must reach the other;
this test lists every permitted difference, so any other one fails.
"""

from __future__ import annotations

import json
from collections import Counter

from helpers import BUNDLES

# Differences that belong to the model or its training recipe, by config id.
MODEL_SPECIFIC = {
    "imports",  # the ResNet imports its LDAM and DRW modules
    "batch_size",
    "learning_rate",
    "optimizer_name",
    "warmup_epochs",
    "accumulation_steps",
    "grad_clip",
    "loss_name",
    "use_weighted_sampler",
    "early_stop_patience",
    "early_stop_min_epochs",
    "param_groups",  # Swin: a lower learning rate for the encoder
    "lr_scheduler#end_lr",
    "losses#ldam",
    "train#handlers#scripts.reweighting.DeferredReweightingHandler",
    "early_stopper#reweighting_start_epoch",
    "channels_last",  # 0.71-0.92x the ResNet's float32 step on CPU, no effect on the Swin
    "autocast_dtype",  # CPU bfloat16: 0.36-0.58x the ResNet's float32 step, 1.0-1.3x the Swin's (docs/performance.md)
}
MODEL_PREFIXES = ("network_def", "network_settings")
RESNET_ONLY = {"layout", "dropout", "normed_head", "max_m", "logit_scale", "drw_start_epoch", "drw_rule", "drw_beta"}
SWIN_ONLY = {
    "encoder_learning_rate",
    "end_learning_rate",
    "feature_size",
    "pooling",
    "head",
    "head_dropout",
    "pooled_stages",
    "use_v2",
    "normalize",
    "encoder_dropout",
    "use_checkpoint",
}


def _named_handler(item) -> bool:
    return (isinstance(item, dict) and "_target_" in item) or (isinstance(item, str) and item.startswith("@"))


def flatten(config, prefix: str = "") -> dict:
    """Config ids -> leaf values; a handler list is keyed by each handler's ``_target_`` or ``@reference``
    (not its position)."""
    if isinstance(config, dict):
        items = config.items()
    elif isinstance(config, list) and config and all(_named_handler(x) for x in config):
        seen: Counter = Counter()
        items = []
        for handler in config:
            name = handler if isinstance(handler, str) else handler["_target_"]
            seen[name] += 1
            items.append((name + (f"[{seen[name]}]" if seen[name] > 1 else ""), handler))
    else:
        return {prefix: config}
    flat = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}#{key}" if prefix else str(key)))
    return flat


def _differing_ids() -> set[str]:
    resnet = flatten(json.loads((BUNDLES / "resnet50_3d_ldam" / "configs" / "train.json").read_text()))
    swin = flatten(json.loads((BUNDLES / "swin_unetr_cls" / "configs" / "train.json").read_text()))
    return {k for k in resnet.keys() | swin.keys() if resnet.get(k, "<absent>") != swin.get(k, "<absent>")}


def _permitted(config_id: str) -> bool:
    top = config_id.split("#")[0]
    return (
        config_id in MODEL_SPECIFIC
        or top in MODEL_SPECIFIC | RESNET_ONLY | SWIN_ONLY
        or config_id.startswith(MODEL_PREFIXES)
        or any(config_id.startswith(p + "#") for p in MODEL_SPECIFIC)
    )


def test_model_bundles_train_configs_differ_only_in_model_specific_keys():
    unexpected = sorted(k for k in _differing_ids() if not _permitted(k))
    assert unexpected == [], f"train.json differs outside the model-specific keys: {unexpected}"


def test_the_comparison_sees_a_shared_key_that_drifted():
    resnet = flatten({"train": {"handlers": [{"_target_": "A", "x": 1}, {"_target_": "A", "x": 2}]}})
    assert resnet["train#handlers#A#x"] == 1 and resnet["train#handlers#A[2]#x"] == 2
    assert not _permitted("train#dataloader#num_workers") and _permitted("network_def#feature_size")


def test_the_early_stopper_saved_for_resuming_is_the_attached_one():
    """``checkpoint_contents`` and ``train#handlers`` name the early-stopping handler by its key."""
    for bundle in ("resnet50_3d_ldam", "swin_unetr_cls"):
        config = json.loads((BUNDLES / bundle / "configs" / "train.json").read_text())
        assert config["checkpoint_contents"]["early_stopper"] == "@early_stopper", bundle
        attached = [h for h in config["train"]["handlers"] if h.get("_target_") == "@early_stopper"]
        assert attached == [{"_target_": "@early_stopper", "_mode_": "callable"}], bundle
        assert config["early_stopper"]["_target_"] == "scripts.common.handlers.MinEpochsEarlyStopHandler", bundle


def test_every_handler_is_a_component_so_monai_can_check_the_workflow():
    """MONAI's train-workflow property check reads ``_target_`` of every handler; a bare ``"@ref"`` breaks it."""

    def handler_lists(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key.split("#")[-1] == "handlers" and isinstance(value, list):
                    yield value
                yield from handler_lists(value)
        elif isinstance(node, list):
            for value in node:
                yield from handler_lists(value)

    checked = 0
    for path in sorted(BUNDLES.glob("*/configs/*.json")):
        for handlers in handler_lists(json.loads(path.read_text())):
            for handler in handlers:
                assert isinstance(handler, dict) and "_target_" in handler, (path, handler)
                checked += 1
    assert checked > 20
