"""Synthetic BraTS 2018-style training data built on real MNI152 anatomy.

Why this exists: the real BraTS 2018 data cannot be redistributed, yet the bundles, their tests and
CI need data with the same on-disk layout, geometry and (coarsely) the same radiological grade cues.
Each case is the MNI152 2009 template (T1 brain mask plus grey/white-matter probability maps shipped
inside the nilearn wheel) under a random similarity warp, with a procedurally grown tumour whose
phenotype depends on the grade, rendered into four MR contrasts with partial-volume mixing, a smooth
bias field, per-case gains and Rician noise.  ``docs/synthetic_data.md`` describes the model, its
limits and measured costs.

Every case is a pure function of ``(seed, case_id, grade, difficulty, voxel_mm)`` so that parallel
generation equals serial generation and reruns are byte-identical.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import gzip
import hashlib
import importlib.util
import io
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "DATASET_DIRNAME",
    "MODALITIES",
    "MNI152_NOTICE",
    "assign_grades",
    "brats_affine",
    "format_case_id",
    "generate_case",
    "generate_dataset",
    "grid_shape",
    "survival_record",
]

logger = logging.getLogger(__name__)

DATASET_DIRNAME = "MICCAI_BraTS_2018_Data_Training"
MODALITIES = ("t1", "t1ce", "t2", "flair")
GRADES = ("HGG", "LGG")
SEG_LABELS = (0, 1, 2, 4)
SURVIVAL_FILENAME = "survival_data.csv"
SURVIVAL_HEADER = ("BraTS18ID", "Age", "Survival", "ResectionStatus")
NOTICE_FILENAME = "MNI152_NOTICE.txt"
#: BraTS 2018 volumes are 240 x 240 x 155 voxels of 1 mm (SRI24 space).
BRATS_SHAPE_1MM = (240, 240, 155)
#: Cases are numbered 1..N with four digits, so at most 9999 cases fit the naming scheme.
MAX_CASES = 9999
#: gzip level 6 is about twice as fast as 9 for ~1 % larger files (see docs/synthetic_data.md).
GZIP_LEVEL = 6

MNI152_NOTICE = """\
MNI ICBM152 non-linear symmetric 2009 (version a) template
==========================================================

The synthetic BraTS-style volumes in this dataset are derived from the MNI ICBM152 2009a
non-linear symmetric T1 template and its grey-matter / white-matter probability maps
(files mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz as shipped with nilearn),
produced by the McConnell Brain Imaging Centre, Montreal Neurological Institute,
McGill University.

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
Neurological Institute, McGill University. Permission to use, copy, modify, and
distribute this software and its documentation for any purpose and without fee is
hereby granted, provided that the above copyright notice appear in all copies. The
authors and McGill University make no representations about the suitability of this
software for any purpose. It is provided "as is" without express or implied warranty.
The authors are not responsible for any data loss, equipment damage, property loss,
or injury to subjects or patients resulting from the use or misuse of this software
package.

References:
  VS Fonov, AC Evans, RC McKinstry, CR Almli, DL Collins. Unbiased nonlinear average
  age-appropriate brain templates from birth to adulthood. NeuroImage 47 (2009) S102.
  VS Fonov, AC Evans, K Botteron, CR Almli, RC McKinstry, DL Collins. Unbiased average
  age-appropriate atlases for pediatric studies. NeuroImage 54(1) (2011) 313-327.
  http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009
