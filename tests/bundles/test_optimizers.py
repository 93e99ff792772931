"""Only the selected optimiser is built, so optimisers never share (and mutate) the same parameter groups.

torch fills each parameter-group dict with its optimiser's defaults in place (``setdefault``); when
several optimisers were built from the same group dicts, AdamW inherited Adam's
``decoupled_weight_decay=False`` and silently ran as Adam with L2 weight decay.
"""

from __future__ import annotations

import pytest
from helpers import BUNDLES, run_in_bundle

SMALL = {"resnet50_3d_ldam": {"layout": "strided"}, "swin_unetr_cls": {"feature_size": 12}}


@pytest.mark.parametrize("bundle_name", sorted(SMALL))
def test_only_the_selected_optimizer_is_built_and_adamw_decouples_weight_decay(bundle_name):
    overrides = {**SMALL[bundle_name], "spatial_size": [32, 32, 32], "device": "$torch.device('cpu')"}
    result = run_in_bundle(
        BUNDLES / bundle_name,
        f"""
built = {{}}
for name in ("adam", "adamw", "sgd"):
    parser = bundle_parser("train.json", optimizer_name=name, **{overrides!r})
    optimizer = parser.get_parsed_content("optimizer")
    others = [k for k, v in parser.get_parsed_content("optimizers").items() if v is not None and k != name]
    built[name] = [type(optimizer).__name__, others, optimizer.param_groups[0].get("decoupled_weight_decay")]
print(json.dumps(built))
""",
    )
    assert result["adam"][:2] == ["Adam", []]
    assert result["adamw"] == ["AdamW", [], True]
    assert result["sgd"][:2] == ["SGD", []]
