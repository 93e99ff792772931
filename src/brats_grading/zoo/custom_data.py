"""The model zoo's per-bundle exemptions for this project's bundles, kept where the zoo keeps them: in CI.

The zoo's ``ci/verify_bundle.py`` reads no bundle-side key to skip a check; it skips only what its
``ci/bundle_custom_data.py`` lists by bundle folder name. So a bundle cannot exempt itself here either:
these tables are the entries a pull request adds to that file (``docs/deployment.md`` prints them), each
with the reason its README gives. Rules follow Project-MONAI/model-zoo at ``ZOO_COMMIT``.
"""

from __future__ import annotations

__all__ = ["BUNDLE_CUSTOM_DATA", "CHECK_LISTS", "PROJECT_EXCLUSIONS", "ZOO_COMMIT", "custom_data_entries", "exempt"]

ZOO_COMMIT = "dfae206df112837d817e78d3727c9f32b3b52e82 (2024-10-11)"

#: list name in ``ci/bundle_custom_data.py`` -> {bundle folder name: reason}
BUNDLE_CUSTOM_DATA: dict[str, dict[str, str]] = {
    "exclude_verify_preferred_files_list": {
        "ensemble": "its weights are its members' TorchScript files (models/members/), there is no models/model.pt"
    },
    "exclude_verify_shape_list": {
        "ensemble": "network_def (MemberPanel) takes one input per member, each at that member's channels and size"
    },
    "exclude_verify_torchscript_list": {
        "swin_unetr_cls": "MONAI's Swin encoder uses torch.utils.checkpoint, which torch.jit.script cannot compile; "
        "export_bundle.py traces it (the zoo lists its own swin_unetr_btcv_segmentation for the same reason)",
        "ensemble": "the members are exported, each as TorchScript; the panel of members is not one network",
    },
}

#: which zoo list exempts a bundle from which check of ``verify_bundle``
CHECK_LISTS = {"network in/out": "exclude_verify_shape_list", "torchscript": "exclude_verify_torchscript_list"}

#: workflow checks this project adds to the zoo's (the zoo's unit tests choose workflows per bundle)
PROJECT_EXCLUSIONS: dict[str, dict[str, str]] = {
    "ensemble": {
        "train": "train.json fits the fitted weights and the stacking model from out-of-fold predictions; "
        "it trains no network",
        "train+evaluate": "evaluate.json (used with inference.json) compares members and ensemble on labelled "
        "cases; there is no trainer",
    }
}


def exempt(bundle_name: str, list_name: str) -> str | None:
    """The reason ``bundle_name`` is on the zoo list ``list_name``, or None."""
    return BUNDLE_CUSTOM_DATA[list_name].get(bundle_name)


def custom_data_entries(bundle_name: str) -> dict[str, str]:
    """{list name: reason} for every zoo list the bundle must be added to."""
    return {name: names[bundle_name] for name, names in BUNDLE_CUSTOM_DATA.items() if bundle_name in names}
