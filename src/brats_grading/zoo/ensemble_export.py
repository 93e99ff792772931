"""Publish an ensemble that runs alone: its members packed as TorchScript into its own ``models/``.

Downloaded alone, an ensemble whose ``members`` point at sibling bundle folders cannot run. Exporting
copies the ensemble bundle into ``<output_dir>/<name>/`` (the source bundle is not touched), writes each
member model as ``models/members/<member>/model_<i>.ts`` (``monai.bundle.ckpt_export`` from the member's
bundle, traced where that bundle traces, the member's ``inference.json`` embedded) with its operating point
beside it, and rewrites the copy's ``members`` to those files, relative to ``bundle_root``, with the
overrides each member needs to rebuild its input. The stacking file, when there is one, goes to
``models/stacking.json``. Every exported model is reloaded and compared with the eager one before the
bundle is zipped.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..components.bundle_env import bundle_importable
from ..components.calibration import read_operating_point, write_operating_point
from ..components.checkpoints import load_weights
from .export import ExportError, package_bundle, write_large_files
from .hub import write_hub_folder
from .runtime_checks import EXPORT_TOLERANCE, export_torchscript, input_shape

__all__ = ["export_ensemble"]

MEMBERS_DIR = "models/members"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "predictions", "*_runs")


def _member_specs(bundle: Path, members: list | None) -> list[dict]:
    """The ensemble's member specs (given, or its ``inference.json``'s), each filled from its ``cv_dir``."""
    from monai.bundle import ConfigParser

    config = json.loads((bundle / "configs" / "inference.json").read_text())
    parser = ConfigParser(config)
    parser.update({"bundle_root": str(bundle), **({"members": members} if members is not None else {})})
    with bundle_importable(bundle):
        import scripts.members

        specs = parser.get_parsed_content("members", lazy=False, instantiate=False)
        return [scripts.members.member_spec(spec, i) for i, spec in enumerate(specs)]


def _network_overrides(member_bundle: Path, overrides: dict) -> dict:
    """The member's overrides that are keys of its ``inference.json`` (what rebuilds its network and input)."""
    known = json.loads((member_bundle / "configs" / "inference.json").read_text())
    return {k: v for k, v in overrides.items() if k in known and k != "bundle_root"}


def _plain_state(checkpoint: Path, scratch: Path) -> Path:
    """A training checkpoint's ``model`` entry saved alone (``ckpt_export`` loads a plain state dict)."""
    state = load_weights(checkpoint, "member checkpoint")
    state = state["model"] if isinstance(state, dict) and isinstance(state.get("model"), dict) else state
    plain = scratch / "model.pt"
    torch.save(state, plain)
    return plain


def _max_difference(member_bundle: Path, overrides: dict, weights: Path, exported: Path) -> float:
    """max |TorchScript - eager| on a random input at the member's shape (not the tracing input)."""
    from monai.bundle import ConfigParser

    with bundle_importable(member_bundle):
        parser = ConfigParser(json.loads((member_bundle / "configs" / "inference.json").read_text()))
        parser.update({"bundle_root": str(member_bundle), **overrides})
        network = parser.get_parsed_content("network_def", lazy=False).eval()
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        torch.manual_seed(1)
        x = torch.rand(*input_shape(member_bundle, overrides))
        with torch.no_grad():
            return (torch.jit.load(str(exported), map_location="cpu")(x) - network(x)).abs().max().item()


