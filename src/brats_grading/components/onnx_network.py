"""An exported ONNX model run by ONNX Runtime behind the ``torch.nn.Module`` interface the engines call.

``inference.json`` with ``use_onnx`` true puts :class:`OnnxNetwork` where the PyTorch network was, so the
same evaluator, inferer and handlers serve it; ONNX Runtime is the usual CPU serving path. The export
(``scripts/export_bundle.py --onnx True``) stores the network settings and the operating point in the
file's metadata, which :func:`check_onnx_model` compares with the config before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["METADATA_KEY", "OnnxModelError", "OnnxNetwork", "check_onnx_model", "onnx_metadata"]

#: the ONNX metadata entry holding ``{"network": settings, "operating_point": {...}}``
METADATA_KEY = "bundle_model"


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable, or not the network this config describes."""


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError(
            "use_onnx True needs onnxruntime: pip install onnxruntime (or the package's .[onnx] extra)"
        ) from None
    return onnxruntime


def _session(onnx_file: str | Path, device: torch.device | str = "cpu"):
    runtime = _runtime()
    path = Path(onnx_file)
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist: export one with scripts/export_bundle.py --onnx True")
    options = runtime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the run's cpu_threads, as for the PyTorch network
    cuda = torch.device(device).type == "cuda" and "CUDAExecutionProvider" in runtime.get_available_providers()
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    try:
        return runtime.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for a damaged file
        raise OnnxModelError(f"ONNX model {path} cannot be loaded: {str(err).splitlines()[0]}") from None


def onnx_metadata(onnx_file: str | Path) -> dict:
    """The settings the export stored in the file (``{}`` for an ONNX file from elsewhere)."""
    meta = _session(onnx_file).get_modelmeta().custom_metadata_map
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


class OnnxNetwork(torch.nn.Module):
    """Logits from an ONNX file: ``forward(image)`` feeds the file's single input and returns its first output."""

    def __init__(self, onnx_file: str | Path, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.onnx_file = str(onnx_file)
        self.session = _session(onnx_file, device)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(image.detach().float().cpu().numpy())  # channels-last tensors have other strides
        outputs = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(outputs[0]).to(image.device)


def check_onnx_model(onnx_file: str | Path, settings: dict | None = None, saliency: bool = False) -> str:
    """Refuse an ONNX run that could only go wrong later: no file, Grad-CAM asked for (it needs the PyTorch
    network's gradients), or a file exported from a network other than the one this config describes."""
    if saliency:
        raise OnnxModelError("saliency needs the PyTorch network (Grad-CAM uses its gradients): pass --use_onnx False")
    stored = onnx_metadata(onnx_file).get("network")
    for name, value in (settings or {}).items():
        if isinstance(stored, dict) and name in stored and json.dumps(stored[name]) != json.dumps(value, default=str):
            raise OnnxModelError(
                f"ONNX model {onnx_file} was exported with {name} {json.dumps(stored[name])} but this config builds "
                f"{name} {json.dumps(value, default=str)}: pass --{name} '{json.dumps(stored[name])}'"
            )
    return str(onnx_file)
