"""The MNI152 2009a template: where it is, its licence notice, and loading it once per process.

Every synthetic case is this real adult anatomy under a random similarity warp.  The files ship
inside the nilearn wheel, so nothing is downloaded; they are located without importing nilearn
(which costs seconds per worker), loaded once per process and block-averaged for coarse grids so
those sample anti-aliased tissue fractions.  The copyright notice must accompany every copy, so
the dataset writer copies ``MNI152_NOTICE`` into each dataset.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

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
            f"nilearn is installed but {folder} lacks {', '.join(missing)}; a nilearn wheel >= 0.10 ships these files."
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


def _pool_factor(voxel_mm: float) -> int:
    """Block-averaging factor of the template for a grid of ``voxel_mm`` (1 below 2 mm)."""
    return int(math.floor(voxel_mm)) if voxel_mm >= 2.0 else 1
