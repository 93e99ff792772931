"""Grad-CAM saliency of the predicted (or a chosen) class, per case, as NIfTI in the input image's space.

MONAI's ``GradCAM`` gives the map on the network's input grid (after orientation, brain crop and resize);
inverting the inference preprocessing (``Compose.inverse`` with the operations recorded for the case) puts it
back on the voxel grid of the case's first modality file, with that file's affine, so it overlays the MRI in
any viewer. The preprocessing must be built with ``keep_meta=True`` (see ``..preprocessing``).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.transforms import Compose, InvertibleTransform, SaveImage
from monai.utils import PostFix
from monai.visualize import GradCAM
from torch import nn

from ..datasets import FAILURE_KEY
from ..outputs import unused_path
from .engine_outputs import batch_ids
from .failures import BatchInferenceError

__all__ = ["SaliencySaver"]

logger = logging.getLogger(__name__)

SUFFIX = "_saliency"
EXTENSION = ".nii.gz"


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM post-processing: keep the raw (non-negative) values; MONAI's default rescales them to (1, 0)."""
    return x


class SaliencySaver:
    """Write ``<output_dir>/<case id>_saliency.nii.gz`` per case: Grad-CAM of one class, in the input image's space.

    For every case of an iteration the network runs once more, in float32 and with gradients enabled
    (the evaluator's forward runs under ``torch.no_grad``), and ``monai.visualize.GradCAM`` computes the
    map at ``target_layer`` for ``class_index``, upsampled to the network's input grid. The map is then
    mapped back through the invertible preprocessing (resize, brain crop, RAS orientation) to the shape
    and affine of the case's first modality file and saved with MONAI's ``SaveImage`` (``resample=False``)
    as float32. Values are the raw Grad-CAM (ReLU of the gradient-weighted activations, zero outside the
    brain's bounding box): non-negative, comparable between cases of one model, in arbitrary units.

    Grad-CAM is coarse: it has the resolution of ``target_layer`` (ResNet ``layer4``: 1/8 of the input in
    the MedicalNet layout; Swin ``swinViT.layers4.0``: 1/32), smoothly upsampled. An existing file is never
    overwritten: ``<id>_saliency_1.nii.gz``, ``_2``... are written instead.

    The weights are the network's own (pass the evaluator's network); parameters are frozen while the map
    is computed (the input carries the gradient) and restored afterwards.

    Args:
        network: the network the evaluator runs (the same object, so the loaded checkpoint is used).
        transform: the inference preprocessing (``Compose`` or list of transforms) built with
            ``keep_meta=True``, so each case carries ``<image_key>_meta_dict`` and ``<image_key>_transforms``.
        output_dir: folder for the NIfTI files (created if missing).
        target_layer: name (as in ``network.named_modules()``) of the module whose output is the map, a
            channel-first ``(B, C, D, H, W)`` tensor, e.g. ``"layer4"`` (ResNet) or ``"swinViT.layers4.0"``.
            A container (``ModuleList``) is never called itself, so it cannot be the target.
        class_index: the logit the map explains: None (default) the predicted class, so every case shows
            where the model looked for its decision (a map of HGG is zero where the model sees only LGG
            evidence); 1 = HGG, 0 = LGG.
        image_key: the key of the image in the batch.
    """

    def __init__(
        self,
        network: nn.Module,
        transform: Compose | Sequence,
        output_dir: str,
        target_layer: str,
        class_index: int | None = None,
        image_key: str = "image",
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        transform = transform if isinstance(transform, Compose) else Compose(list(transform))
        if not transform.flatten().transforms:
            raise ValueError("transform is empty: pass the inference preprocessing (keep_meta=True)")
        modules = dict(network.named_modules())
        if not target_layer or target_layer not in modules:
            candidates = [n for n, m in modules.items() if n and n.count(".") <= 2 and list(m.children())]
            raise ValueError(
                f"target_layer '{target_layer}' is not a module of {type(network).__name__}; "
                f"modules with children include {candidates[:30]}"
            )
        if isinstance(modules[target_layer], (nn.ModuleList, nn.ModuleDict)):
            raise ValueError(
                f"target_layer '{target_layer}' is a {type(modules[target_layer]).__name__}, which is never called "
                f"itself (no output to hook); use one of its items, e.g. '{target_layer}.0'"
            )
        if class_index is not None and (int(class_index) != class_index or class_index < 0):
            raise ValueError(
                f"class_index must be None (the predicted class) or a non-negative int, got {class_index!r}"
            )
        if not output_dir:
            raise ValueError("output_dir must be a folder path, got an empty value")
        self.network = network
        self.transform = transform
        self.output_dir = Path(output_dir)
        self.target_layer = target_layer
        self.class_index = None if class_index is None else int(class_index)
        self.image_key = image_key
        self.meta_key = PostFix.meta(image_key)
        self.transforms_key = InvertibleTransform.trace_key(image_key)
        self.cam = GradCAM(nn_module=network, target_layers=target_layer, postprocessing=_unchanged)
        self.saver = SaveImage(
            output_dir=str(self.output_dir),
            output_postfix="",
            output_ext=EXTENSION,
            output_dtype=np.float32,
            resample=False,
            separate_folder=False,
            print_log=False,
        )
        self.saved: list[Path] = []
        self.failed: dict[str, str] = {}
        self._warned_single_voxel = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._report)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        cases = batch if isinstance(batch, list) else decollate_batch(batch, detach=True)
        for case_id, case in zip(batch_ids(engine), cases, strict=True):
            if case.get(FAILURE_KEY):
                continue  # not prepared: the prediction writer reports it
            try:
                self.saved.append(self.save_case(case_id, case))
            except Exception as err:  # one case's map must not cost the others theirs
                self.failed[case_id] = f"case '{case_id}': saliency failed ({type(err).__name__}: {err})"
                logger.error(self.failed[case_id])

    def _report(self, _engine: Engine) -> None:
        logger.info(f"wrote {len(self.saved)} Grad-CAM maps ({self.target_layer}) to {self.output_dir}")
        if self.failed:
            first = next(iter(self.failed.values()))
            raise BatchInferenceError(f"{len(self.failed)} saliency maps could not be written (first: {first})")

    def compute(self, image: torch.Tensor) -> torch.Tensor:
        """Grad-CAM of one preprocessed image ``(C, *spatial)``: a non-negative ``(1, *spatial)`` CPU tensor."""
        parameters = list(self.network.parameters())
        device = parameters[0].device if parameters else torch.device("cpu")
        requires_grad = [p.requires_grad for p in parameters]
        hooks = self.cam.nn_module
        try:
            for p in parameters:
                p.requires_grad_(False)
            with torch.inference_mode(False), torch.enable_grad():
                x = image.detach().clone().to(device=device, dtype=torch.float32).unsqueeze(0)
                x.requires_grad_(True)
                try:
                    cam = self.cam(x, class_idx=self.class_index)
                except KeyError as err:
                    raise RuntimeError(
                        f"target_layer '{self.target_layer}' did not run in the forward pass; pick a module "
                        "the network calls"
                    ) from err
                self._check_activation(hooks.activations[self.target_layer])
            return cam.detach()[0].float().clamp_min(0).cpu()
        finally:
            for p, flag in zip(parameters, requires_grad, strict=True):
                p.requires_grad_(flag)
            hooks.activations.clear()
            hooks.gradients.clear()
            hooks.score = None

    def _check_activation(self, activation: torch.Tensor) -> None:
        if activation.ndim != 5:
            raise ValueError(
                f"target_layer '{self.target_layer}' outputs shape {tuple(activation.shape)}; Grad-CAM needs a "
                "channel-first (B, C, D, H, W) map"
            )
        if activation.shape[2:].numel() == 1 and not self._warned_single_voxel:
            self._warned_single_voxel = True
            logger.warning(
                f"Grad-CAM at '{self.target_layer}' is a single voxel at this input size: every map is constant "
                "over the brain's bounding box. Use a larger spatial_size or an earlier layer."
            )

    def to_input_space(self, saliency: torch.Tensor, case: dict):
        """Invert the preprocessing on a ``(1, *spatial)`` map of the network's grid -> MetaTensor in file space."""
        missing = [k for k in (self.meta_key, self.transforms_key) if k not in case]
        if missing:
            raise ValueError(
                f"the batch has no {missing}: build the inference preprocessing with "
                "preprocessing_transforms(..., keep_meta=True) to map saliency back to the input image"
            )
        data = {
            self.image_key: saliency,
            self.meta_key: copy.deepcopy(case[self.meta_key]),
            self.transforms_key: copy.deepcopy(case[self.transforms_key]),
        }
        inverted = self.transform.inverse(data)[self.image_key]
        return inverted.float().clamp_min(0)

    def output_path(self, case_id: str) -> Path:
        """``<output_dir>/<case_id>_saliency.nii.gz``, or the first ``_<n>`` variant that does not exist yet.

        Path separators and other characters a file name cannot hold become ``_`` (an id ``a/b`` -> ``a_b``).
        """
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(case_id)).lstrip(".") or "case"
        return unused_path(self.output_dir / f"{name}{SUFFIX}{EXTENSION}", suffix=EXTENSION)

    def save_case(self, case_id: str, case: dict) -> Path:
        """Compute, invert and write the map of one decollated case; return the file written."""
        if self.image_key not in case:
            raise KeyError(f"case '{case_id}' has no '{self.image_key}' in the batch")
        saliency = self.to_input_space(self.compute(case[self.image_key]), case)
        if not torch.isfinite(saliency).all():
            logger.warning(f"case '{case_id}': the Grad-CAM map has non-finite values")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_path(case_id)
        self.saver(saliency, filename=str(path)[: -len(EXTENSION)])
        if not path.is_file():
            raise RuntimeError(f"case '{case_id}': SaveImage did not write {path}")
        logger.debug(f"case '{case_id}': saliency written to {path}")
        return path
