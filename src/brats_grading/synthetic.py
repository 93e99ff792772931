"""Synthetic BraTS 2018 training data on real anatomy, so every test and demo runs without the real set.

Each case is built from the MNI152 2009 template that ships in the nilearn wheel (T1 plus
grey / white-matter probability maps; CSF = brain mask - GM - WM), warped by a random
similarity transform into the BraTS grid (240 x 240 x 155 at 1 mm, LPS, skull-stripped). A
tumour is grown in white matter with the phenotypes radiologists grade by:

* HGG: necrotic core, enhancing (often incomplete) rim bright on T1ce, wide edema that follows
  white matter, heterogeneous texture;
* LGG: mostly homogeneous non-enhancing mass, bright on T2 / FLAIR, dark on T1, thin edema,
  rare enhancement.

``difficulty`` in [0, 1] makes the grades overlap (atypical HGG without necrosis, enhancing LGG,
weaker enhancement, more noise and bias). Each case is a pure function of (seed, case number),
so runs are byte-identical and cases are generated in parallel.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

DATASET_DIRNAME = "MICCAI_BraTS_2018_Data_Training"
MODALITIES = ("t1", "t1ce", "t2", "flair")
BRATS_SHAPE_MM = (240, 240, 155)
NOTICE_NAME = "MNI152_NOTICE.txt"
MNI_NOTICE = """\
The synthetic images in this folder are derived from the MNI ICBM152 2009 nonlinear symmetric
template (T1 and tissue probability maps) as distributed with nilearn.

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and
its documentation for any purpose and without fee is hereby granted, provided that the above
copyright notice appear in all copies. The authors and McGill University make no representations
about the suitability of this software for any purpose. It is provided "as is" without express
or implied warranty. The authors are not responsible for any data loss, equipment damage,
property loss, or injury to subjects or patients resulting from the use or misuse of this
software package.

References: V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli and D.L. Collins, Unbiased
nonlinear average age-appropriate brain templates from birth to adulthood, NeuroImage 47 (2009)
S102; V. Fonov, A.C. Evans, K. Botteron, C.R. Almli, R.C. McKinstry, D.L. Collins and BDCG,
Unbiased average age-appropriate atlases for pediatric studies, NeuroImage 54 (2011) 313-327.
"""

# Mean intensity per tissue and modality (arbitrary scanner units). Order of tissues:
# CSF, GM, WM, edema, necrosis / non-enhancing core, enhancing tumour, LGG mass.
TISSUES = ("csf", "gm", "wm", "edema", "necrosis", "enhancing", "lgg_mass")
CONTRAST = {
    "t1": (260.0, 560.0, 760.0, 470.0, 230.0, 520.0, 380.0),
    "t1ce": (270.0, 580.0, 780.0, 490.0, 220.0, 1550.0, 400.0),
    "t2": (1500.0, 820.0, 600.0, 1180.0, 1550.0, 950.0, 1300.0),
    "flair": (160.0, 560.0, 460.0, 1050.0, 640.0, 820.0, 980.0),
}


@dataclass(frozen=True)
class Template:
    """MNI maps as float32 arrays plus their voxel-to-world affine."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray
    center: np.ndarray  # world coordinates of the brain's centre of mass
    bounds: np.ndarray  # voxel bounding box of the brain, [[min, max] per axis]


