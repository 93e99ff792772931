"""Run every model-zoo check on one bundle folder and report one pass/fail line per check."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .results import CheckResult
from .runtime_checks import (
    check_net_in_out,
    check_properties,
    check_torchscript,
    member_stand_ins,
    not_applicable,
    tiny_dataset,
)
from .static_checks import (
    check_absolute_paths,
    check_changelog,
    check_file_sizes,
    check_files,
    check_formatting,
    check_metadata_schema,
    check_pins,
)

__all__ = ["CHECK_NAMES", "verify_bundle"]

# small settings for the property check only: it resolves whole workflows on a 4-case dataset
PROPERTY_OVERRIDES = {"num_workers": 0, "cache": "none", "spatial_size": [16, 16, 16]}


def _checks(bundle: Path, work: Path) -> dict[str, Callable[[], CheckResult]]:
    """The checks in the zoo's order (files, version, metadata, properties, shapes, TorchScript), then format."""
    return {
        "files": lambda: check_files(bundle),
        "changelog": lambda: check_changelog(bundle),
        "pins": lambda: check_pins(bundle),
        "metadata schema": lambda: check_metadata_schema(bundle),
        "workflow properties": lambda: check_properties(
            bundle, tiny_dataset(work / "data"), work, {**PROPERTY_OVERRIDES, **member_stand_ins(bundle, work)}
        ),
        "network in/out": lambda: check_net_in_out(bundle),
        "torchscript": lambda: check_torchscript(bundle, trace=False),  # the zoo never reads torchscript_use_trace
        "formatting": lambda: check_formatting(bundle),
        "absolute paths": lambda: check_absolute_paths(bundle),
        "file sizes": lambda: check_file_sizes(bundle),
    }


def _ships_one_network(bundle: Path) -> bool:
    """A model bundle (export_bundle.py writes its models/model.ts), not an ensemble of members."""
    return "members" not in json.loads((bundle / "configs" / "inference.json").read_text())


CHECK_NAMES: tuple[str, ...] = tuple(_checks(Path("."), Path(".")))


def verify_bundle(bundle_dir: str | Path, only: Sequence[str] = ()) -> list[CheckResult]:
    """Results of every check (or of the ``only`` ones, by name), in order."""
    bundle = Path(bundle_dir).resolve()
    unknown = sorted(set(only) - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; the checks are {list(CHECK_NAMES)}")
    if not (bundle / "configs").is_dir():
        return [CheckResult("files", False, f"{bundle} is not a bundle folder (no configs/)")]
    skipped = not_applicable(bundle)
    results = []
    with tempfile.TemporaryDirectory(prefix="verify_bundle_") as tmp:
        for name, check in _checks(bundle, Path(tmp)).items():
            if only and name not in only:
                continue
            if name == "torchscript" and name in skipped and _ships_one_network(bundle):
                own = check_torchscript(bundle)  # the export export_bundle.py ships (traced with torchscript_use_trace)
                results.append(CheckResult(name, own.passed, f"{own.detail} (zoo: {skipped[name]})", applicable=False))
            elif name in skipped:
                results.append(CheckResult(name, True, f"not applicable: {skipped[name]}", applicable=False))
            else:
                results.append(check())
    return results
