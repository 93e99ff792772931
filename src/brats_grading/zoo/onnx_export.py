"""ONNX export of a bundle's network (``monai.bundle.onnx_export``), its settings stored inside, checked against eager.

The batch axis is dynamic, so ONNX Runtime serves any batch size. torch's TorchScript-based exporter is used
(``dynamo=False``): on these networks it gave the same outputs as the dynamo exporter (within 2e-6) and
exported 4-6x faster (ResNet 4 s vs 17 s, Swin 12 s vs 75 s at 32^3 on a 2-core EPYC).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..components.onnx_network import METADATA_KEY, OnnxNetwork
from .runtime_checks import input_shape

__all__ = ["ONNX_ATOL", "ONNX_RTOL", "OnnxExportError", "export_onnx", "onnx_parity"]

#: ONNX Runtime log-odds must equal eager PyTorch's within atol + rtol * |eager| (float32 reordering)
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-4


class OnnxExportError(ValueError):
    """The exported ONNX model does not reproduce the eager network."""


def onnx_parity(network: torch.nn.Module, onnx_file: Path, inputs: torch.Tensor) -> float:
    """The largest |ONNX Runtime - eager| logit on ``inputs``; raises when above the tolerance."""
    with torch.no_grad():
        eager = network.eval()(inputs)
    served = OnnxNetwork(onnx_file)(inputs)
    gap = float((served - eager).abs().max())
    if not torch.allclose(served, eager, atol=ONNX_ATOL, rtol=ONNX_RTOL):
        raise OnnxExportError(
            f"{onnx_file}: ONNX Runtime logits differ from eager PyTorch by {gap:.2e} (tolerance {ONNX_ATOL} + "
            f"{ONNX_RTOL} x |logit|)"
        )
    return gap


def export_onnx(bundle: Path, filepath: Path, ckpt_file: Path, stored: dict, overrides: dict | None = None) -> dict:
    """Export ``network_def`` with the weights of ``ckpt_file`` to ``filepath``; store ``stored`` (network
    settings, operating point) in its metadata; check it against eager on a batch of two. Returns the check."""
    import onnx
    from monai.bundle import ConfigParser, onnx_export

    overrides = dict(overrides or {})
    shape = input_shape(bundle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_export(
            net_id="network_def",
            filepath=str(filepath),
            ckpt_file=str(ckpt_file),
            meta_file=str(bundle / "configs" / "metadata.json"),
            config_file=str(bundle / "configs" / "inference.json"),
            use_trace=True,
            input_shape=shape,
            converter_kwargs={
                "input_names": ["image"],
                "output_names": ["logits"],
                "dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}},
                "dynamo": False,
            },
            bundle_root=str(bundle),
            **overrides,
        )
    model = onnx.load(str(filepath))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(stored)
    onnx.save(model, str(filepath))
    parser = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
    parser.update({"bundle_root": str(bundle), **overrides})
    network = parser.get_parsed_content("network_def", lazy=False)
    network.load_state_dict(torch.load(ckpt_file, map_location="cpu", weights_only=True))
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn([2, *shape[1:]], generator=generator)
    gap = onnx_parity(network, filepath, inputs)
    return {"max_abs_logit_difference": float(np.float32(gap)), "batch": 2}
