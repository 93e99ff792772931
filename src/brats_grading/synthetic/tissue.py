"""Normal tissue of a case: the template pulled onto the BraTS grid, with the tumour's mass effect.

The brain fraction and grey/white-matter maps of the (block-averaged) MNI152 template are
interpolated through the case's similarity warp, only on voxels near the brain because this
pull-back dominates the cost of a case, and turned into CSF/GM/WM partial-volume fractions for
the intensity model and for the tumour's oedema rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .geometry import _Frame
from .template import _Template, _template


def _mass_factor(rho: NDArray[np.float32], mass: float, support: float) -> NDArray[np.float32]:
    """Radial source-position factor of the mass effect: 1 - m (1 - (r/R)^2)^3 inside R.

    The mapping r -> r * factor is monotone for m < 1, so tissue is pushed outwards without folding.
    """
    u2 = np.minimum((rho / support) ** 2, 1.0)
    return (1.0 - mass * (1.0 - u2) ** 3).astype(np.float32)


def _idx_to_template(tpl: _Template, to_subject: NDArray, a_brats: NDArray) -> NDArray[np.float64]:
    """4x4 map from BraTS grid index to template voxel index (pull-back of the similarity warp)."""
    return np.linalg.inv(tpl.vox2world) @ np.linalg.inv(to_subject) @ a_brats


def _warp_tissues(
    tpl: _Template,
    to_subject: NDArray[np.float64],
    a_brats: NDArray[np.float64],
    lo: NDArray,
    hi: NDArray,
    v: float,
    centre_mm: NDArray[np.float64],
    mass: float,
    support: float,
    max_push: float,
) -> dict[str, NDArray[np.float32]]:
    """Brain fraction, GM and WM maps on the crop ``[lo, hi)`` of the BraTS grid.

    Only voxels that can touch the brain are interpolated (order 1): below 2 mm a coarse pass at
    twice the voxel size finds them, which skips most of the background of the bounding box (the
    interpolation dominates the cost of a case).  The mass effect is folded into the same sampling
    positions: within ``support`` of the tumour centre every voxel samples the template closer to
    the centre, so surrounding tissue appears pushed outwards.
    """
    crop_shape = tuple(int(n) for n in hi - lo)
    if v < 2.0:
        f = 2
        coarse_tpl = _template(f)
        m4 = _idx_to_template(coarse_tpl, to_subject, a_brats)
        c_shape = tuple(int(math.ceil(n / f)) for n in crop_shape)
        c_matrix = m4[:3, :3] * f
        c_offset = m4[:3, 3] + m4[:3, :3] @ (lo + (f - 1) / 2.0)
        coarse = ndimage.affine_transform(
            coarse_tpl.mask, c_matrix, offset=c_offset, output_shape=c_shape, order=1, mode="constant",
            cval=0.0, output=np.float32,
        ) > 1e-3  # fmt: skip
        coarse = ndimage.binary_dilation(coarse, iterations=1 + int(math.ceil(max_push / (f * v))))
        for axis in range(3):
            coarse = np.repeat(coarse, f, axis=axis)
        candidates = np.ascontiguousarray(coarse[: crop_shape[0], : crop_shape[1], : crop_shape[2]])
        pts = np.nonzero(candidates)
    else:
        candidates = None
        pts = tuple(g.ravel() for g in np.meshgrid(*[np.arange(n) for n in crop_shape], indexing="ij", copy=True))
    # Grid-index millimetres of each sampled voxel, then the mass-effect source position.
    pos = np.stack([(pts[k] + lo[k]).astype(np.float64) * v for k in range(3)])
    if mass > 0:
        rel = pos - centre_mm[:, None]
        rho = np.sqrt((rel**2).sum(axis=0))
        near = rho < support
        pos[:, near] = centre_mm[:, None] + rel[:, near] * _mass_factor(rho[near], mass, support)
        del rel, rho, near
    m = _idx_to_template(tpl, to_subject, a_brats)
    coords = m[:3, :3] @ (pos / v) + m[:3, 3:4]
    del pos
    out = {}
    for key in ("mask", "gm", "wm"):
        vals = ndimage.map_coordinates(getattr(tpl, key), coords, order=1, mode="constant", cval=0.0, output=np.float32)
        if candidates is None:
            out[key] = vals.reshape(crop_shape)
        else:
            full = np.zeros(crop_shape, dtype=np.float32)
            full[candidates] = vals
            out[key] = full
    return out


def _fractions(
    mask: NDArray[np.float32], gm: NDArray[np.float32], wm: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """GM/WM/CSF fractions of the brain part of each voxel; CSF = brain - GM - WM."""
    safe = np.maximum(mask, np.float32(1e-3))
    g = gm / safe
    w = wm / safe
    over = g + w
    scale = np.where(over > 1.0, 1.0 / np.maximum(over, np.float32(1e-6)), np.float32(1.0)).astype(np.float32)
    g *= scale
    w *= scale
    csf = np.maximum(1.0 - g - w, 0.0).astype(np.float32)
    return g.astype(np.float32), w.astype(np.float32), csf


@dataclass
class _Tissue:
    """CSF/GM/WM fractions on the brain voxels of the crop and on the tumour box."""

    flat: NDArray[np.intp]  # flat crop indices of the brain voxels
    gm: NDArray[np.float32]  # fractions per brain voxel, in the order of ``flat``
    wm: NDArray[np.float32]
    csf: NDArray[np.float32]
    box_brain: NDArray[np.bool_]  # brain voxels of the tumour box
    box_wm: NDArray[np.float32]  # box fractions, zero outside the brain
    box_csf: NDArray[np.float32]
    box_ids: NDArray[np.int64]  # positions in the brain vectors of the box's brain voxels


def _brain_tissue(maps: dict[str, NDArray[np.float32]], box: tuple[slice, ...]) -> _Tissue:
    """Tissue fractions on brain voxels only (flat vectors) and, for the tumour, on its box."""
    brain = maps["mask"] > 0.5
    flat = np.flatnonzero(brain)
    gm_v, wm_v, csf_v = _fractions(*(maps[k].ravel()[flat] for k in ("mask", "gm", "wm")))
    b_brain = brain[box]
    b_gm, b_wm, b_csf = _fractions(*(maps[k][box] for k in ("mask", "gm", "wm")))
    b_gm[~b_brain] = b_wm[~b_brain] = b_csf[~b_brain] = 0.0
    lut = np.full(brain.shape, -1, dtype=np.int64)
    lut.ravel()[flat] = np.arange(len(flat))
    box_ids = lut[box][b_brain]
    return _Tissue(flat, gm_v, wm_v, csf_v, b_brain, b_wm, b_csf, box_ids)


def _normal_tissue(tpl: _Template, frame: _Frame, mass: float, v: float) -> _Tissue:
    """Warp the template onto the case's crop (with the tumour's mass effect) and reduce it to fractions.

    The warped maps are dropped on return; only the brain-voxel fractions are kept.
    """
    maps = _warp_tissues(
        tpl,
        frame.to_subject,
        frame.a_brats,
        frame.lo,
        frame.hi,
        v,
        frame.centre_mm,
        mass,
        frame.support,
        frame.max_push,
    )
    return _brain_tissue(maps, frame.box)
