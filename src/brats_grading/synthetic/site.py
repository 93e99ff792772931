"""Acquisition sites: a second parameter set for the scanner and tumour models, for robustness tests.

Real BraTS pools 19 institutions, so a model that learnt one generator's appearance has not learnt the
grade. A site changes how the same patients look, never who they are: the random draws per case are the
same at every site (grade, anatomy, tumour placement and phenotype choices), and the site rescales them.
So ``reference`` and ``shifted`` with one seed are the same cases imaged differently, a paired test of a
change of data source.

``shifted`` moves every part of the appearance within ranges seen between MR scanners and protocols:
the per-modality contrast of each tissue (lower grey/white contrast on T1, weaker lesion contrast on
FLAIR and T2), the intensity scale (2.5x on T1/T1ce, 0.6x on T2, 1.8x on FLAIR), 1.6x the noise, 1.8x
the bias field on a shorter length scale, 6 mm slices (a Gaussian blur across slices), weaker and
patchier enhancement with a thinner rim, and a more irregular, less spherical tumour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SITES", "SiteProfile", "site_profile"]


@dataclass(frozen=True)
class SiteProfile:
    """Multipliers of the generator's appearance and shape parameters (all 1 at the reference site).

    Args:
        contrast: per modality, multipliers of the seven tissue signals (csf, gm, wm, edema, net, nec, enh).
        gain: per modality, multiplier of the written intensity scale.
        noise: multiplier of the Rician noise level.
        bias: multiplier of the bias field amplitude.
        bias_length_mm: lattice step of the bias field (shorter: more local inhomogeneity).
        slice_mm: slice thickness; above the voxel size the images are blurred across slices.
        enhancement: multiplier of the enhancing tumour's excess T1ce signal over white matter.
        patchiness: weight of the enhancement patchiness field.
        ring: multiplier of the enhancing rim's thickness.
        elongation: multiplier of the spread of the tumour's axis ratios.
        irregularity: multiplier of the tumour outline's random modulation.
    """

    contrast: dict[str, tuple[float, ...]] = field(default_factory=dict)
    gain: dict[str, float] = field(default_factory=dict)
    noise: float = 1.0
    bias: float = 1.0
    bias_length_mm: float = 60.0
    slice_mm: float = 0.0
    enhancement: float = 1.0
    patchiness: float = 0.08
    ring: float = 1.0
    elongation: float = 1.0
    irregularity: float = 1.0


SITES: dict[str, SiteProfile] = {
    "reference": SiteProfile(),
    "shifted": SiteProfile(
        contrast={
            #         csf   gm    wm   edema net   nec   enh
            "t1": (1.15, 1.08, 1.0, 1.08, 1.08, 1.10, 1.08),
            "t1ce": (1.15, 1.08, 1.0, 1.08, 1.08, 1.10, 1.00),
            "t2": (0.85, 0.95, 1.0, 0.92, 0.92, 0.90, 0.95),
            "flair": (1.20, 0.95, 1.0, 0.88, 0.88, 1.00, 0.92),
        },
        gain={"t1": 2.5, "t1ce": 2.5, "t2": 0.6, "flair": 1.8},
        noise=1.6,
        bias=1.8,
        bias_length_mm=40.0,
        slice_mm=6.0,
        enhancement=0.75,
        patchiness=0.16,
        ring=0.8,
        elongation=1.6,
        irregularity=1.3,
    ),
}


def site_profile(name: str) -> SiteProfile:
    """The named site's profile; a clear error names the known sites."""
    if name not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {name!r}")
    return SITES[name]
