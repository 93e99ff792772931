"""Geometry of a case: the BraTS grid, the subject's similarity warp and where the work happens.

The generator writes on the BraTS/SRI24 grid (240 x 240 x 155 mm, LPS voxel axes), optionally
re-sampled to coarser voxels.  Each case places the MNI152 template on that grid by a random
similarity warp (rotation, scale, shift, mirror) and then restricts all heavy work to a crop
around the warped brain and a box around the tumour; ``_case_frame`` computes that frame once so
the tissue, tumour and rendering steps share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from .template import _Template
    from .tumour import _Tumour

#: BraTS 2018 volumes are 240 x 240 x 155 voxels of 1 mm (SRI24 space).
BRATS_SHAPE_1MM = (240, 240, 155)

# World position (RAS mm) of the BraTS grid point that receives the template's brain centre: the
# middle of the 240 x 240 in-plane field and slice 73 of 155, so the vertex lands near slice 150
# and the inferior brainstem is cut, as in BraTS.
_BRATS_ANCHOR_WORLD = np.array([-119.5, 119.5, 73.0])


def grid_shape(voxel_mm: float = 1.0) -> tuple[int, int, int]:
    """Shape of the BraTS grid at ``voxel_mm``: the 240 x 240 x 155 mm field of view re-sampled."""
    _check_voxel_mm(voxel_mm)
    return tuple(max(1, round(n / voxel_mm)) for n in BRATS_SHAPE_1MM)  # type: ignore[return-value]


def brats_affine(voxel_mm: float = 1.0) -> NDArray[np.float64]:
    """BraTS/SRI24 voxel-to-world affine (LPS voxel axes, y origin 239) scaled to ``voxel_mm``."""
    _check_voxel_mm(voxel_mm)
    v = float(voxel_mm)
    return np.array(
        [[-v, 0.0, 0.0, 0.0], [0.0, -v, 0.0, 239.0], [0.0, 0.0, v, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float64
    )


def _check_voxel_mm(voxel_mm: float) -> None:
    if not (isinstance(voxel_mm, int | float) and math.isfinite(voxel_mm) and 0.5 <= voxel_mm <= 20.0):
        raise ValueError(f"voxel_mm must be a number in [0.5, 20], got {voxel_mm!r}")


def _rotation(angles_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation matrix from three Euler angles (x, then y, then z)."""
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    """Uniformly random 3-D rotation (QR of a Gaussian matrix with sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _axes_mm(lo: NDArray, hi: NDArray, v: float, centre_mm: NDArray) -> tuple[NDArray, ...]:
    return tuple(np.arange(lo[k], hi[k]) * v - centre_mm[k] for k in range(3))


@dataclass
class _Anatomy:
    """Similarity warp MNI -> subject and the tumour centre in MNI space."""

    linear: NDArray[np.float64]  # 3x3: scale * rotation * (mirror), MNI -> BraTS world
    shift: NDArray[np.float64]  # mm
    centre_mni: NDArray[np.float64]


def _draw_anatomy(rng: np.random.Generator, tpl: _Template) -> _Anatomy:
    angles = np.deg2rad(rng.uniform(-4.0, 4.0, size=3))
    scale = rng.uniform(0.92, 1.04)
    shift = rng.uniform(-3.0, 3.0, size=3)
    mirror = rng.random() < 0.5
    linear = scale * _rotation(angles) @ np.diag([-1.0 if mirror else 1.0, 1.0, 1.0])
    centre = tpl.centres_world[rng.integers(len(tpl.centres_world))] + rng.uniform(-1.0, 1.0, size=3)
    return _Anatomy(linear, shift, centre)


@dataclass
class _Frame:
    """Where one case lies on the BraTS grid (all index arrays are grid indices)."""

    shape: NDArray  # full grid shape
    a_brats: NDArray[np.float64]  # grid index -> BraTS world
    to_subject: NDArray[np.float64]  # MNI world -> subject (BraTS) world
    centre_mm: NDArray[np.float64]  # tumour centre in index-millimetres
    support: float  # radius of the mass effect (mm)
    max_push: float  # bound on how far the mass effect moves tissue outside the core (mm)
    lo: NDArray  # crop [lo, hi): the warped brain box plus mass effect and margin
    hi: NDArray
    box: tuple[slice, ...]  # tumour box, relative to the crop
    axes: tuple[NDArray, ...]  # mm of the tumour box's voxels relative to the tumour centre
    crop_axes: tuple[NDArray, ...]  # mm of the crop's voxels relative to the field-of-view centre

    @property
    def crop_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.hi - self.lo)

    @property
    def crop_slices(self) -> tuple[slice, ...]:
        return tuple(slice(int(self.lo[k]), int(self.hi[k])) for k in range(3))


def _to_subject(tpl: _Template, anat: _Anatomy) -> NDArray[np.float64]:
    """4x4 map from MNI world to the subject's BraTS world."""
    # subject world = anchor_b + shift + L (mni world - anchor_mni); invert to pull template values.
    to_subject = np.eye(4)
    to_subject[:3, :3] = anat.linear
    to_subject[:3, 3] = _BRATS_ANCHOR_WORLD + anat.shift - anat.linear @ tpl.anchor_world
    return to_subject


def _case_frame(case_id: str, tpl: _Template, anat: _Anatomy, tumour: _Tumour, v: float) -> _Frame:
    """Grid, warp, tumour centre, brain crop and tumour box of one case at ``v`` mm."""
    shape = np.asarray(grid_shape(v))
    a_brats = brats_affine(v)
    to_subject = _to_subject(tpl, anat)
    world_to_idx = np.linalg.inv(a_brats) @ to_subject

    centre_idx = world_to_idx[:3, :3] @ anat.centre_mni + world_to_idx[:3, 3]
    centre_mm = centre_idx * v  # index-millimetre coordinates (axis-aligned with the grid)
    support = 2.2 * tumour.r_core
    max_push = tumour.mass * 0.35 * support  # bound on |r - r * factor| outside the core

    # Crop: the warped brain bounding box (+ mass effect + margin); all heavy work happens inside.
    corners = np.array(
        [[x, y, z] for x in tpl.bbox_world[:, 0] for y in tpl.bbox_world[:, 1] for z in tpl.bbox_world[:, 2]]
    )
    corner_idx = corners @ world_to_idx[:3, :3].T + world_to_idx[:3, 3]
    margin = 2 + int(math.ceil(max_push / v))
    lo = np.maximum(np.floor(corner_idx.min(axis=0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(corner_idx.max(axis=0)).astype(int) + margin + 1, shape)

    # Tumour box (grid indices), inside the crop.
    b_lo = np.maximum(np.floor((centre_mm - tumour.half_box) / v).astype(int), lo)
    b_hi = np.minimum(np.ceil((centre_mm + tumour.half_box) / v).astype(int) + 1, hi)
    if np.any(b_hi <= b_lo):  # pragma: no cover - centres are deep inside the brain
        raise RuntimeError(f"{case_id}: tumour centre fell outside the grid")
    box = tuple(slice(int(b_lo[k] - lo[k]), int(b_hi[k] - lo[k])) for k in range(3))
    axes = _axes_mm(b_lo, b_hi, v, centre_mm)
    crop_axes = _axes_mm(lo, hi, v, np.asarray(BRATS_SHAPE_1MM, dtype=float) / 2.0)
    return _Frame(shape, a_brats, to_subject, centre_mm, support, max_push, lo, hi, box, axes, crop_axes)
