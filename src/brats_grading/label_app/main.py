"""A MONAI Label app serving a grading bundle's classification infer task on stacked 4-channel volumes.

    monailabel start_server --app src/brats_grading/label_app --studies STUDIES \\
        --conf bundle /path/to/resnet50_3d_ldam [--conf model_name glioma_grade]

``STUDIES`` is a folder of 4-D NIfTI files, each one case with the bundle's modalities stacked last
(t1, t1ce, t2, flair). ``POST /infer/glioma_grade?image=<file name without .nii.gz>`` returns the
class probabilities (HGG, LGG). The stock ``monaibundle`` app cannot serve a classifier: it always
appends a ``Restored`` step that resizes the prediction to the image. Here the bundle task is created
as a classification task with that step off. Weights: the bundle's ``models/model.pt`` (or ``model.ts``).
"""

from __future__ import annotations

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_torchvision import ensure_torchvision  # noqa: E402

ensure_torchvision()  # before MONAI Label imports it

from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402

logger = logging.getLogger(__name__)


def grading_task(bundle_path: str, conf: dict) -> BundleInferTask:
    """The bundle's ``inference.json`` (preprocessing, inferer, postprocessing) as a classification task."""
    return BundleInferTask(bundle_path, conf, type=InferType.CLASSIFICATION, add_post_restore=False, load_strict=True)


class MyApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict) -> None:
        bundle = conf.get("bundle")
        if not bundle or not os.path.isdir(os.path.join(bundle, "configs")):
            raise ValueError(f"--conf bundle must name a bundle folder (with configs/), got {bundle!r}")
        self.bundle = os.path.abspath(bundle)
        self.model_name = conf.get("model_name", "glioma_grade")
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="BraTS glioma grading",
                         description="HGG vs LGG from a stacked T1/T1ce/T2/FLAIR volume")  # fmt: skip

    def init_infers(self):
        return {self.model_name: grading_task(self.bundle, self.conf)}

    def init_trainers(self):
        return {}