def _nilearn_data_dir() -> Path:
    try:
        import nilearn
    except ImportError as err:  # an optional dependency: say how to get it
        raise ImportError(
            "the synthetic generator builds on the MNI152 template shipped with nilearn: "
            "pip install 'brats-grading-bundles[synthetic]' (or pip install nilearn)"
        ) from err
    return Path(nilearn.__file__).parent / "datasets" / "data"


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Load the MNI T1 / GM / WM maps once per process (the T1 is brain-masked: its support is the mask)."""
    folder = _nilearn_data_dir()

    def read(name: str) -> nib.Nifti1Image:
        path = folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
        if not path.is_file():
            raise FileNotFoundError(f"MNI template file {path} is missing from the nilearn installation")
        return nib.load(str(path))

    t1 = read("t1")
    mask = np.asarray(t1.dataobj) > 0
    gm = np.asarray(read("gm").dataobj, dtype=np.float32) / 255.0 * mask
    wm = np.asarray(read("wm").dataobj, dtype=np.float32) / 255.0 * mask
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0)
    voxels = np.argwhere(mask)
    center = (t1.affine @ np.append(voxels.mean(axis=0), 1.0))[:3]
    bounds = np.stack([voxels.min(axis=0), voxels.max(axis=0)], axis=1).astype(np.float64)
    return Template(gm=gm, wm=wm, csf=csf, affine=t1.affine.astype(np.float64), center=center, bounds=bounds)


def brats_grid(voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Grid shape and affine of the BraTS (SRI24, LPS) space at ``voxel_mm`` spacing."""
    shape = tuple(int(round(n / voxel_mm)) for n in BRATS_SHAPE_MM)
    affine = np.diag([-voxel_mm, -voxel_mm, voxel_mm, 1.0])
    affine[1, 3] = 239.0
    return shape, affine  # type: ignore[return-value]


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """Zero-mean, unit-std noise smooth over ~``cell`` voxels: drawn on a coarse grid, upsampled trilinearly.

    Trilinear (order 1) zoom is ~8x cheaper than cubic and smooth enough for bias fields and texture.
    """
    coarse = tuple(max(2, int(np.ceil(s / cell)) + 1) for s in shape)
    field = rng.standard_normal(coarse, dtype=np.float32)
    out = ndimage.zoom(
        field, [s / c for s, c in zip(shape, coarse, strict=True)], order=1, grid_mode=True, mode="nearest"
    )
    out = out[tuple(slice(0, s) for s in shape)]
    out -= out.mean()
    out /= out.std() + 1e-6
    return out


def _separable_field(rng: np.random.Generator, shape: tuple[int, ...], cell: float) -> np.ndarray:
    """A smooth field as the sum of one smooth random curve per axis: a bias field at the cost of one pass."""
    field = np.zeros(shape, np.float32)
    for axis, n in enumerate(shape):
        curve = _smooth_noise(rng, (n,), cell)
        field += curve.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return field / np.sqrt(len(shape))