"""

_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# World position (RAS mm) of the BraTS grid point that receives the template's brain centre: the
# middle of the 240 x 240 in-plane field and slice 73 of 155, so the vertex lands near slice 150
# and the inferior brainstem is cut, as in BraTS.
_BRATS_ANCHOR_WORLD = np.array([-119.5, 119.5, 73.0])

# Tissue classes of the intensity model, in this order everywhere.
_CLASSES = ("csf", "gm", "wm", "edema", "net", "nec", "enh")
# Relative signal per modality and class (white matter = 1).  Values follow the usual clinical
# appearance: CSF dark on T1/FLAIR and very bright on T2, GM darker than WM on T1 and brighter on
# T2/FLAIR, oedema and non-enhancing tumour T2/FLAIR bright and T1 dark, necrosis T2 bright with
# partially suppressed FLAIR, enhancing tumour bright on T1ce only (its T1ce value is set per case).
_BASE_CONTRAST = {
    #         csf   gm    wm    edema net   nec   enh
    "t1": (0.30, 0.72, 1.00, 0.70, 0.58, 0.38, 0.70),
    "t1ce": (0.32, 0.74, 1.00, 0.72, 0.60, 0.38, 1.00),
    "t2": (2.40, 1.35, 1.00, 1.90, 2.00, 2.30, 1.55),
    "flair": (0.35, 1.20, 1.00, 1.75, 1.80, 1.10, 1.45),
}
# Per-modality scale of white matter in the written integers (log-uniform range): real BraTS
# intensities are unnormalised and vary a lot between sites.
_GAIN_RANGE = {"t1": (300.0, 1500.0), "t1ce": (300.0, 1500.0), "t2": (200.0, 900.0), "flair": (150.0, 700.0)}
# Sign with which the shared tumour texture field enters each modality (more water: T1 down, T2 up).
_TEXTURE_SIGN = {"t1": -1.0, "t1ce": -1.0, "t2": 1.0, "flair": 1.0}


# --------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------


def grid_shape(voxel_mm: float = 1.0) -> tuple[int, int, int]:
    """Shape of the BraTS grid at ``voxel_mm``: the 240 x 240 x 155 mm field of view re-sampled."""
    _check_voxel_mm(voxel_mm)
    return tuple(max(1, round(n / voxel_mm)) for n in BRATS_SHAPE_1MM)  # type: ignore[return-value]


def brats_affine(voxel_mm: float = 1.0) -> NDArray[np.float64]:
    """BraTS/SRI24 voxel-to-world affine (LPS voxel axes, y origin 239) scaled to ``voxel_mm``."""
    _check_voxel_mm(voxel_mm)
    v = float(voxel_mm)
    return np.array(
        [[-v, 0.0, 0.0, 0.0], [0.0, -v, 0.0, 239.0], [0.0, 0.0, v, 0.0], [0.0, 0.0, 0.0, 1.0]],
        dtype=np.float64,
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


# --------------------------------------------------------------------------------------------------
# Smooth random fields (cubic B-splines on a millimetre lattice)
# --------------------------------------------------------------------------------------------------


def _bspline_matrix(x_mm: NDArray[np.float64], start_mm: float, step_mm: float, n_nodes: int) -> NDArray:
    """Rows of cubic B-spline weights of the lattice nodes for positions ``x_mm``.

    Rows are L2-normalised so that i.i.d. unit-normal node values give a unit-variance field at
    every position, whatever the voxel size.
    """
    t = (np.asarray(x_mm, dtype=np.float64) - start_mm) / step_mm
    i = np.floor(t).astype(np.int64)
    f = t - i
    w = np.stack(
        [
            (1 - f) ** 3 / 6,
            (3 * f**3 - 6 * f**2 + 4) / 6,
            (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
            f**3 / 6,
        ],
        axis=1,
    )
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    mat = np.zeros((len(t), n_nodes), dtype=np.float64)
    rows = np.arange(len(t))
    for k in range(4):
        cols = np.clip(i - 1 + k, 0, n_nodes - 1)
        np.add.at(mat, (rows, cols), w[:, k])
    return mat.astype(np.float32)


@dataclass
class _SmoothField:
    """A smooth unit-variance Gaussian random field defined in millimetres around a centre.

    The node values are drawn when the field is created, so the random stream does not depend on
    the voxel size at which the field is later evaluated: a case at 3 mm shows the same tumour as
    at 1 mm, only coarser.
    """

    half_extent_mm: tuple[float, float, float]
    step_mm: float
    coef: NDArray[np.float32]

    @classmethod
    def draw(cls, rng: np.random.Generator, half_extent_mm: Any, step_mm: float) -> _SmoothField:
        half = tuple(float(h) for h in np.broadcast_to(np.asarray(half_extent_mm, dtype=float), (3,)))
        n = tuple(int(math.ceil(2 * h / step_mm)) + 5 for h in half)
        coef = rng.standard_normal(n, dtype=np.float32)
        return cls(half, float(step_mm), coef)  # type: ignore[arg-type]

    def evaluate(self, axes_mm: tuple[NDArray, NDArray, NDArray]) -> NDArray[np.float32]:
        """Field on the grid spanned by 1-D coordinate vectors (mm relative to the centre)."""
        mats = [
            _bspline_matrix(np.clip(ax, -h, h), -h - 2 * self.step_mm, self.step_mm, self.coef.shape[d])
            for d, (ax, h) in enumerate(zip(axes_mm, self.half_extent_mm, strict=True))
        ]
        out = np.tensordot(mats[0], self.coef, axes=(1, 0))  # (I, b, c)
        out = np.tensordot(out, mats[1], axes=(1, 1))  # (I, c, J)
        out = np.tensordot(out, mats[2], axes=(1, 1))  # (I, J, K)
        return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# MNI152 template (loaded once per process)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Template:
    """Template arrays (possibly block-averaged) and what every case needs from them."""

    mask: NDArray[np.float32]  # brain fraction (T1 template > 0)
    gm: NDArray[np.float32]  # grey-matter probability, zero outside the brain
    wm: NDArray[np.float32]  # white-matter probability, zero outside the brain
    vox2world: NDArray[np.float64]  # template voxel -> MNI world (RAS mm)
    anchor_world: NDArray[np.float64]  # brain bounding-box centre, MNI world
    bbox_world: NDArray[np.float64]  # (2, 3) brain bounding box corners, MNI world
    centres_world: NDArray[np.float64]  # candidate tumour centres (deep white matter), MNI world


def _template_dir() -> Path:
    """Folder of the MNI152 files inside the installed nilearn wheel (never downloads).

    The package is located with ``importlib.util.find_spec`` rather than imported: importing
    ``nilearn.datasets`` pulls in scikit-learn and pandas and costs seconds in every worker.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The synthetic BraTS generator needs the MNI152 template shipped with nilearn. "
            "Install the optional dependency: pip install 'brats-grading-bundles[synthetic]' "
            "(or pip install 'nilearn>=0.10')."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in _TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"nilearn is installed but {folder} lacks {', '.join(missing)}; "
            "a nilearn wheel >= 0.10 ships these files."
        )
    return folder


