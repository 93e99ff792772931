"""Checks a bundle run makes before it writes anything: its config keys, its output folder, its checkpoint.

Called first in a config's ``initialize`` list, so a mistyped override, a read-only output folder or a
checkpoint of another network stops the run before a run folder is made or a file is touched.
"""

from __future__ import annotations

import difflib
import json
import uuid
from pathlib import Path

import torch

from .checkpoints import load_weights

__all__ = [
    "CheckpointMismatchError",
    "ConfigKeyError",
    "TrainingSetupError",
    "check_batches",
    "check_checkpoint",
    "check_config_keys",
    "check_writable",
]

#: keys monai.bundle adds to every parsed config
BUNDLE_KEYS: tuple[str, ...] = ("_meta_",)
_WRAPPER_PREFIX = "module."


class ConfigKeyError(ValueError):
    """A top-level config key (often a command-line override) that no config of the bundle defines."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the network built from the config."""


def _bundle_config_keys(config_dir: Path) -> set[str]:
    keys: set[str] = set()
    for path in sorted(config_dir.glob("*.json")):
        if path.name == "metadata.json":
            continue
        content = json.loads(path.read_text())
        if isinstance(content, dict):
            keys.update(content)
    return keys


def tracking_keys() -> set[str]:
    """The top-level keys ``--tracking mlflow`` adds (MONAI's default tracking settings, less its handlers).

    ``ConfigWorkflow`` merges them into the config before ``initialize`` runs, so they are not overrides.
    """
    from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

    return set(DEFAULT_MLFLOW_SETTINGS["configs"]) - set(DEFAULT_MLFLOW_SETTINGS["handlers_id"])


def check_config_keys(allow_unknown: bool = False, config_dir: str | Path | None = None) -> list[str]:
    """Refuse top-level keys of this run's config that no config file of the bundle defines.

    An override is merged into the config silently (``--epoch 1`` adds a key ``epoch`` and the run
    goes on for ``epochs``); this names it and the closest known key. The known keys are those of
    every ``configs/*.json`` of the bundle (default: the bundle this module was copied into).
    Returns the unknown keys when ``allow_unknown`` (for configs that add keys on purpose).
    """
    from .run_folder import calling_parser

    parser = calling_parser()
    if parser is None:
        raise RuntimeError("check_config_keys must be called from a monai.bundle config expression")
    folder = Path(config_dir) if config_dir else Path(__file__).resolve().parents[2] / "configs"
    known = _bundle_config_keys(folder) | set(BUNDLE_KEYS) | tracking_keys()
    unknown = sorted(k for k in parser.get() if k not in known)
    if unknown and not allow_unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigKeyError(
            f"unknown config key '{key}'{hint}: no file in {folder} defines it"
            f"{f'; also unknown: {unknown[1:]}' if unknown[1:] else ''}. "
            "Check the spelling of overrides, or pass --allow_unknown_keys True to keep extra keys"
        )
    return unknown


class TrainingSetupError(ValueError):
    """Training settings that would run and produce nothing."""


def check_batches(batches: int, batch_size: int, cases: int, fold: int | None = None) -> int:
    """Refuse a training loader with no batch: ``drop_last`` drops a last batch smaller than ``batch_size``,
    so a ``batch_size`` above the training cases (per process) would train nothing and exit 0."""
    if batches < 1:
        where = f" of fold {fold}" if fold is not None else ""
        raise TrainingSetupError(
            f"batch_size {batch_size} is larger than the {cases} training cases{where} (per process): no batch "
            "would run and nothing would be trained. Lower --batch_size"
        )
    return batches


def check_writable(folder: str | Path, what: str = "output_dir") -> str:
    """Make ``folder`` if needed and prove a file can be written in it; raise naming the folder otherwise."""
    path = Path(folder)
    probe = path / f".write_test_{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"{what} '{path}' is not writable ({err.strerror or type(err).__name__}); expected a folder this user "
            "can create files in"
        ) from None
    return str(path)


def _strip_wrapper(state: dict) -> dict:
    while state and all(k.startswith(_WRAPPER_PREFIX) for k in state):
        state = {k[len(_WRAPPER_PREFIX) :]: v for k, v in state.items()}
    return state


def check_checkpoint(
    checkpoint: str | Path, network: torch.nn.Module, settings: dict | None = None, key: str = "model"
) -> str:
    """The checkpoint's ``key`` entry (or the file itself) must hold exactly ``network``'s tensors and shapes,
    and the network ``settings`` it was trained with (stored beside its metrics, or in its operating-point
    file) must equal this config's.

    Catches a checkpoint of another architecture, layout or number of input channels before the engine
    starts, naming the file and the first tensors that differ. Settings catch what shapes cannot: the
    ``strided`` and ``medicalnet`` layouts, or permuted modalities, have the same tensors. Pickled code is
    refused (:func:`load_weights`).
    """
    loaded = state = load_weights(checkpoint, "checkpoint")
    if isinstance(state, dict) and isinstance(state.get(key), dict):
        state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointMismatchError(f"checkpoint '{checkpoint}' holds no state dict under '{key}'")
    found = _strip_wrapper(dict(state))
    wanted = _strip_wrapper(getattr(network, "module", network).state_dict())
    problems = [
        f"'{k}' has shape {list(found[k].shape)} in the file but {list(v.shape)} in the network"
        for k, v in wanted.items()
        if k in found and found[k].shape != v.shape
    ]
    missing = [k for k in wanted if k not in found]
    extra = [k for k in found if k not in wanted]
    if missing:
        problems.append(f"{len(missing)} tensors missing from the file (e.g. '{missing[0]}')")
    if extra:
        problems.append(f"{len(extra)} tensors the network does not have (e.g. '{extra[0]}')")
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint '{checkpoint}' does not fit {type(getattr(network, 'module', network)).__name__}: "
            f"{'; '.join(problems[:3])}. Another architecture, layout, head or number of modalities?"
        )
    metrics = loaded.get("metrics") if isinstance(loaded, dict) else None
    _check_settings(checkpoint, settings, metrics if isinstance(metrics, dict) else {})
    return str(checkpoint)


def _check_settings(checkpoint: str | Path, settings: dict | None, metrics: dict) -> None:
    """``settings`` against those stored in the operating-point file, else in the checkpoint's ``metrics``
    (already loaded by :func:`check_checkpoint`: the file is not read again)."""
    from .calibration import operating_point_path, read_operating_point

    if not settings:
        return
    stored = read_operating_point(checkpoint).get("network") if operating_point_path(checkpoint).is_file() else None
    if stored is None:
        stored = metrics.get("network")
    if not isinstance(stored, dict):
        return  # a model saved before settings were stored: the shapes are all that can be checked
    for name, value in settings.items():
        if name in stored and json.dumps(stored[name]) != json.dumps(value, default=str):
            raise CheckpointMismatchError(
                f"checkpoint '{checkpoint}' was trained with {name} {json.dumps(stored[name])} but this config "
                f"builds {name} {json.dumps(value, default=str)}: pass --{name} '{json.dumps(stored[name])}' "
                "(or the checkpoint of this network)"
            )
