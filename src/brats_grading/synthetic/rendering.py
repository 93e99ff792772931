"""The intensity model: contrast tables, per-case appearance and rendering of the four MR images.

Each voxel mixes seven tissue classes by their partial-volume fractions with a relative signal per
modality (white matter = 1), jittered per case; tumour compartments carry a texture field and
enhancement a patchiness field.  Then, per modality, a smooth multiplicative bias field, a
log-uniform gain (BraTS intensities are unnormalised) and Rician magnitude noise are applied, all
on brain voxels only, and the result is written into the full grid as int16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .fields import _SmoothField
from .geometry import BRATS_SHAPE_1MM, _Frame
from .layout import MODALITIES
from .site import SiteProfile
from .tissue import _Tissue
from .tumour import _Tumour

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
# Weight of the texture field per tumour compartment (strongest in necrosis).
_TEX_WEIGHT = {"edema": 0.5, "net": 1.0, "nec": 1.5, "enh": 1.0}


@dataclass
class _Appearance:
    """Per-case contrasts, gains, noise level and bias fields."""

    contrast: dict[str, NDArray[np.float64]]
    gain: dict[str, float]
    noise: dict[str, float]
    bias_amp: dict[str, float]
    bias: dict[str, _SmoothField]


def _draw_appearance(
    rng: np.random.Generator, tumour: _Tumour, d: float, site: SiteProfile, rng_site: np.random.Generator
) -> _Appearance:
    """Per-case contrasts, gains, noise and bias fields, rescaled by the acquisition ``site``.

    The reference draws come from ``rng`` at every site, so one case differs between sites only by
    the site's multipliers; a bias field on another length scale is drawn from ``rng_site``.
    """
    contrast, gain, noise, bias_amp, bias = {}, {}, {}, {}, {}
    half_fov = np.asarray(BRATS_SHAPE_1MM, dtype=float) / 2.0
    for m in MODALITIES:
        c = np.asarray(_BASE_CONTRAST[m], dtype=np.float64) * np.exp(rng.normal(0.0, 0.04, size=7))
        if m in site.contrast:
            c = c * np.asarray(site.contrast[m], dtype=np.float64)
        if tumour.grade == "HGG" and m == "flair":
            c[_CLASSES.index("nec")] = rng.uniform(0.8, 1.3)  # variably suppressed necrotic fluid
        if m == "t1ce":
            c[_CLASSES.index("enh")] = tumour.enh_gain
        contrast[m] = c
        lo, hi = _GAIN_RANGE[m]
        gain[m] = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) * site.gain.get(m, 1.0)
        noise[m] = float(rng.uniform(0.015, 0.03) + 0.04 * d) * site.noise
        bias_amp[m] = float(rng.uniform(0.03, 0.07) + 0.12 * d) * site.bias
        bias[m] = _SmoothField.draw(rng, half_fov, 60.0)
        if site.bias_length_mm != 60.0:
            bias[m] = _SmoothField.draw(rng_site, half_fov, site.bias_length_mm)
    return _Appearance(contrast, gain, noise, bias_amp, bias)


@dataclass
class _TumourMix:
    """Partial-volume mixing of the tumour compartments on the tumour box's brain voxels."""

    frac: dict[str, NDArray[np.float32]]  # fraction of each compartment
    keep: NDArray[np.float32]  # share of the underlying normal-tissue signal that remains
    texture: NDArray[np.float32]  # texture field, clipped
    ring: NDArray[np.float32]  # enhancement patchiness field, clipped


def _tumour_mix(
    tumour: _Tumour, comps: dict[str, NDArray[np.bool_]], axes: tuple[NDArray, ...], brain: NDArray, v: float
) -> _TumourMix:
    """Blur the compartments into fractions and evaluate the tumour's texture fields."""
    # Partial-volume fractions of tumour compartments (oedema keeps 15 % of the underlying tissue).
    sigma = math.sqrt(0.7**2 + (0.4 * v) ** 2) / v
    frac = {
        k: ndimage.gaussian_filter(comps[k].astype(np.float32), sigma, mode="constant", truncate=3.0)[brain]
        for k in ("edema", "net", "nec", "enh")
    }
    frac["edema"] *= 0.85
    total = frac["edema"] + frac["net"] + frac["nec"] + frac["enh"]
    norm = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0).astype(np.float32)
    for k in frac:
        frac[k] *= norm
    keep = 1.0 - total * norm
    texture = np.clip(tumour.fields["texture"].evaluate(axes)[brain], -3, 3)
    ring_n = np.clip(tumour.fields["ring"].evaluate(axes)[brain], -2.5, 2.5)
    return _TumourMix(frac, keep, texture, ring_n)


def _thick_slices(
    img: NDArray[np.float32], flat: NDArray, shape: tuple[int, ...], slices: float
) -> NDArray[np.float32]:
    """Signal averaged across ``slices`` voxels along the slice axis (a thick-slice acquisition).

    A slab of thickness T blurs like a Gaussian of standard deviation T / sqrt(12); the background
    outside the brain is zero, so edge slices mix with it as partial volume does.
    """
    crop = np.zeros(shape, dtype=np.float32)
    crop.ravel()[flat] = img
    crop = ndimage.gaussian_filter1d(crop, slices / math.sqrt(12.0), axis=2, mode="constant")
    return crop.ravel()[flat]


def _render_modality(
    m: str,
    tissue: _Tissue,
    mix: _TumourMix,
    tumour: _Tumour,
    app: _Appearance,
    frame: _Frame,
    rng_noise: np.random.Generator,
    site: SiteProfile,
    v: float,
) -> NDArray[np.int16]:
    """Image of modality ``m`` on the full grid; draws this modality's noise from ``rng_noise``."""
    flat, box_ids = tissue.flat, tissue.box_ids
    c = app.contrast[m].astype(np.float32)
    img = c[0] * tissue.csf + c[1] * tissue.gm + c[2] * tissue.wm
    tum = np.zeros(len(box_ids), dtype=np.float32)
    for k in ("edema", "net", "nec", "enh"):
        mod = 1.0 + _TEXTURE_SIGN[m] * tumour.texture * _TEX_WEIGHT[k] * mix.texture
        if k == "enh" and m == "t1ce":
            mod = mod + site.patchiness * mix.ring  # patchy enhancement
        tum += mix.frac[k] * c[_CLASSES.index(k)] * mod
    img[box_ids] = img[box_ids] * mix.keep + tum
    img *= np.exp(app.bias_amp[m] * app.bias[m].evaluate(frame.crop_axes).ravel()[flat])
    if site.slice_mm > v:
        img = _thick_slices(img, flat, frame.crop_shape, site.slice_mm / v)
    img *= np.float32(app.gain[m])
    # Rician magnitude noise: |signal + complex Gaussian|.
    sigma_n = np.float32(app.noise[m] * app.gain[m])
    img += sigma_n * rng_noise.standard_normal(len(flat), dtype=np.float32)
    img **= 2
    img += (sigma_n * rng_noise.standard_normal(len(flat), dtype=np.float32)) ** 2
    np.sqrt(img, out=img)
    np.rint(img, out=img)
    np.clip(img, 1, np.iinfo(np.int16).max, out=img)
    crop_img = np.zeros(frame.crop_shape, dtype=np.int16)
    crop_img.ravel()[flat] = img.astype(np.int16)
    full = np.zeros(tuple(frame.shape), dtype=np.int16)
    full[frame.crop_slices] = crop_img
    return full