def _block_mean(a: NDArray[np.float32], f: int) -> NDArray[np.float32]:
    """Average ``f``-cubed blocks (zero-padded at the far end) for anti-aliased coarse grids."""
    if f == 1:
        return a
    shape = [int(math.ceil(n / f)) * f for n in a.shape]
    padded = np.zeros(shape, dtype=np.float32)
    padded[: a.shape[0], : a.shape[1], : a.shape[2]] = a
    return padded.reshape(shape[0] // f, f, shape[1] // f, f, shape[2] // f, f).mean(axis=(1, 3, 5))


def _pooled_affine(aff: NDArray[np.float64], f: int) -> NDArray[np.float64]:
    scale = np.diag([f, f, f, 1.0]).astype(np.float64)
    scale[:3, 3] = (f - 1) / 2.0
    return aff @ scale


@functools.lru_cache(maxsize=1)
def _base_template() -> _Template:
    """Load the 1 mm template once per process; compute brain box and tumour-centre candidates."""
    import nibabel as nib

    folder = _template_dir()
    imgs = {k: nib.load(str(folder / name)) for k, name in _TEMPLATE_FILES.items()}
    aff = np.asarray(imgs["t1"].affine, dtype=np.float64)
    t1 = np.asarray(imgs["t1"].dataobj)
    mask = (t1 > 0).astype(np.float32)
    gm = np.asarray(imgs["gm"].dataobj).astype(np.float32) / 255.0
    wm = np.asarray(imgs["wm"].dataobj).astype(np.float32) / 255.0
    gm *= mask
    wm *= mask
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]

    idx = np.argwhere(mask > 0)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.stack([lo - 0.5, hi + 0.5]).astype(np.float64)
    bbox_world = np.sort((aff[:3, :3] @ corners.T).T + aff[:3, 3], axis=0)
    anchor_world = bbox_world.mean(axis=0)

    # Tumour-centre candidates on a 2 mm grid: deep white matter >= 15 mm inside the brain,
    # supratentorial (gliomas of adults are mostly hemispheric), cerebellum excluded.
    m2 = _block_mean(mask, 2)
    w2 = _block_mean(wm, 2)
    aff2 = _pooled_affine(aff, 2)
    brain2 = m2 > 0.5
    depth = ndimage.distance_transform_edt(brain2) * 2.0
    ijk = np.argwhere(brain2 & (w2 > 0.7) & (depth >= 15.0))
    world = ijk @ aff2[:3, :3].T + aff2[:3, 3]
    keep = (world[:, 2] > -20.0) & ~((world[:, 1] < -40.0) & (world[:, 2] < 0.0))
    centres = world[keep]
    if len(centres) == 0:  # pragma: no cover - template files are fixed
        raise RuntimeError("no white-matter tumour-centre candidates found in the MNI152 template")
    return _Template(mask, gm, wm, aff, anchor_world, bbox_world, centres)


