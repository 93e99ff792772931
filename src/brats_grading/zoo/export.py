"""Publish a trained run as the bundle's weights, the way the model zoo distributes them.

From a run folder (or one checkpoint of it) this writes into the bundle:

* ``models/model.pt``: the selected checkpoint's plain state dict (what ``ckpt_export`` and MONAI Label load);
* ``models/model.operating_point.json``: the temperature and threshold chosen on validation;
* ``models/model.ts``: TorchScript with ``metadata.json`` and ``inference.json`` embedded (``ckpt_export``),
  scripted, or traced when ``inference.json`` sets ``torchscript_use_trace``;
* ``models/model.onnx`` (``onnx=True``): ONNX with the network settings and operating point in its metadata,
  checked against eager under ONNX Runtime;
* ``large_files.yml``: each weight file with its URL (``<url>/<path>``, or a placeholder), sha256 hash and type;

and carries the run's network settings (modalities, input size, layout...) into ``inference.json``,
``train.json`` and the metadata's ``network_data_format``, so the published files describe the published
network (``monai.bundle.load`` builds ``train.json``'s). The operating point is written into
``inference.json`` too, so the TorchScript file carries it. Then it
packages ``<name>_v<version>.zip`` with the bundle folder inside (and, with ``hub``, the bundle as a
Hugging Face model repository). Files already in the bundle's
``models/`` are never overwritten silently: ``overwrite`` moves them into the output folder first.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import torch

from ..components.bundle_env import bundle_importable
from ..components.calibration import read_operating_point, write_operating_point
from ..components.checkpoints import load_weights, select_checkpoint, stored_metrics
from ..components.preflight import check_checkpoint
from .hub import write_hub_folder
from .runtime_checks import export_torchscript
from .static_checks import LARGE_FILES_NAME, PLACEHOLDER_HOST, file_hash

__all__ = ["ExportError", "export_bundle", "network_keys", "package_bundle", "write_large_files"]

PUBLISHED = (
    "models/model.pt",
    "models/model.operating_point.json",
    "models/model.ts",
    "models/model.onnx",
    LARGE_FILES_NAME,
)
WEIGHT_FILES = ("models/model.pt", "models/model.ts", "models/model.onnx")
URL_PLACEHOLDER = f"https://{PLACEHOLDER_HOST}/{{name}}_v{{version}}/{{file}}"
HASH_TYPE = "sha256"
ALWAYS_CARRIED = ("modalities", "spatial_size")


class ExportError(ValueError):
    """The run cannot be published into this bundle; the message names the file and what was expected."""


def _selected_checkpoint(run: Path) -> Path:
    if run.is_file():
        return run
    chosen = select_checkpoint([run / "checkpoints" / "best_ema.pt", run / "checkpoints" / "best.pt"])
    if chosen is None:
        raise ExportError(f"{run}: no checkpoints/best_ema.pt or checkpoints/best.pt (is it a training run folder?)")
    return Path(chosen)


def _run_settings(checkpoint: Path) -> dict:
    """The resolved top-level values of the run that wrote ``checkpoint`` (``<run>/config/config.json``)."""
    config = checkpoint.resolve().parent.parent / "config" / "config.json"
    if not config.is_file():
        raise ExportError(f"{config} not found: the run's settings are needed to describe the published network")
    return json.loads(config.read_text())["resolved"]


def _references(value) -> set[str]:
    """Top-level ids that a config section references with ``@id``."""
    text = json.dumps(value)
    return {m.split("#")[0] for m in re.findall(r"@([A-Za-z_][\w#]*)", text)}


def network_keys(inference: dict) -> list[str]:
    """Keys of ``inference.json`` that shape the network or its input: they must match the trained run."""
    keys = set(ALWAYS_CARRIED) | _references(inference.get("network_def", {}))
    return sorted(k for k in keys if k in inference and not str(inference[k]).startswith("$"))


def _carry_into(config_file: Path, carried: dict) -> None:
    """Set the run's network settings in another config that defines them (as plain values)."""
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    changed = {k: v for k, v in carried.items() if k in config and not str(config[k]).startswith("$")}
    if changed:
        config.update(changed)
        config_file.write_text(json.dumps(config, indent=4) + "\n")


def _described_metadata(metadata: dict, settings: dict) -> dict:
    image = metadata["network_data_format"]["inputs"]["image"]
    modalities = [str(m) for m in settings["modalities"]]
    size = settings["spatial_size"]
    image["num_channels"] = len(modalities)
    image["spatial_shape"] = [int(size)] * 3 if isinstance(size, int) else [int(s) for s in size]
    image["channel_def"] = {
        str(i): {"t1ce": "T1ce", "flair": "FLAIR"}.get(m, m.upper()) for i, m in enumerate(modalities)
    }
    return metadata


def _move_aside(bundle: Path, output_dir: Path, overwrite: bool) -> None:
    existing = [name for name in PUBLISHED if (bundle / name).exists()]
    if not existing:
        return
    if not overwrite:
        raise ExportError(
            f"{bundle} already holds {existing}; pass overwrite=True to replace them "
            f"(they are then moved to {output_dir}/replaced_<time>/, not deleted)"
        )
    backup = output_dir / f"replaced_{time.strftime('%Y%m%d_%H%M%S')}"
    for name in existing:
        target = backup / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(bundle / name), target)