def _brain_box(
    to_template: np.ndarray, bounds: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Grid box (start, stop) covering the template brain's bounding box after the warp, with a margin."""
    corners = np.array([[bounds[i][c] for i, c in enumerate(idx)] + [1.0] for idx in np.ndindex(2, 2, 2)])
    grid = (np.linalg.inv(to_template) @ corners.T)[:3].T
    start = np.clip(np.floor(grid.min(axis=0)) - 2, 0, None).astype(int)
    stop = np.minimum(np.ceil(grid.max(axis=0)) + 3, shape).astype(int)
    return start, stop


@dataclass(frozen=True)
class Phenotype:
    """The tumour's appearance for one case, drawn from grade and difficulty."""

    radius_mm: float
    necrosis: bool
    enhancing: bool
    ring_gap: float  # fraction of the rim without enhancement
    enhancement: float  # 0..1 strength of T1ce enhancement
    edema_extent: float  # edema reach in units of the tumour radius
    heterogeneity: float  # std of the multiplicative texture inside the tumour


def draw_phenotype(grade: str, difficulty: float, rng: np.random.Generator) -> Phenotype:
    d = float(np.clip(difficulty, 0.0, 1.0))
    if grade == "HGG":
        atypical = rng.random() < 0.03 + 0.45 * d
        return Phenotype(
            radius_mm=rng.uniform(16, 28),
            necrosis=not atypical,
            enhancing=not atypical or rng.random() < 0.5,
            ring_gap=rng.uniform(0.0, 0.4),
            enhancement=rng.uniform(0.8, 1.0) * (1.0 - 0.6 * d * rng.random()),
            edema_extent=rng.uniform(1.6, 2.3) - 0.5 * d * rng.random(),
            heterogeneity=rng.uniform(0.10, 0.18) * (1.0 - 0.5 * d * rng.random()),
        )
    if grade == "LGG":
        enhancing = rng.random() < 0.05 + 0.45 * d
        return Phenotype(
            radius_mm=rng.uniform(13, 24),
            necrosis=rng.random() < 0.35 * d,
            enhancing=enhancing,
            ring_gap=rng.uniform(0.5, 0.9),
            enhancement=rng.uniform(0.3, 0.6) + 0.3 * d * rng.random(),
            edema_extent=rng.uniform(1.1, 1.35) + 0.4 * d * rng.random(),
            heterogeneity=rng.uniform(0.02, 0.05) + 0.08 * d * rng.random(),
        )
    raise ValueError(f"grade must be 'HGG' or 'LGG', got {grade!r}")


def _tumour_labels(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    voxel_mm: float,
    wm: np.ndarray,
    brain: np.ndarray,
    p: Phenotype,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """BraTS labels (0/1/2/4) of a tumour grown in white matter; returns labels of a box and the box."""
    candidates = np.argwhere((wm > 0.6) & brain)
    if len(candidates) == 0:
        raise RuntimeError("no white matter in the warped template: cannot place a tumour")
    # keep the tumour away from the brain's edge: prefer candidates deep inside
    deep = ndimage.distance_transform_edt(brain[::2, ::2, ::2]) * 2 * voxel_mm
    depth = deep[tuple((candidates // 2).T)]
    inner = candidates[depth > p.radius_mm * 0.8]
    centre = (inner if len(inner) else candidates)[
        rng.integers(len(inner) if len(inner) else len(candidates))
    ]
    radius_vox = p.radius_mm / voxel_mm
    reach = int(np.ceil(radius_vox * (p.edema_extent + 0.3))) + 2
    box = tuple(slice(max(0, c - reach), min(n, c + reach + 1)) for c, n in zip(centre, shape, strict=True))
    grids = np.meshgrid(
        *[np.arange(s.start, s.stop) - c for s, c in zip(box, centre, strict=True)], indexing="ij"
    )
    axes = radius_vox * rng.uniform(0.75, 1.25, size=3)
    rot = _rotation(rng.uniform(-np.pi, np.pi, size=3))
    coords = np.tensordot(rot, np.stack(grids).astype(np.float32), axes=1)
    level = np.sqrt(sum((coords[i] / axes[i]) ** 2 for i in range(3)))
    box_shape = level.shape
    level = level + 0.18 * _smooth_noise(rng, box_shape, max(2.0, radius_vox / 3))
    labels = np.zeros(box_shape, np.uint8)
    wm_box, brain_box = wm[box], brain[box]
    # edema reaches further along white matter (vasogenic edema tracks fibre bundles)
    edema_limit = 1.0 + (p.edema_extent - 1.0) * (0.35 + 0.65 * np.clip(wm_box, 0, 1))
    labels[level < edema_limit] = 2
    core = level < 1.0
    labels[core] = 1
    if p.enhancing:
        inner_edge = 0.72 if p.necrosis else 0.0
        rim = core & (level >= inner_edge)
        angle = np.arctan2(coords[1], coords[0])
        gap_start = rng.uniform(-np.pi, np.pi)
        in_gap = ((angle - gap_start) % (2 * np.pi)) < p.ring_gap * 2 * np.pi
        if not p.necrosis:  # solid enhancement: patchy rather than a ring
            rim &= _smooth_noise(rng, box_shape, max(2.0, radius_vox / 2)) > 0.2
        labels[rim & ~in_gap] = 4
    labels[~brain_box] = 0
    return labels, box


def generate_case(
    case_id: str, grade: str, seed: int, difficulty: float, voxel_mm: float
) -> dict[str, np.ndarray]:
    """Arrays of the five files of one case (four int16 modalities and the uint8 ``seg``); pure in its inputs."""
    case_number = int(case_id.split("_")[2])
    rng = np.random.default_rng(np.random.SeedSequence([seed, case_number]))
    tpl = load_template()
    shape, affine = brats_grid(voxel_mm)

    # similarity warp: BraTS voxel -> BraTS world -> (rotate, scale, shift, mirror) -> MNI world -> MNI voxel
    scale = rng.uniform(0.92, 1.04)
    rot = _rotation(np.deg2rad(rng.uniform(-4, 4, size=3)))
    mirror = np.diag([-1.0 if rng.random() < 0.5 else 1.0, 1.0, 1.0])
    shift = rng.uniform(-4, 4, size=3)
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    grid_centre_world = affine[:3, :3] @ ((np.array(shape) - 1) / 2.0) + affine[:3, 3]
    world_to_mni = mirror @ rot @ lps_to_ras / scale
    vox_to_mni_world = np.eye(4)
    vox_to_mni_world[:3, :3] = world_to_mni @ affine[:3, :3]
    vox_to_mni_world[:3, 3] = world_to_mni @ (affine[:3, 3] - grid_centre_world) + tpl.center + shift
    to_template = np.linalg.inv(tpl.affine) @ vox_to_mni_world
    # work only inside the box of the grid that the template's brain lands in (about half of the grid)
    start, stop = _brain_box(to_template, tpl.bounds, shape)
    sub_shape = tuple(int(b - a) for a, b in zip(start, stop, strict=True))
    matrix = to_template[:3, :3]
    offset = to_template[:3, 3] + matrix @ start
    # pre-smooth before down-sampling so coarse grids keep partial volumes, not aliasing
    sigma = max(0.0, (voxel_mm * scale - 1.0) / 2.0)

    def warp(volume: np.ndarray) -> np.ndarray:
        source = ndimage.gaussian_filter(volume, sigma) if sigma > 0.25 else volume
        return ndimage.affine_transform(
            source, matrix, offset, output_shape=sub_shape, order=1, prefilter=False
        )

    gm, wm, csf = warp(tpl.gm), warp(tpl.wm), warp(tpl.csf)
    brain = (gm + wm + csf) > 0.5
    full_box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    shape, grid_shape = sub_shape, shape

    phenotype = draw_phenotype(grade, difficulty, rng)
    labels_box, box = _tumour_labels(rng, shape, voxel_mm, wm, brain, phenotype)
    seg = np.zeros(shape, np.uint8)
    seg[box] = labels_box

    # tumour tissue fractions (partial-volume edges), computed in the tumour's box only
    box_labels = seg[box]
    tumour_tissue = {2: "edema", 4: "enhancing", 1: "necrosis" if phenotype.necrosis else "lgg_mass"}
    parts = {
        tissue: ndimage.gaussian_filter((box_labels == label).astype(np.float32), 0.6)
        for label, tissue in tumour_tissue.items()
    }
    normal_box = np.clip(1.0 - sum(parts.values()), 0.0, 1.0)
    total = gm + wm + csf + 1e-6

    d = float(np.clip(difficulty, 0.0, 1.0))
    texture = 1.0 + phenotype.heterogeneity * _smooth_noise(rng, normal_box.shape, 3.0 / voxel_mm) * (
        box_labels > 0
    )
    noise_sigma = rng.uniform(0.015, 0.03) * (1.0 + 1.5 * d)
    bias_amplitude = rng.uniform(0.05, 0.12) * (1.0 + 1.5 * d)

    images: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        means = dict(zip(TISSUES, CONTRAST[modality], strict=True))
        if modality == "t1ce":  # enhancement strength varies by case
            means["enhancing"] = means["gm"] + phenotype.enhancement * (means["enhancing"] - means["gm"])
        image = (csf * means["csf"] + gm * means["gm"] + wm * means["wm"]) / total
        tumour_part = sum(parts[t] * means[t] for t in parts)
        image[box] = (image[box] * normal_box + tumour_part) * texture
        bias = np.exp(bias_amplitude * _separable_field(rng, shape, 60.0 / voxel_mm))
        image *= bias * np.float32(rng.uniform(0.85, 1.15))  # smooth bias field and per-case gain
        scale_noise = np.float32(noise_sigma * float(np.percentile(image[brain], 95)))
        real = image + scale_noise * rng.standard_normal(shape, dtype=np.float32)
        imag = scale_noise * rng.standard_normal(shape, dtype=np.float32)
        image = np.sqrt(real * real + imag * imag)  # Rician magnitude noise
        images[modality] = np.where(brain, np.clip(np.rint(image), 1, 32767), 0).astype(np.int16)
    seg[~brain] = 0
    images["seg"] = seg
    full = {}
    for name, array in images.items():
        full[name] = np.zeros(grid_shape, array.dtype)
        full[name][full_box] = array
    return full


def _nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """gzip-compressed NIfTI with a fixed header and gzip mtime 0: same input, same bytes."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0, filename="") as handle:
        handle.write(image.to_bytes())
    return buffer.getvalue()


def _write_case(job: tuple[Path, str, str, int, float, float]) -> str:
    root, case_id, grade, seed, difficulty, voxel_mm = job
    arrays = generate_case(case_id, grade, seed, difficulty, voxel_mm)
    _, affine = brats_grid(voxel_mm)
    folder = root / grade / case_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / f"{case_id}_{name}.nii.gz").write_bytes(_nifti_bytes(array, affine))
    return case_id


def case_list(n_hgg: int, n_lgg: int, seed: int) -> list[tuple[str, str]]:
    """``(id, grade)`` for every case; grades are assigned to the numbered ids by a seeded permutation."""
    if n_hgg < 0 or n_lgg < 0 or n_hgg + n_lgg == 0:
        raise ValueError(f"need a positive number of cases, got n_hgg={n_hgg}, n_lgg={n_lgg}")
    total = n_hgg + n_lgg
    order = np.random.default_rng(np.random.SeedSequence([seed, 10**6])).permutation(total)
    grades = ["HGG" if rank < n_hgg else "LGG" for rank in np.argsort(order)]
    return [(f"Brats18_SYN_{i + 1:04d}_1", grades[i]) for i in range(total)]


def _survival_rows(cases: list[tuple[str, str]], seed: int) -> list[list]:
    rows = []
    for case_id, grade in cases:
        if grade != "HGG":
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(case_id.split("_")[2]), 7]))
        age = float(np.clip(rng.normal(61, 12), 20, 85))
        survival = int(np.clip(rng.gamma(2.0, 220.0), 5, 1800))
        resection = ["GTR", "STR", "NA"][rng.choice(3, p=[0.45, 0.15, 0.40])]
        rows.append([case_id, f"{age:.3f}", survival, resection])
    return rows


def generate_dataset(
    output_dir: str | Path,
    n_hgg: int = 210,
    n_lgg: int = 75,
    seed: int = 0,
    difficulty: float = 0.5,
    voxel_mm: float = 1.0,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic BraTS 2018 training folder under ``output_dir``; return its root.

    Layout: ``<output_dir>/MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<ID>/<ID>_{t1,t1ce,t2,flair,seg}.nii.gz``
    plus ``survival_data.csv`` (HGG only) and the MNI template notice. An existing non-empty
    dataset folder is kept (error) unless ``overwrite``.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if voxel_mm <= 0:
        raise ValueError(f"voxel_mm must be positive, got {voxel_mm}")
    root = Path(output_dir) / DATASET_DIRNAME
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{root} already holds data; choose another --output-dir or pass --overwrite"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = case_list(n_hgg, n_lgg, seed)
    jobs = [(root, case_id, grade, seed, difficulty, voxel_mm) for case_id, grade in cases]
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for job in jobs:
            _write_case(job)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_case, jobs, chunksize=1))
    with open(root / "survival_data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["BraTS18ID", "Age", "Survival", "ResectionStatus"])
        writer.writerows(_survival_rows(cases, seed))
    (root / NOTICE_NAME).write_text(MNI_NOTICE)
    return root
