"""MONAI Deploy application: grade one BraTS case (HGG vs LGG) with an exported bundle's ``models/model.ts``.

    python -m brats_grading.deploy -i CASE -o OUTPUT_DIR -m BUNDLE/models/model.ts

``CASE`` is a BraTS case folder (``<id>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair``) or one 4-D NIfTI
with the modalities last. The bundle's own preprocessing, inferer and postprocessing (softmax at the
calibrated temperature) come from the ``inference.json`` embedded in ``model.ts`` and run inside MONAI
Deploy's ``MonaiBundleInferenceOperator``; ``OUTPUT_DIR/result.json`` gets
``{"result": "HGG"|"LGG", "probabilities": {"LGG": p, "HGG": p}, "threshold": t}``.
The bundle folder around ``model.ts`` must hold its ``scripts/`` package (the transforms it names).
Pass ``-m`` explicitly: MONAI Deploy reads a ``models/`` folder in the working directory otherwise.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.deploy.conditions import CountCondition
from monai.deploy.core import AppContext, Application, IOType, Operator, OperatorSpec
from monai.deploy.operators.monai_bundle_inference_operator import IOMapping, MonaiBundleInferenceOperator

from .case_io import grade_result, read_case, write_result

__all__ = ["GradingApp", "embedded_configs"]


def embedded_configs(model_ts: str | Path) -> tuple[dict, dict]:
    """``(inference.json, metadata.json)`` stored in a ``ckpt_export`` TorchScript archive, read without loading it."""
    found = {}
    with zipfile.ZipFile(model_ts) as archive:
        for name in archive.namelist():
            leaf = name.rsplit("/", 1)[-1]
            if "/extra/" in name and leaf in ("inference.json", "metadata.json"):
                found[leaf] = json.loads(archive.read(name))
    missing = {"inference.json", "metadata.json"} - set(found)
    if missing:
        raise ValueError(f"{model_ts}: no embedded {sorted(missing)}; export it with scripts/export_bundle.py")
    return found["inference.json"], found["metadata.json"]


class CaseLoaderOperator(Operator):
    """Emit the case as a channel-last RAS array, the input the bundle operator expects."""

    def __init__(self, fragment, *args, case_path: Path, modalities: list[str], **kwargs) -> None:
        self.case_path, self.modalities = Path(case_path), list(modalities)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("image")

    def compute(self, op_input, op_output, context) -> None:
        op_output.emit(read_case(self.case_path, self.modalities), "image")


class BundleGradingOperator(MonaiBundleInferenceOperator):
    """The SDK's bundle operator, given back a ``MetaTensor`` after the bundle's preprocessing.

    The bundles end their preprocessing with plain tensors (metadata is not needed to grade), while the
    operator reads ``.meta`` of the preprocessed image to pass it on with the prediction.
    """

    def pre_process(self, data: Any, *args, **kwargs) -> Any:
        from monai.data import MetaTensor

        processed = super().pre_process(data, *args, **kwargs)
        return {
            k: v if isinstance(v, MetaTensor) or not torch.is_tensor(v) else MetaTensor(v) for k, v in processed.items()
        }


class GradeWriterOperator(Operator):
    """Write ``result.json`` from the postprocessed class probabilities."""

    def __init__(self, fragment, *args, output_dir: Path, class_names: dict, threshold: float, **kwargs) -> None:
        self.output_dir, self.class_names, self.threshold = Path(output_dir), class_names, threshold
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("pred")

    def compute(self, op_input, op_output, context) -> None:
        probabilities = np.asarray(op_input.receive("pred"))
        write_result(grade_result(probabilities, self.class_names, self.threshold), self.output_dir)


class GradingApp(Application):
    """Case loader -> MonaiBundleInferenceOperator (the bundle's transforms and network) -> grade writer."""

    def compose(self) -> None:
        context: AppContext = Application.init_app_context(self.argv)
        model = Path(context.model_path)
        if not model.is_file():
            raise FileNotFoundError(f"-m must name an exported bundle's models/model.ts, got '{model}'")
        bundle_dir = model.resolve().parent.parent
        if (bundle_dir / "scripts").is_dir() and str(bundle_dir) not in sys.path:
            sys.path.insert(0, str(bundle_dir))  # the transforms the embedded config names live there
        inference, metadata = embedded_configs(model)
        point = inference.get("operating_point")
        threshold = float(point["threshold"]) if isinstance(point, dict) else 0.5
        output = metadata["network_data_format"]["outputs"]["pred"]
        loader = CaseLoaderOperator(
            self, CountCondition(self, 1), case_path=Path(context.input_path), modalities=inference["modalities"],
            name="case_loader",
        )  # fmt: skip
        grader = BundleGradingOperator(
            self,
            app_context=context,
            input_mapping=[IOMapping("image", np.ndarray, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Any, IOType.IN_MEMORY)],
            bundle_path=str(model),
            name="bundle_inference",
        )
        writer = GradeWriterOperator(
            self, output_dir=Path(context.output_path), class_names=output["channel_def"], threshold=threshold,
            name="grade_writer",
        )  # fmt: skip
        self.add_flow(loader, grader, {("image", "image")})
        self.add_flow(grader, writer, {("pred", "pred")})


def main(argv: list[str] | None = None) -> None:
    """Run the app; ``argv`` as on the command line (``-i``, ``-o``, ``-m``), without the program name.

    The application's argv starts with the interpreter and the program, as ``python app.py ...`` gives it.
    """
    GradingApp([sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]).run()
