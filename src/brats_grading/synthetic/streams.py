"""Seeded random streams of one case.

Every case is a pure function of ``(seed, case_id, ...)``: its random numbers come from a
``SeedSequence`` of the dataset seed and a stable hash of the case id, split into independent
streams, so cases can be generated in any order or process and stay byte-identical.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _case_hash(case_id: str) -> int:
    """Stable 63-bit integer of a case id (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "little") >> 1


def _case_streams(case_id: str, seed: int) -> list[np.random.Generator]:
    """Independent generators for anatomy, tumour, intensities, noise, survival and site of one case.

    Separate streams keep, e.g., the anatomy of a case unchanged when the tumour model or the
    voxel size (which changes how much noise is drawn) changes. The site stream (last) serves only
    what a non-reference acquisition site draws in addition, so the other five stay as they were
    (a ``SeedSequence``'s n-th child does not depend on how many are spawned).
    """
    _check_seed(seed)
    ss = np.random.SeedSequence([int(seed), _case_hash(case_id)])
    return [np.random.default_rng(child) for child in ss.spawn(6)]


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
