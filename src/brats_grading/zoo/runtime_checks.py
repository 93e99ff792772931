"""The model zoo's checks that run bundle code: workflow properties, network input/output, TorchScript export.

Data-free where the zoo's are (random tensors at the shape ``metadata.json`` gives); the property checks
resolve whole workflows, so they get a tiny synthetic BraTS folder (made once per verification).
Without shipped weights the network is checked at a fixed random initialisation: what is verified is
the code path a published model goes through, not any particular weights.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ..components.bundle_env import bundle_importable
from ..components.validation import one_line
from .custom_data import CHECK_LISTS, PROJECT_EXCLUSIONS, exempt
from .results import CheckResult

__all__ = [
    "TRACE_FLAG",
    "WORKFLOWS",
    "check_net_in_out",
    "check_properties",
    "check_torchscript",
    "export_torchscript",
    "input_shape",
    "tiny_dataset",
]

TRACE_FLAG = "torchscript_use_trace"  # inference.json: true when the network must be traced, not scripted
EXPORT_TOLERANCE = 1e-5
WORKFLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("train.json",), "train"),
    "train+evaluate": (("train.json", "evaluate.json"), "train"),
    "inference": (("inference.json",), "infer"),
}


def tiny_dataset(folder: Path) -> Path:
    """Four synthetic cases (2 HGG, 2 LGG) at 6 mm in the BraTS 2018 layout, with a two-fold datalist."""
    from ..components.datalist import build_datalist, write_datalist
    from ..synthetic import generate_dataset

    root = generate_dataset(folder, n_hgg=2, n_lgg=2, seed=3, voxel_mm=6.0, workers=1)
    write_datalist(build_datalist(root, num_folds=2), root / "datalist.json")
    return root


def _workflow(bundle: Path, files: Sequence[str], workflow_type: str, overrides: dict):
    from monai.bundle import ConfigWorkflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # monai's "parsing config_file runs code" notice, once per workflow
        return ConfigWorkflow(
            config_file=[str(bundle / "configs" / f) for f in files],
            meta_file=str(bundle / "configs" / "metadata.json"),
            logging_file=False,
            workflow_type=workflow_type,
            **overrides,
        )


def _present(bundle: Path, files: Sequence[str]) -> bool:
    return all((bundle / "configs" / f).is_file() for f in files)


def not_applicable(bundle: Path) -> dict[str, str]:
    """Checks (and workflows) the bundle is exempt from, with the reason: the zoo's lists for its checks
    (:mod:`.custom_data`, by bundle folder name, as ``ci/bundle_custom_data.py``), never a key of the bundle."""
    skipped = {
        check: f"on the zoo's {list_name}: {reason}"
        for check, list_name in CHECK_LISTS.items()
        if (reason := exempt(bundle.name, list_name))
    }
    return {**skipped, **PROJECT_EXCLUSIONS.get(bundle.name, {})}


def member_stand_ins(bundle: Path, work_dir: Path) -> dict:
    """For an ensemble: its default member bundles, copied with random weights where none are shipped.

    Returns the ``members`` override (``{}`` for a bundle without members). The copies live in ``work_dir``.
    """
    import shutil

    from monai.bundle import ConfigParser

    config = json.loads((bundle / "configs" / "inference.json").read_text())
    if "members" not in config:
        return {}
    parser = ConfigParser(config)
    parser.update({"bundle_root": str(bundle)})
    with bundle_importable(bundle):  # the config's imports name the bundle's own scripts package
        specs = parser.get_parsed_content("members", lazy=False, instantiate=False)
    if not any(spec.get("bundle") for spec in specs):
        return {}  # packed members (an exported ensemble): nothing to stand in for
    members = []
    for spec in specs:
        if not spec.get("bundle"):
            members.append(spec)
            continue
        source = Path(spec["bundle"]).resolve()
        copy = work_dir / "members" / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.ts"))
        with bundle_importable(copy):
            member = _inference_parser(copy, {})
            torch.manual_seed(0)
            network = member.get_parsed_content("network_def", lazy=False)
            torch.save(network.state_dict(), copy / "models" / "model.pt")
        members.append({**spec, "bundle": str(copy)})
    return {"members": members}


def check_properties(bundle: Path, dataset_dir: Path, work_dir: Path, overrides: dict | None = None) -> CheckResult:
    """``ConfigWorkflow.check_properties()`` for train, train+evaluate and inference (those the bundle has)."""
    reports, failed = [], False
    skipped = not_applicable(bundle)
    for name, (files, workflow_type) in WORKFLOWS.items():
        if not _present(bundle, files):
            reports.append(f"{name}: no config")
            continue
        if name in skipped:
            reports.append(f"{name}: not applicable ({skipped[name]})")
            continue
        values = {
            "bundle_root": str(bundle),
            "dataset_dir": str(dataset_dir),
            "output_dir": str(work_dir / name.replace("+", "_")),
            **_applicable(overrides or {}, bundle, files),
        }
        with bundle_importable(bundle):
            try:
                workflow = _workflow(bundle, files, workflow_type, values)
                workflow.initialize()
                missing = workflow.check_properties()
            except Exception as err:  # a property that fails to resolve is a failed check, reported in one line
                reports.append(f"{name}: {type(err).__name__}: {one_line(err)[:240]}")
                failed = True
                continue
        if missing:
            reports.append(f"{name}: missing {missing}")
            failed = True
        else:
            reports.append(f"{name}: ok")
    return CheckResult("workflow properties", not failed, "; ".join(reports))


def _applicable(overrides: dict, bundle: Path, files: Sequence[str]) -> dict:
    """The overrides whose keys the configs define (the bundles refuse unknown keys)."""
    keys = set()
    for name in files:
        keys |= set(json.loads((bundle / "configs" / name).read_text()))
    return {k: v for k, v in overrides.items() if k in keys}


def _inference_parser(bundle: Path, overrides: dict):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(bundle), **overrides})
    return parser


def check_net_in_out(bundle: Path, overrides: dict | None = None) -> CheckResult:
    """``monai.bundle.verify_net_in_out`` on CPU: channels and dtype of a forward pass at the metadata's shape."""
    from monai.bundle import verify_net_in_out

    with bundle_importable(bundle):
        try:
            verify_net_in_out(
                net_id="network_def",
                meta_file=str(bundle / "configs" / "metadata.json"),
                config_file=str(bundle / "configs" / "inference.json"),
                device="cpu",
                bundle_root=str(bundle),
                **(overrides or {}),
            )
        except Exception as err:
            return CheckResult("network in/out", False, f"{type(err).__name__}: {one_line(err)[:300]}")
    io = json.loads((bundle / "configs" / "metadata.json").read_text())["network_data_format"]
    image, pred = io["inputs"]["image"], next(iter(io["outputs"].values()))
    return CheckResult(
        "network in/out",
        True,
        f"input {image['num_channels']} x {image['spatial_shape']} -> {pred['num_channels']} channels, {pred['dtype']}",
    )