@functools.lru_cache(maxsize=4)
def _template(pool: int) -> _Template:
    """Template block-averaged by ``pool`` so coarse grids sample anti-aliased tissue fractions."""
    base = _base_template()
    if pool == 1:
        return base
    return _Template(
        np.ascontiguousarray(_block_mean(base.mask, pool)),
        np.ascontiguousarray(_block_mean(base.gm, pool)),
        np.ascontiguousarray(_block_mean(base.wm, pool)),
        _pooled_affine(base.vox2world, pool),
        base.anchor_world,
        base.bbox_world,
        base.centres_world,
    )


# --------------------------------------------------------------------------------------------------
# Random case description
# --------------------------------------------------------------------------------------------------


def _case_hash(case_id: str) -> int:
    """Stable 63-bit integer of a case id (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "little") >> 1


def _case_streams(case_id: str, seed: int) -> list[np.random.Generator]:
    """Independent generators for anatomy, tumour, intensities, noise and survival of one case.

    Separate streams keep, e.g., the anatomy of a case unchanged when the tumour model or the
    voxel size (which changes how much noise is drawn) changes.
    """
    _check_seed(seed)
    ss = np.random.SeedSequence([int(seed), _case_hash(case_id)])
    return [np.random.default_rng(child) for child in ss.spawn(5)]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


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
class _Tumour:
    """Phenotype parameters of one tumour (all lengths in mm)."""

    grade: str
    r_core: float
    core_amp: float
    radii: NDArray[np.float64]
    rot: NDArray[np.float64]
    necrosis: bool
    enhancing: bool
    ring_mm: float
    ring_complete: float
    solid_enh_fraction: float
    edema_margin: float
    edema_amp: float
    mass: float
    texture: float
    enh_gain: float
    # LGG foci: (offset mm, radius mm) for a cyst/necrosis and an enhancing focus, or None.
    cyst: tuple[NDArray[np.float64], float] | None
    enh_focus: tuple[NDArray[np.float64], float] | None
    half_box: float
    fields: dict[str, _SmoothField] = field(default_factory=dict)


def _draw_tumour(rng: np.random.Generator, grade: str, d: float) -> _Tumour:
    """Grade phenotype; ``d`` (difficulty) moves each grade towards the other's appearance."""
    radii = np.exp(rng.normal(0.0, 0.15, size=3))
    radii /= np.prod(radii) ** (1 / 3)
    rot = _random_rotation(rng)
    core_amp = rng.uniform(0.15, 0.3)
    edema_amp = rng.uniform(0.15, 0.3)
    u = rng.random(8)  # fixed number of draws for the grade-dependent choices below
    cyst = enh_focus = None
    if grade == "HGG":
        r_core = rng.uniform(12.0, 26.0)
        necrosis = u[0] >= 0.45 * d  # atypical HGG without necrosis
        enhancing = u[1] >= 0.35 * d  # atypical non-enhancing HGG
        ring_mm = rng.uniform(2.5, 6.0)
        ring_complete = rng.uniform(0.55, 1.0)
        solid_enh_fraction = rng.uniform(0.3, 0.7)
        edema_margin = rng.uniform(6.0, 24.0) * (1.0 - 0.6 * d * u[2])
        mass = rng.uniform(0.2, 0.45)
        texture = rng.uniform(0.08, 0.16) * (1.0 - 0.5 * d)
        enh_gain = 1.0 + (0.6 - 0.3 * d) * rng.uniform(0.7, 1.1)
    else:
        r_core = rng.uniform(14.0, 30.0)
        necrosis = enhancing = False
        ring_mm = ring_complete = solid_enh_fraction = 0.0
        if u[0] < 0.02 + 0.25 * d:
            cyst = (rng.uniform(-0.3, 0.3, size=3) * r_core, rng.uniform(3.0, 0.35 * r_core))
        if u[1] < 0.03 + 0.37 * d:
            enh_focus = (rng.uniform(-0.35, 0.35, size=3) * r_core, rng.uniform(4.0, 9.0))
        edema_margin = rng.uniform(1.5, 5.0) + d * rng.uniform(0.0, 10.0)
        mass = rng.uniform(0.1, 0.3)
        texture = rng.uniform(0.02, 0.05) + 0.05 * d
        enh_gain = 1.0 + (0.25 + 0.15 * d) * rng.uniform(0.7, 1.1)
    core_reach = r_core * (1 + 2.5 * core_amp) * float(radii.max())
    half_box = max(core_reach + edema_margin * (1 + 2.5 * edema_amp) * 1.2 + 3.0, 2.2 * r_core)
    t = _Tumour(
        grade, r_core, core_amp, radii, rot, bool(necrosis), bool(enhancing), ring_mm, ring_complete,
        solid_enh_fraction, edema_margin, edema_amp, mass, texture, enh_gain, cyst, enh_focus, half_box,
    )  # fmt: skip
    for name, step in (("shape", 10.0), ("edema", 12.0), ("ring", 7.0), ("texture", 4.0)):
        t.fields[name] = _SmoothField.draw(rng, half_box, step)
    return t


