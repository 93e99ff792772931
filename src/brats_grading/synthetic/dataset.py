"""Dataset level: case ids, grade assignment, clinical rows and the parallel dataset writer.

Case ids are numbered 1..N and grades are assigned to the numbers by a seeded permutation, so an id
carries no grade information.  Cases are independent pure functions of the seed, so they run in a
process pool, each worker writing its own files (arrays never cross processes), and the output does
not depend on the number of workers.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .case import generate_case
from .geometry import _check_voxel_mm, brats_affine
from .layout import DATASET_DIRNAME, MAX_CASES
from .nifti_io import _write_case_files, _write_notice, _write_survival_csv
from .site import site_profile
from .streams import _case_streams, _check_seed
from .template import _template_dir

logger = logging.getLogger(__name__)


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


def _write_case(job: tuple[str, str, int, float, float, str, str]) -> tuple[str, str, float]:
    """Worker: generate one case and write its five files (arrays never cross processes)."""
    cid, grade, seed, difficulty, voxel_mm, site, root = job
    start = time.perf_counter()
    arrays = generate_case(cid, grade, seed, difficulty, voxel_mm, site)
    _write_case_files(Path(root) / grade / cid, cid, arrays, brats_affine(voxel_mm))
    return cid, grade, time.perf_counter() - start


def _worker_init() -> None:
    """One BLAS thread per worker: the workers already use every core."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        pass


def _check_dataset_args(
    n_hgg: int, n_lgg: int, seed: int, difficulty: float, voxel_mm: float, workers: int | None
) -> None:
    """Reject invalid arguments before anything is written."""
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


def _prepare_root(output_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create the empty dataset root; refuse a non-empty one unless ``overwrite`` (then delete it)."""
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
    return root


def _run_jobs(jobs: list[tuple[str, str, int, float, float, str, str]], n_workers: int) -> None:
    """Generate and write every case, serially or in ``n_workers`` processes, logging progress."""

    def report(done: int, result: tuple[str, str, float]) -> None:
        logger.info("[%d/%d] %s (%s) %.1f s", done, len(jobs), result[0], result[1], result[2])

    if n_workers == 1:
        for k, job in enumerate(jobs, 1):
            report(k, _write_case(job))
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=n_workers, initializer=_worker_init) as pool:
            for k, result in enumerate(pool.map(_write_case, jobs, chunksize=1), 1):
                report(k, result)


def generate_dataset(
    output_dir: str | os.PathLike[str],
    n_hgg: int = 210,
    n_lgg: int = 75,
    seed: int = 0,
    difficulty: float = 0.5,
    voxel_mm: float = 1.0,
    workers: int | None = None,
    overwrite: bool = False,
    site: str = "reference",
) -> Path:
    """Write a synthetic BraTS 2018 training set and return its root folder.

    Layout: ``output_dir/MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<ID>/<ID>_{t1,t1ce,t2,flair,seg}.nii.gz``
    plus ``survival_data.csv`` (HGG cases only) and the MNI152 copyright notice.  Cases run in
    ``workers`` processes (``None``: all cores); the output does not depend on ``workers``. ``site``
    (:data:`.site.SITES`) images the same patients with another scanner and tumour-shape parameter set.
    """
    _check_dataset_args(n_hgg, n_lgg, seed, difficulty, voxel_mm, workers)
    site_profile(site)
    _template_dir()  # fail early with a clear message if nilearn is missing
    root = _prepare_root(output_dir, overwrite)

    cases = assign_grades(int(n_hgg), int(n_lgg), int(seed))
    jobs = [(cid, g, int(seed), float(difficulty), float(voxel_mm), site, str(root)) for cid, g in cases]
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    start = time.perf_counter()
    _run_jobs(jobs, n_workers)

    _write_survival_csv(root, (survival_record(cid, int(seed)) for cid, g in cases if g == "HGG"))
    _write_notice(root)
    logger.info(
        "wrote %d cases to %s in %.1f s with %d worker(s)", len(jobs), root, time.perf_counter() - start, n_workers
    )
    return root
