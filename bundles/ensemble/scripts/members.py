"""Ensemble members: trained classifiers given by path, each with the input it expects.

A member is one model or several (typically the k fold models of one bundle, averaged). It is given
either as a bundle folder plus checkpoints, whose ``configs/inference.json`` builds the network, or as
exported TorchScript files, whose embedded ``inference.json`` names the input. Either way the member's
config (with the member's ``overrides``) says which modalities it reads and at which size; its operating
point (temperature, threshold) is read next to each checkpoint, as the member's own bundle writes it.

Every bundle names its component package ``scripts``, the ensemble included, so a member's ``scripts``
is imported only while its network is built and is then taken out of ``sys.modules`` again.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from .common.bundle_env import bundle_importable
from .common.calibration import read_operating_point
from .common.checkpoints import load_weights
from .common.preflight import check_checkpoint
from .common.validation import one_line

__all__ = ["Member", "load_member", "load_members", "member_spec", "member_specs_from_cv"]

MEMBER_KEYS = ("name", "bundle", "checkpoints", "torchscript", "overrides", "cv_dir", "oof_predictions")


@dataclass
class Member:
    """A loaded member: its models (one per checkpoint), their operating points, and its input."""

    name: str
    models: list[torch.nn.Module]
    temperatures: list[float]
    thresholds: list[float]
    modalities: list[str]
    spatial_size: list[int]
    source: str
    oof_predictions: str | None = None
    #: the member config's ``network_input`` transforms (crop, normalise, resize) on key ``image``
    input_transforms: list = field(default_factory=list)

    @property
    def threshold(self) -> float:
        """The member's decision threshold on its averaged P(HGG): the mean of its models' thresholds."""
        return float(sum(self.thresholds) / len(self.thresholds))


def member_specs_from_cv(cv_dir: str | Path, name: str | None = None, bundle: str | None = None) -> dict:
    """A member spec from a ``cross_validate.py`` folder: its fold models, their overrides, its OOF predictions."""
    cv_dir = Path(cv_dir).resolve()
    summary_path = cv_dir / "cv_summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"member cv_dir {cv_dir}: no cv_summary.json (run scripts/cross_validate.py first)")
    summary = json.loads(summary_path.read_text())
    first = json.loads((cv_dir / f"fold_{summary['folds'][0]['fold']}" / "fold_result.json").read_text())
    return {
        "name": name or summary["bundle"],
        "bundle": bundle or first.get("bundle_dir"),
        "checkpoints": list(summary["fold_models"]),
        "overrides": dict(first.get("overrides", {})),
        "oof_predictions": str(cv_dir / "oof_predictions.csv"),
    }


def member_spec(spec: Mapping, index: int, need_model: bool = True) -> dict:
    """Check a member spec and fill it from its ``cv_dir``; ``need_model=False`` for out-of-fold fitting only."""
    unknown = sorted(set(spec) - set(MEMBER_KEYS))
    if unknown:
        raise ValueError(f"members[{index}]: unknown key(s) {unknown}; a member takes {list(MEMBER_KEYS)}")
    spec = dict(spec)
    if spec.get("cv_dir"):
        from_cv = member_specs_from_cv(spec["cv_dir"], spec.get("name"), spec.get("bundle"))
        spec = {**from_cv, **{k: v for k, v in spec.items() if v is not None}}
    if need_model and bool(spec.get("torchscript")) == bool(spec.get("bundle")):
        raise ValueError(f"members[{index}]: give either 'bundle' (+ 'checkpoints') or 'torchscript', not both or none")
    spec.setdefault("name", f"member_{index}")
    return spec


def _as_list(value) -> list[str]:
    return [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]


def _input_of(config: dict, overrides: Mapping, source: str) -> tuple[list[str], list[int], list]:
    """The member's modalities, input size and ``network_input`` transforms, parsed from its own config."""
    parser = ConfigParser(dict(config))
    parser.update({**dict(overrides), "saliency": False})
    try:
        modalities = list(parser.get_parsed_content("modalities"))
        size = parser.get_parsed_content("spatial_size")
        transforms = list(parser.get_parsed_content("network_input", lazy=False))
    except KeyError as err:
        raise ValueError(
            f"{source}: its inference config has no {err} (the ensemble needs modalities, spatial_size and "
            "network_input, the transforms that make a loaded case the member's input)"
        ) from err
    size = [int(size)] * 3 if isinstance(size, int) else [int(s) for s in size]
    return modalities, size, transforms


