"""DataLoader workers by default: none on a CPU with the memory cache (they would interrupt the compute
threads on the same cores), four otherwise; an explicit ``num_workers`` always wins."""

from __future__ import annotations

import pytest
from helpers import BUNDLES, run_in_bundle

from brats_grading.components.datasets import loader_workers


@pytest.mark.parametrize(
    ("device", "cache", "expected"),
    [("cpu", "memory", 0), ("cpu", "disk", 4), ("cpu", "none", 4), ("cuda:0", "memory", 4), ("cuda", "disk", 4)],
)
def test_loader_workers_follow_the_device_and_the_cache(device, cache, expected):
    assert loader_workers(device, cache) == expected


def test_an_unknown_cache_is_named():
    with pytest.raises(ValueError, match="cache 'ram' must be one of"):
        loader_workers("cpu", "ram")


@pytest.mark.parametrize("bundle_name", ["resnet50_3d_ldam", "swin_unetr_cls"])
def test_the_training_loaders_take_the_default_and_an_override(bundle_name):
    result = run_in_bundle(
        BUNDLES / bundle_name,
        """
cpu = "$torch.device('cpu')"
found = {}
for label, overrides in (("memory", {"cache": "memory"}), ("disk", {"cache": "disk"}),
                         ("explicit", {"cache": "memory", "num_workers": 2})):
    parser = bundle_parser("train.json", device=cpu, **overrides)
    found[label] = [parser.get_parsed_content("train#dataloader#num_workers"),
                    parser.get_parsed_content("validate#dataloader#num_workers")]
print(json.dumps(found))
""",
    )
    assert result == {"memory": [0, 0], "disk": [4, 4], "explicit": [2, 2]}
