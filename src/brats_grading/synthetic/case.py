"""One synthetic case, from its seed to the five arrays of its files.

``generate_case`` only sequences the steps; each step lives with its concern: random streams
(``streams``), template (``template``), warp and crop (``geometry``), normal tissue (``tissue``),
tumour (``tumour``) and image formation (``rendering``).  The order of the steps fixes the order of
the random draws, which is what keeps generated files byte-identical across versions.
"""

from __future__ import annotations

from numpy.typing import NDArray

from .geometry import _case_frame, _check_voxel_mm, _draw_anatomy
from .layout import GRADES, MODALITIES
from .rendering import _draw_appearance, _render_modality, _tumour_mix
from .site import site_profile
from .streams import _case_streams
from .template import _pool_factor, _template
from .tissue import _normal_tissue
from .tumour import _draw_tumour, _segmentation, _tumour_compartments


def generate_case(
    case_id: str, grade: str, seed: int, difficulty: float, voxel_mm: float, site: str = "reference"
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
    profile = site_profile(site)
    d = float(difficulty)
    v = float(voxel_mm)
    rng_anat, rng_tum, rng_app, rng_noise, _, rng_site = _case_streams(case_id, seed)

    # Random description of the case: warp and tumour centre, tumour phenotype, image appearance.
    tpl = _template(_pool_factor(v))
    anat = _draw_anatomy(rng_anat, tpl)
    tumour = _draw_tumour(rng_tum, grade, d, profile)
    app = _draw_appearance(rng_app, tumour, d, profile, rng_site)

    # Synthesis on the grid: normal tissue (with mass effect), tumour compartments, images.
    frame = _case_frame(case_id, tpl, anat, tumour, v)
    tissue = _normal_tissue(tpl, frame, tumour.mass, v)
    comps = _tumour_compartments(tumour, frame.axes, tissue.box_brain, tissue.box_wm, tissue.box_csf, v)
    mix = _tumour_mix(tumour, comps, frame.axes, tissue.box_brain, v)
    out = {m: _render_modality(m, tissue, mix, tumour, app, frame, rng_noise, profile, v) for m in MODALITIES}
    out["seg"] = _segmentation(comps, frame)
    return out