def input_shape(bundle: Path, overrides: dict | None = None) -> list[int]:
    """Batch 1 at the metadata's input (channels, spatial shape), or at the ``modalities`` and
    ``spatial_size`` the overrides set."""
    overrides = overrides or {}
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]
    channels = len(overrides["modalities"]) if "modalities" in overrides else int(image["num_channels"])
    size = overrides.get("spatial_size", image["spatial_shape"])
    size = [size] * 3 if isinstance(size, int) else size
    return [1, channels, *(int(s) for s in size)]


def export_torchscript(bundle: Path, filepath: Path, ckpt_file: Path, overrides: dict | None = None) -> bool:
    """``monai.bundle.ckpt_export`` of ``network_def``, traced at the metadata's shape when the bundle's
    ``inference.json`` sets ``torchscript_use_trace``, scripted otherwise; returns whether it traced.

    torch.jit.trace's own re-run check is off: callers compare the export with eager on another input.
    """
    from monai.bundle import ckpt_export

    overrides = dict(overrides or {})
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    use_trace = bool(overrides.get(TRACE_FLAG, config.get(TRACE_FLAG, False)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt_export(
            net_id="network_def",
            filepath=str(filepath),
            ckpt_file=str(ckpt_file),
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            use_trace=use_trace,
            input_shape=input_shape(bundle, overrides) if use_trace else None,
            converter_kwargs={"check_trace": False} if use_trace else None,
            bundle_root=str(bundle),
            **overrides,
        )
    return use_trace


def check_torchscript(bundle: Path, overrides: dict | None = None, trace: bool | None = None) -> CheckResult:
    """``monai.bundle.ckpt_export``, scripted or (with ``torchscript_use_trace``) traced; reload; compare with eager.

    Shipped weights are used when present, else a fixed random initialisation. The exported module must
    match the eager network within 1e-5 on an input other than the one used for tracing.
    """
    overrides = dict(overrides or {}) | ({} if trace is None else {TRACE_FLAG: trace})
    with bundle_importable(bundle), tempfile.TemporaryDirectory() as tmp:
        parser = _inference_parser(bundle, overrides)
        use_trace = bool(parser.get(TRACE_FLAG, False))
        method = "traced (torchscript_use_trace)" if use_trace else "scripted"
        torch.manual_seed(0)
        try:
            network = parser.get_parsed_content("network_def", lazy=False).eval()
            shipped = bundle / "models" / "model.pt"
            if shipped.is_file():
                network.load_state_dict(torch.load(shipped, map_location="cpu", weights_only=True))
            checkpoint = Path(tmp) / "model.pt"
            torch.save(network.state_dict(), checkpoint)
            exported = Path(tmp) / "model.ts"
            export_torchscript(bundle, exported, checkpoint, overrides)
            extra = {"metadata.json": "", "inference.json": ""}
            reloaded = torch.jit.load(str(exported), map_location="cpu", _extra_files=extra)
            torch.manual_seed(1)
            x = torch.rand(*input_shape(bundle, overrides))
            with torch.no_grad():
                expected = network(x)
                difference = (reloaded(x) - expected).abs().max().item()
                shipped_ts = bundle / "models" / "model.ts"
                if shipped_ts.is_file():  # the zoo also loads a shipped model.ts
                    published = torch.jit.load(str(shipped_ts), map_location="cpu")
                    difference = max(difference, (published(x) - expected).abs().max().item())
                    method += " (+ shipped models/model.ts)"
        except Exception as err:
            hint = (
                ""
                if use_trace
                else (
                    "; the zoo always scripts: a network that cannot be scripted needs exclude_verify_torchscript_list "
                    f"(docs/deployment.md) and {TRACE_FLAG}: true in inference.json"
                )
            )
            return CheckResult("torchscript", False, f"{method} export failed: {one_line(err)[:300]}{hint}")
    if not extra["metadata.json"] or not extra["inference.json"]:
        return CheckResult("torchscript", False, f"{method}: metadata.json / inference.json not embedded")
    if difference > EXPORT_TOLERANCE:
        return CheckResult("torchscript", False, f"{method}: max |exported - eager| = {difference:.2e} > 1e-5")
    return CheckResult("torchscript", True, f"{method}, reloaded, max |exported - eager| = {difference:.1e}")