def _pack_bundle_member(spec: dict, target: Path, scratch: Path) -> tuple[list[str], dict, list[dict]]:
    member_bundle = Path(spec["bundle"]).resolve()
    checkpoints = spec.get("checkpoints") or [str(member_bundle / "models" / "model.pt")]
    checkpoints = [checkpoints] if isinstance(checkpoints, str) else list(checkpoints)
    overrides = _network_overrides(member_bundle, dict(spec.get("overrides") or {}))
    files, checks = [], []
    for index, checkpoint in enumerate(Path(c) for c in checkpoints):
        if not checkpoint.is_file():
            raise ExportError(f"member '{spec['name']}': checkpoint {checkpoint} does not exist")
        exported = target / f"model_{index}.ts"
        weights = _plain_state(checkpoint, scratch)
        with bundle_importable(member_bundle):
            traced = export_torchscript(member_bundle, exported, weights, overrides)
        difference = _max_difference(member_bundle, overrides, weights, exported)
        if difference > EXPORT_TOLERANCE:
            raise ExportError(f"member '{spec['name']}': {exported.name} differs from eager by {difference:.2e}")
        write_operating_point(exported, read_operating_point(checkpoint))
        files.append(exported.name)
        checks.append({"file": exported.name, "traced": traced, "max_abs_difference": difference})
    return files, overrides, checks


def _pack_torchscript_member(spec: dict, target: Path) -> tuple[list[str], dict, list[dict]]:
    sources = [spec["torchscript"]] if isinstance(spec["torchscript"], str) else list(spec["torchscript"])
    files = []
    for index, source in enumerate(Path(s) for s in sources):
        if not source.is_file():
            raise ExportError(f"member '{spec['name']}': TorchScript file {source} does not exist")
        shutil.copy2(source, target / f"model_{index}.ts")
        write_operating_point(target / f"model_{index}.ts", read_operating_point(source))
        files.append(f"model_{index}.ts")
    return files, dict(spec.get("overrides") or {}), [{"file": f, "copied": True} for f in files]


def _staged_copy(bundle: Path, output: Path, overwrite: bool) -> Path:
    staged = output / bundle.name
    if staged.exists():
        if not overwrite:
            raise ExportError(f"{staged} exists; remove it or pass overwrite=True (it is then moved aside)")
        staged.rename(output / f"{bundle.name}.replaced_{int(staged.stat().st_mtime)}")
    shutil.copytree(bundle, staged, ignore=IGNORED)
    return staged


def export_ensemble(
    bundle_dir: str | Path,
    output_dir: str | Path,
    members: list | None = None,
    stacking_file: str | Path | None = None,
    overwrite: bool = False,
    url: str | None = None,
    hub: bool = False,
) -> dict:
    """Pack the ensemble (``members`` given, or its own) into ``<output_dir>/<name>/`` and zip it; return a summary."""
    bundle, output = Path(bundle_dir).resolve(), Path(output_dir).resolve()
    specs = _member_specs(bundle, members)
    output.mkdir(parents=True, exist_ok=True)
    staged = _staged_copy(bundle, output, overwrite)
    packed, summary = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for spec in specs:
            target = staged / MEMBERS_DIR / spec["name"]
            target.mkdir(parents=True)
            if spec.get("torchscript"):
                files, overrides, checks = _pack_torchscript_member(spec, target)
            else:
                files, overrides, checks = _pack_bundle_member(spec, target, Path(scratch))
            folder = f"{MEMBERS_DIR}/{spec['name']}"
            paths = [f"$@bundle_root + '/{folder}/{f}'" for f in files]
            packed.append({"name": spec["name"], "torchscript": paths, "overrides": overrides})
            summary[spec["name"]] = checks
    stacking = Path(stacking_file) if stacking_file else bundle / "models" / "stacking.json"
    if stacking.is_file():
        shutil.copy2(stacking, staged / "models" / "stacking.json")
    inference_file = staged / "configs" / "inference.json"
    inference = json.loads(inference_file.read_text())
    inference["members"] = packed
    inference_file.write_text(json.dumps(inference, indent=4) + "\n")
    metadata = json.loads((staged / "configs" / "metadata.json").read_text())
    weights = sorted(str(p.relative_to(staged)) for p in (staged / MEMBERS_DIR).rglob("*.ts"))
    write_large_files(staged, weights, url, metadata["version"])
    archive = package_bundle(staged, output)
    hub_folder = write_hub_folder(staged, output) if hub else None
    return {
        "members": summary,
        "stacking": str(stacking) if stacking.is_file() else None,
        "bundle": str(staged),
        "archive": str(archive),
        "hub": str(hub_folder) if hub_folder else None,
    }