@dataclass
class _Appearance:
    """Per-case contrasts, gains, noise level and bias fields."""

    contrast: dict[str, NDArray[np.float64]]
    gain: dict[str, float]
    noise: dict[str, float]
    bias_amp: dict[str, float]
    bias: dict[str, _SmoothField]


def _draw_appearance(rng: np.random.Generator, tumour: _Tumour, d: float) -> _Appearance:
    contrast, gain, noise, bias_amp, bias = {}, {}, {}, {}, {}
    half_fov = np.asarray(BRATS_SHAPE_1MM, dtype=float) / 2.0
    for m in MODALITIES:
        c = np.asarray(_BASE_CONTRAST[m], dtype=np.float64) * np.exp(rng.normal(0.0, 0.04, size=7))
        if tumour.grade == "HGG" and m == "flair":
            c[_CLASSES.index("nec")] = rng.uniform(0.8, 1.3)  # variably suppressed necrotic fluid
        if m == "t1ce":
            c[_CLASSES.index("enh")] = tumour.enh_gain
        contrast[m] = c
        lo, hi = _GAIN_RANGE[m]
        gain[m] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        noise[m] = float(rng.uniform(0.015, 0.03) + 0.04 * d)
        bias_amp[m] = float(rng.uniform(0.03, 0.07) + 0.12 * d)
        bias[m] = _SmoothField.draw(rng, half_fov, 60.0)
    return _Appearance(contrast, gain, noise, bias_amp, bias)


# --------------------------------------------------------------------------------------------------
# Case synthesis
# --------------------------------------------------------------------------------------------------


def _mass_factor(rho: NDArray[np.float32], mass: float, support: float) -> NDArray[np.float32]:
    """Radial source-position factor of the mass effect: 1 - m (1 - (r/R)^2)^3 inside R.

    The mapping r -> r * factor is monotone for m < 1, so tissue is pushed outwards without folding.
    """
    u2 = np.minimum((rho / support) ** 2, 1.0)
    return (1.0 - mass * (1.0 - u2) ** 3).astype(np.float32)


def _axes_mm(lo: NDArray, hi: NDArray, v: float, centre_mm: NDArray) -> tuple[NDArray, ...]:
    return tuple(np.arange(lo[k], hi[k]) * v - centre_mm[k] for k in range(3))


def _tumour_compartments(
    t: _Tumour,
    axes: tuple[NDArray, NDArray, NDArray],
    brain: NDArray[np.bool_],
    wm: NDArray[np.float32],
    csf: NDArray[np.float32],
    v: float,
) -> dict[str, NDArray[np.bool_]]:
    """Boolean compartments (nec, enh, net, edema) of the tumour inside its bounding box."""
    dx, dy, dz = np.ix_(*[a.astype(np.float32) for a in axes])
    rot = t.rot.astype(np.float32)
    rho2 = np.zeros(brain.shape, dtype=np.float32)
    for k in range(3):
        uk = rot[0, k] * dx + rot[1, k] * dy + rot[2, k] * dz
        rho2 += (uk / np.float32(t.radii[k])) ** 2
    rho = np.sqrt(rho2)
    del rho2
    shape_n = np.clip(t.fields["shape"].evaluate(axes), -2.5, 2.5)
    ring_n = t.fields["ring"].evaluate(axes)
    core_r = t.r_core * (1.0 + t.core_amp * shape_n)
    core = (rho < core_r) & brain
    nec = np.zeros_like(core)
    enh = np.zeros_like(core)
    if t.grade == "HGG":
        if t.necrosis:
            # Thickness floor keeps the ring visible on coarse grids.
            ring_t = max(t.ring_mm, 1.2 * v)
            nec = core & (rho < core_r - ring_t)
            rim = core & ~nec
            if t.enhancing and rim.any():
                q = np.quantile(ring_n[rim], 1.0 - t.ring_complete)
                enh = rim & (ring_n >= q)
        elif t.enhancing and core.any():
            q = np.quantile(ring_n[core], 1.0 - t.solid_enh_fraction)
            enh = core & (ring_n >= q)
    else:
        for focus, target in ((t.cyst, nec), (t.enh_focus, enh)):
            if focus is None:
                continue
            off, rad = focus
            dist = np.sqrt((dx - off[0]) ** 2 + (dy - off[1]) ** 2 + (dz - off[2]) ** 2)
            target |= core & (dist < max(rad, 1.2 * v) * (1.0 + 0.2 * np.clip(ring_n, -1.5, 1.5)))
        nec &= ~enh
    net = core & ~nec & ~enh
    # Oedema spreads along white matter and spares cortex and CSF spaces.
    edema_n = np.clip(t.fields["edema"].evaluate(axes), -2.5, 2.5)
    reach = core_r + t.edema_margin * (1.0 + t.edema_amp * edema_n) * (0.2 + wm)
    edema = (rho < reach) & brain & ~core & (csf < 0.5)
    return {"nec": nec, "enh": enh, "net": net, "edema": edema}


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
        pts = tuple(
            g.ravel() for g in np.meshgrid(*[np.arange(n) for n in crop_shape], indexing="ij", copy=True)
        )
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
        vals = ndimage.map_coordinates(
            getattr(tpl, key), coords, order=1, mode="constant", cval=0.0, output=np.float32
        )
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


