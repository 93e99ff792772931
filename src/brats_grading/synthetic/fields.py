"""Smooth random fields: cubic B-splines on a millimetre lattice.

Tumour shape, oedema reach, enhancement patchiness, texture and the bias fields are all such
fields.  They are evaluated separably (three small tensor products), which is far cheaper than
zooming a noise grid, and their node values are drawn in millimetres so the random stream does not
depend on the voxel size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


def _bspline_matrix(x_mm: NDArray[np.float64], start_mm: float, step_mm: float, n_nodes: int) -> NDArray:
    """Rows of cubic B-spline weights of the lattice nodes for positions ``x_mm``.

    Rows are L2-normalised so that i.i.d. unit-normal node values give a unit-variance field at
    every position, whatever the voxel size.
    """
    t = (np.asarray(x_mm, dtype=np.float64) - start_mm) / step_mm
    i = np.floor(t).astype(np.int64)
    f = t - i
    w = np.stack(
        [(1 - f) ** 3 / 6, (3 * f**3 - 6 * f**2 + 4) / 6, (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6, f**3 / 6], axis=1
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
