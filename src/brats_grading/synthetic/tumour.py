"""The tumour: grade phenotype, compartment growth and its BraTS label map.

A tumour is described in millimetres around its centre (so the same seed grows the same tumour at
any voxel size): an irregular ellipsoidal core shaped by smooth random fields, for HGG a necrotic
centre inside a partly enhancing rim, for LGG a homogeneous mass with rare cyst and enhancing
focus, and oedema that spreads along white matter.  ``difficulty`` moves each grade towards the
other's appearance; docs/synthetic_data.md tabulates the resulting cue probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from .fields import _SmoothField
from .geometry import _Frame, _random_rotation
from .site import SiteProfile


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


def _draw_tumour(rng: np.random.Generator, grade: str, d: float, site: SiteProfile) -> _Tumour:
    """Grade phenotype; ``d`` (difficulty) moves each grade towards the other's appearance.

    ``site`` rescales the draws (shape, rim, enhancement) without changing how many are made.
    """
    radii = np.exp(rng.normal(0.0, 0.15, size=3) * site.elongation)
    radii /= np.prod(radii) ** (1 / 3)
    rot = _random_rotation(rng)
    core_amp = rng.uniform(0.15, 0.3) * site.irregularity
    edema_amp = rng.uniform(0.15, 0.3)
    u = rng.random(8)  # fixed number of draws for the grade-dependent choices below
    cyst = enh_focus = None
    if grade == "HGG":
        r_core = rng.uniform(12.0, 26.0)
        necrosis = u[0] >= 0.45 * d  # atypical HGG without necrosis
        enhancing = u[1] >= 0.35 * d  # atypical non-enhancing HGG
        ring_mm = rng.uniform(2.5, 6.0) * site.ring
        ring_complete = rng.uniform(0.55, 1.0)
        solid_enh_fraction = rng.uniform(0.3, 0.7)
        edema_margin = rng.uniform(6.0, 24.0) * (1.0 - 0.6 * d * u[2])
        mass = rng.uniform(0.2, 0.45)
        texture = rng.uniform(0.08, 0.16) * (1.0 - 0.5 * d)
        enh_gain = 1.0 + site.enhancement * (0.6 - 0.3 * d) * rng.uniform(0.7, 1.1)
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
        enh_gain = 1.0 + site.enhancement * (0.25 + 0.15 * d) * rng.uniform(0.7, 1.1)
    core_reach = r_core * (1 + 2.5 * core_amp) * float(radii.max())
    half_box = max(core_reach + edema_margin * (1 + 2.5 * edema_amp) * 1.2 + 3.0, 2.2 * r_core)
    t = _Tumour(
        grade, r_core, core_amp, radii, rot, bool(necrosis), bool(enhancing), ring_mm, ring_complete,
        solid_enh_fraction, edema_margin, edema_amp, mass, texture, enh_gain, cyst, enh_focus, half_box,
    )  # fmt: skip
    for name, step in (("shape", 10.0), ("edema", 12.0), ("ring", 7.0), ("texture", 4.0)):
        t.fields[name] = _SmoothField.draw(rng, half_box, step)
    return t


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


def _segmentation(comps: dict[str, NDArray[np.bool_]], frame: _Frame) -> NDArray[np.uint8]:
    """BraTS labels on the full grid: 2 oedema, 1 necrosis / non-enhancing core, 4 enhancing."""
    seg_box = np.zeros(comps["edema"].shape, dtype=np.uint8)
    seg_box[comps["edema"]] = 2
    seg_box[comps["net"] | comps["nec"]] = 1
    seg_box[comps["enh"]] = 4
    seg = np.zeros(tuple(frame.shape), dtype=np.uint8)
    seg[frame.crop_slices][frame.box] = seg_box
    return seg