def _check_override_keys(spec: Mapping, bundle_dir: Path) -> None:
    """A member override must name a key of one of the member bundle's configs: a typo would be ignored."""
    known: set[str] = set()
    for path in sorted((bundle_dir / "configs").glob("*.json")):
        content = ConfigParser.load_config_file(path) if path.name != "metadata.json" else {}
        known.update(content if isinstance(content, dict) else {})
    for key in dict(spec.get("overrides") or {}):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"member '{spec['name']}': override '{key}'{hint} is not a key of any config in "
                f"{bundle_dir / 'configs'}; expected keys of the member bundle"
            )


def _load_state_dict(path: str) -> dict:
    """A plain state dict, or the ``model`` entry of a training checkpoint (weights only, no pickled code)."""
    state = load_weights(path, "member checkpoint")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def _member(
    spec: dict, models: list, files: list[str], inputs: tuple[list[str], list[int], list], source: str
) -> Member:
    """A Member with the operating point stored next to each of its model files."""
    modalities, size, transforms = inputs
    points = [read_operating_point(f) for f in files]
    return Member(
        name=spec["name"],
        models=models,
        temperatures=[float(p["temperature"]) for p in points],
        thresholds=[float(p["threshold"]) for p in points],
        modalities=modalities,
        spatial_size=size,
        source=source,
        oof_predictions=spec.get("oof_predictions"),
        input_transforms=transforms,
    )


def _bundle_member(spec: dict) -> Member:
    bundle_dir = Path(spec["bundle"]).resolve()
    config_file = bundle_dir / "configs" / "inference.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"member '{spec['name']}': {config_file} does not exist")
    checkpoints = _as_list(spec.get("checkpoints") or [str(bundle_dir / "models" / "model.pt")])
    missing = [c for c in checkpoints if not Path(c).is_file()]
    if missing:
        raise FileNotFoundError(f"member '{spec['name']}': checkpoint(s) {missing} do not exist")
    config = ConfigParser.load_config_file(config_file)
    _check_override_keys(spec, bundle_dir)
    overrides = {**dict(spec.get("overrides") or {}), "bundle_root": str(bundle_dir)}
    models = []
    with bundle_importable(bundle_dir):
        inputs = _input_of(config, overrides, str(config_file))
        for checkpoint in checkpoints:
            parser = ConfigParser(dict(config))
            parser.update(overrides)
            network = parser.get_parsed_content("network_def", lazy=False)
            settings = parser.get_parsed_content("network_settings") if "network_settings" in config else None
            check_checkpoint(checkpoint, network, settings)  # the layout or modalities it was trained with
            network.load_state_dict(_load_state_dict(checkpoint))
            models.append(network.eval())
    return _member(spec, models, checkpoints, inputs, str(bundle_dir))


def _torchscript_member(spec: dict) -> Member:
    files = _as_list(spec["torchscript"])
    models, config = [], None
    for path in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"member '{spec['name']}': TorchScript file {path} does not exist")
        extra = {"inference.json": ""}
        try:  # a TorchScript archive is a program: load only exports you trust (see the README)
            models.append(torch.jit.load(path, map_location="cpu", _extra_files=extra).eval())
        except RuntimeError as err:
            raise ValueError(f"member '{spec['name']}': {path} is not a TorchScript archive ({one_line(err)})") from err
        if config is None and extra["inference.json"]:
            config = json.loads(extra["inference.json"])
    inputs = _input_of(config or {}, spec.get("overrides") or {}, f"member '{spec['name']}' ({files[0]})")
    return _member(spec, models, files, inputs, files[0])


def load_member(spec: Mapping, index: int = 0) -> Member:
    """Load one member from its spec (see the bundle README for the keys)."""
    spec = member_spec(spec, index)
    return _torchscript_member(spec) if spec.get("torchscript") else _bundle_member(spec)


def load_members(specs: Sequence[Mapping]) -> list[Member]:
    """Load every member; names must be unique (they name CSV columns and report rows)."""
    if not specs:
        raise ValueError("members: the ensemble needs at least one member")
    members = [load_member(spec, i) for i, spec in enumerate(specs)]
    names = [m.name for m in members]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"members: names {duplicated} are used twice; give each member its own 'name'")
    return members