def generate_case(
    case_id: str, grade: str, seed: int, difficulty: float, voxel_mm: float
) -> dict[str, NDArray]:
    """Arrays for the five files of one case: ``t1, t1ce, t2, flair`` (int16) and ``seg`` (uint8).

    Pure function of its arguments (no I/O besides reading the cached template), so datasets can be
    generated in any order or process and stay identical.  Arrays are in BraTS voxel order on the
    ``grid_shape(voxel_mm)`` grid, matching ``brats_affine(voxel_mm)``.
    """
    if grade not in GRADES:
        raise ValueError(f"grade must be one of {GRADES}, got {grade!r}")
    if not (0.0 <= float(difficulty) <= 1.0):
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
    _check_voxel_mm(voxel_mm)
    d = float(difficulty)
    v = float(voxel_mm)
    rng_anat, rng_tum, rng_app, rng_noise, _ = _case_streams(case_id, seed)

    pool = int(math.floor(v)) if v >= 2.0 else 1
    tpl = _template(pool)
    anat = _draw_anatomy(rng_anat, tpl)
    tumour = _draw_tumour(rng_tum, grade, d)
    app = _draw_appearance(rng_app, tumour, d)

    shape = np.asarray(grid_shape(v))
    a_brats = brats_affine(v)
    # subject world = anchor_b + shift + L (mni world - anchor_mni); invert to pull template values.
    to_subject = np.eye(4)
    to_subject[:3, :3] = anat.linear
    to_subject[:3, 3] = _BRATS_ANCHOR_WORLD + anat.shift - anat.linear @ tpl.anchor_world
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
    crop_shape = tuple(int(n) for n in hi - lo)

    # Tumour box (grid indices), inside the crop.
    b_lo = np.maximum(np.floor((centre_mm - tumour.half_box) / v).astype(int), lo)
    b_hi = np.minimum(np.ceil((centre_mm + tumour.half_box) / v).astype(int) + 1, hi)
    if np.any(b_hi <= b_lo):  # pragma: no cover - centres are deep inside the brain
        raise RuntimeError(f"{case_id}: tumour centre fell outside the grid")
    box = tuple(slice(int(b_lo[k] - lo[k]), int(b_hi[k] - lo[k])) for k in range(3))
    axes = _axes_mm(b_lo, b_hi, v, centre_mm)

    maps = _warp_tissues(tpl, to_subject, a_brats, lo, hi, v, centre_mm, tumour.mass, support, max_push)

    # Tissue fractions on brain voxels only (flat vectors) and, for the tumour, on its box.
    brain = maps["mask"] > 0.5
    flat = np.flatnonzero(brain)
    gm_v, wm_v, csf_v = _fractions(*(maps[k].ravel()[flat] for k in ("mask", "gm", "wm")))
    b_brain = brain[box]
    b_gm, b_wm, b_csf = _fractions(*(maps[k][box] for k in ("mask", "gm", "wm")))
    b_gm[~b_brain] = b_wm[~b_brain] = b_csf[~b_brain] = 0.0
    lut = np.full(crop_shape, -1, dtype=np.int64)
    lut.ravel()[flat] = np.arange(len(flat))
    box_ids = lut[box][b_brain]  # positions in the brain vectors of the box's brain voxels
    del maps, lut

    comps = _tumour_compartments(tumour, axes, b_brain, b_wm, b_csf, v)
    seg_box = np.zeros(b_brain.shape, dtype=np.uint8)
    seg_box[comps["edema"]] = 2
    seg_box[comps["net"] | comps["nec"]] = 1
    seg_box[comps["enh"]] = 4

    # Partial-volume fractions of tumour compartments (oedema keeps 15 % of the underlying tissue).
    sigma = math.sqrt(0.7**2 + (0.4 * v) ** 2) / v
    frac = {
        k: ndimage.gaussian_filter(comps[k].astype(np.float32), sigma, mode="constant", truncate=3.0)[b_brain]
        for k in ("edema", "net", "nec", "enh")
    }
    frac["edema"] *= 0.85
    total = frac["edema"] + frac["net"] + frac["nec"] + frac["enh"]
    norm = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0).astype(np.float32)
    for k in frac:
        frac[k] *= norm
    keep = 1.0 - total * norm
    texture = np.clip(tumour.fields["texture"].evaluate(axes)[b_brain], -3, 3)
    ring_n = np.clip(tumour.fields["ring"].evaluate(axes)[b_brain], -2.5, 2.5)
    tex_weight = {"edema": 0.5, "net": 1.0, "nec": 1.5, "enh": 1.0}

    crop_axes = _axes_mm(lo, hi, v, np.asarray(BRATS_SHAPE_1MM, dtype=float) / 2.0)
    crop_slices = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3))
    out: dict[str, NDArray] = {}
    for m in MODALITIES:
        c = app.contrast[m].astype(np.float32)
        img = c[0] * csf_v + c[1] * gm_v + c[2] * wm_v
        tum = np.zeros(len(box_ids), dtype=np.float32)
        for k in ("edema", "net", "nec", "enh"):
            mod = 1.0 + _TEXTURE_SIGN[m] * tumour.texture * tex_weight[k] * texture
            if k == "enh" and m == "t1ce":
                mod = mod + 0.08 * ring_n  # patchy enhancement
            tum += frac[k] * c[_CLASSES.index(k)] * mod
        img[box_ids] = img[box_ids] * keep + tum
        img *= np.exp(app.bias_amp[m] * app.bias[m].evaluate(crop_axes).ravel()[flat])
        img *= np.float32(app.gain[m])
        # Rician magnitude noise: |signal + complex Gaussian|.
        sigma_n = np.float32(app.noise[m] * app.gain[m])
        img += sigma_n * rng_noise.standard_normal(len(flat), dtype=np.float32)
        img **= 2
        img += (sigma_n * rng_noise.standard_normal(len(flat), dtype=np.float32)) ** 2
        np.sqrt(img, out=img)
        np.rint(img, out=img)
        np.clip(img, 1, np.iinfo(np.int16).max, out=img)
        crop_img = np.zeros(crop_shape, dtype=np.int16)
        crop_img.ravel()[flat] = img.astype(np.int16)
        full = np.zeros(tuple(shape), dtype=np.int16)
        full[crop_slices] = crop_img
        out[m] = full
    seg = np.zeros(tuple(shape), dtype=np.uint8)
    seg[crop_slices][box] = seg_box
    out["seg"] = seg
    return out