def write_large_files(bundle: Path, files: list[str], url: str | None, version: str) -> None:
    """``large_files.yml``: each file's sha256 and its URL, ``<url>/<path>`` (the hub layout: the bundle at the
    repository root), or a placeholder that the zoo's download, and ``verify_bundle.py``, refuse."""
    lines = ["large_files:"]
    for file in files:
        where = (
            f"{url.rstrip('/')}/{file}" if url else URL_PLACEHOLDER.format(name=bundle.name, version=version, file=file)
        )
        digest = file_hash(bundle / file, HASH_TYPE)
        lines += [f'- path: "{file}"', f'  url: "{where}"', f'  hash_val: "{digest}"', f'  hash_type: "{HASH_TYPE}"']
    (bundle / LARGE_FILES_NAME).write_text("\n".join(lines) + "\n")


def _export_onnx(bundle: Path, parser, operating_point: dict) -> dict:
    try:
        from .onnx_export import export_onnx
    except ImportError as err:
        raise ExportError(f"onnx=True needs onnx and onnxruntime ({err}): pip install -e '.[onnx]'") from None
    settings = parser.get_parsed_content("network_settings") if "network_settings" in parser.get() else {}
    stored = {"network": json.loads(json.dumps(settings, default=str)), "operating_point": operating_point}
    models = bundle / "models"
    return export_onnx(bundle, models / "model.onnx", models / "model.pt", stored)


def package_bundle(bundle: Path, output_dir: Path) -> Path:
    """``<output_dir>/<name>_v<version>.zip`` holding ``<name>/...`` (caches and run folders left out)."""
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    archive = output_dir / f"{bundle.name}_v{metadata['version']}.zip"
    if archive.exists():
        raise ExportError(f"{archive} exists; remove it or choose another output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(bundle.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                weights = path.suffix in (".pt", ".ts", ".onnx")  # float tensors barely compress: stored, not deflated
                compression = zipfile.ZIP_STORED if weights else zipfile.ZIP_DEFLATED
                zipped.write(path, Path(bundle.name) / path.relative_to(bundle), compress_type=compression)
    return archive


def export_bundle(
    bundle_dir: str | Path,
    run: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    onnx: bool = False,
    url: str | None = None,
    hub: bool = False,
) -> dict:
    """Publish ``run`` (a training run folder or checkpoint) into ``bundle_dir`` and zip it; return a summary.

    ``url``: where the bundle's files will be hosted (``large_files.yml`` lists ``<url>/models/model.pt``...);
    ``hub``: also write ``<output_dir>/hub/<name>/``, the bundle as a Hugging Face model repository.
    """
    bundle, output = Path(bundle_dir).resolve(), Path(output_dir).resolve()
    checkpoint = _selected_checkpoint(Path(run).resolve())
    settings = _run_settings(checkpoint)
    inference_file, metadata_file = bundle / "configs" / "inference.json", bundle / "configs" / "metadata.json"
    inference, metadata = json.loads(inference_file.read_text()), json.loads(metadata_file.read_text())
    carried = {k: settings[k] for k in network_keys(inference) if k in settings}
    state = load_weights(checkpoint, "checkpoint")
    state = state.get("model", state)
    with bundle_importable(bundle):
        from monai.bundle import ConfigParser

        parser = ConfigParser({**inference, **carried, "bundle_root": str(bundle)})
        check_checkpoint(checkpoint, parser.get_parsed_content("network_def", lazy=False))
        _move_aside(bundle, output, overwrite)
        inference.update(carried)
        _carry_into(bundle / "configs" / "train.json", carried)  # monai.bundle.load builds train.json's network
        metadata_file.write_text(json.dumps(_described_metadata(metadata, settings), indent=4) + "\n")
        (bundle / "models").mkdir(exist_ok=True)
        torch.save(state, bundle / "models" / "model.pt")
        point = read_operating_point(checkpoint)
        write_operating_point(bundle / "models" / "model.pt", {**point, "checkpoint": str(checkpoint)})
        inference["operating_point"] = {k: point[k] for k in ("temperature", "threshold") if k in point}
        inference_file.write_text(json.dumps(inference, indent=4) + "\n")  # model.ts carries it (no side file)
        models = bundle / "models"
        method = "traced" if export_torchscript(bundle, models / "model.ts", models / "model.pt") else "scripted"
        onnx_check = _export_onnx(bundle, parser, inference["operating_point"]) if onnx else None
    write_large_files(bundle, [f for f in WEIGHT_FILES if (bundle / f).is_file()], url, metadata["version"])
    archive = package_bundle(bundle, output)
    hub_folder = write_hub_folder(bundle, output) if hub else None
    return {
        "checkpoint": str(checkpoint),
        "validation": {k: stored_metrics(checkpoint).get(k) for k in ("auc", "epoch", "source")},
        "carried_settings": carried,
        "torchscript": method,
        "onnx": onnx_check,
        "archive": str(archive),
        "hub": str(hub_folder) if hub_folder else None,
        "large_files_url": url or "placeholder: pass --url before publishing",
    }