# --------------------------------------------------------------------------------------------------
# Dataset level
# --------------------------------------------------------------------------------------------------


def format_case_id(number: int) -> str:
    """BraTS-style id of case ``number`` (1-based); carries no grade information."""
    return f"Brats18_SYN_{number:04d}_1"


def assign_grades(n_hgg: int, n_lgg: int, seed: int) -> list[tuple[str, str]]:
    """``(case_id, grade)`` for cases 1..N, grades shuffled by a seeded permutation."""
    grades = np.array(["HGG"] * n_hgg + ["LGG"] * n_lgg)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x67726164]))  # "grad"
    grades = grades[rng.permutation(len(grades))]
    return [(format_case_id(i + 1), str(g)) for i, g in enumerate(grades)]


def survival_record(case_id: str, seed: int) -> dict[str, str]:
    """Plausible synthetic clinical row of an HGG case (age, survival days, resection status).

    Older patients get shorter survival and gross-total resection longer survival, loosely as in
    glioblastoma cohorts; the values carry no information about the images.
    """
    rng = _case_streams(case_id, seed)[4]
    age = float(np.clip(rng.normal(61.0, 12.0), 20.0, 85.0))
    status = str(rng.choice(["GTR", "STR", "NA"], p=[0.55, 0.10, 0.35]))
    log_days = math.log(400.0) - 0.015 * (age - 60.0) + (0.15 if status == "GTR" else 0.0)
    days = int(np.clip(round(math.exp(log_days + rng.normal(0.0, 0.65))), 5, 2000))
    return {"BraTS18ID": case_id, "Age": f"{age:.3f}", "Survival": str(days), "ResectionStatus": status}


def _nifti_gz(array: NDArray, affine: NDArray[np.float64]) -> bytes:
    """Deterministic ``.nii.gz`` bytes: fixed header fields and gzip mtime 0."""
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    hdr = img.header
    hdr.set_data_dtype(array.dtype)
    hdr.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    hdr["descrip"] = b"synthetic BraTS18 (brats_grading)"
    hdr["scl_slope"] = 1.0
    hdr["scl_inter"] = 0.0
    return gzip.compress(img.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def _write_case(job: tuple[str, str, int, float, float, str]) -> tuple[str, str, float]:
    """Worker: generate one case and write its five files (arrays never cross processes)."""
    cid, grade, seed, difficulty, voxel_mm, root = job
    start = time.perf_counter()
    arrays = generate_case(cid, grade, seed, difficulty, voxel_mm)
    folder = Path(root) / grade / cid
    folder.mkdir(parents=True, exist_ok=True)
    affine = brats_affine(voxel_mm)
    for key in (*MODALITIES, "seg"):
        (folder / f"{cid}_{key}.nii.gz").write_bytes(_nifti_gz(arrays[key], affine))
    return cid, grade, time.perf_counter() - start


def _worker_init() -> None:
    """One BLAS thread per worker: the workers already use every core."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


def generate_dataset(
    output_dir: str | os.PathLike[str],
    n_hgg: int = 210,
    n_lgg: int = 75,
    seed: int = 0,
    difficulty: float = 0.5,
    voxel_mm: float = 1.0,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic BraTS 2018 training set and return its root folder.

    Layout: ``output_dir/MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<ID>/<ID>_{t1,t1ce,t2,flair,seg}.nii.gz``
    plus ``survival_data.csv`` (HGG cases only) and the MNI152 copyright notice.  Cases run in
    ``workers`` processes (``None``: all cores); the output does not depend on ``workers``.
    """
    for name, n in (("n_hgg", n_hgg), ("n_lgg", n_lgg)):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    total = int(n_hgg) + int(n_lgg)
    if not 1 <= total <= MAX_CASES:
        raise ValueError(f"n_hgg + n_lgg must be in [1, {MAX_CASES}], got {total}")
    _check_seed(seed)
    if not (0.0 <= float(difficulty) <= 1.0):
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
    _check_voxel_mm(voxel_mm)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be None or a positive integer, got {workers!r}")
    _template_dir()  # fail early with a clear message if nilearn is missing

    root = Path(output_dir) / DATASET_DIRNAME
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"dataset root {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"dataset root {root} already exists and is not empty; "
                "choose another output folder or pass overwrite=True to replace it"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)

    cases = assign_grades(int(n_hgg), int(n_lgg), int(seed))
    jobs = [(cid, g, int(seed), float(difficulty), float(voxel_mm), str(root)) for cid, g in cases]
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    start = time.perf_counter()

    def report(done: int, result: tuple[str, str, float]) -> None:
        logger.info("[%d/%d] %s (%s) %.1f s", done, len(jobs), result[0], result[1], result[2])

    if n_workers == 1:
        for k, job in enumerate(jobs, 1):
            report(k, _write_case(job))
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=n_workers, initializer=_worker_init) as pool:
            for k, result in enumerate(pool.map(_write_case, jobs, chunksize=1), 1):
                report(k, result)

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SURVIVAL_HEADER, lineterminator="\n")
    writer.writeheader()
    for cid, g in cases:
        if g == "HGG":
            writer.writerow(survival_record(cid, int(seed)))
    (root / SURVIVAL_FILENAME).write_text(buf.getvalue(), encoding="utf-8")
    (root / NOTICE_FILENAME).write_text(MNI152_NOTICE, encoding="utf-8")
    logger.info(
        "wrote %d cases to %s in %.1f s with %d worker(s)",
        len(jobs),
        root,
        time.perf_counter() - start,
        n_workers,
    )
    return root
