"""Kantorovich-type coupling: secondary support points and a Markov kernel from primary grid cells to them.

Support points are k-means centroids of the secondary embedding. The kernel row of a grid cell at ``x`` is the
distribution of the secondary labels of the paired cells near ``x``,

    K(x, j) = sum_c w_c(x) [label_c = j] / sum_c w_c(x),   w_c(x) = exp(-|x - x_c|^2 / (2 h^2)),

so every grid cell has a probability row (far from the cells the nearest ones dominate). Entries below
``threshold`` times the row maximum are dropped and the rows renormalized, which keeps the kernel sparse.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..solvers import Grid
from .densities import scott_bandwidth

_CHUNK = 2048  # grid cells per block: bounds memory to _CHUNK x n_cells


def secondary_support(y: np.ndarray, n_support: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Support points of the secondary coordinates and each cell's label: k-means centroids, or the points.

    Repeated coordinates are merged first (measurements at a detection limit repeat exactly). With at most
    ``n_support`` distinct points these are the support; otherwise scikit-learn's k-means (k-means++ starts,
    ``n_init=4``, weighted by the multiplicities), whose clusters are never empty, gives the centroids.

    Returns
    -------
    support
        ``(n_support', dY)`` points, ``n_support' <= n_support``.
    labels
        ``(n,)`` index of each cell's support point.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if not 2 <= n_support:
        raise ValueError(f"n_support: expected at least 2 support points, got {n_support}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y: expected finite secondary coordinates, found NaN or inf (drop unpaired cells first)")
    if len(y) < n_support:
        raise ValueError(f"n_support: {n_support} support points need at least as many cells, got {len(y)}")
    unique, inverse, counts = np.unique(y, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if len(unique) < 2:
        raise ValueError("y: all cells have the same secondary coordinates; expected at least two distinct points")
    if len(unique) <= n_support:
        return unique, inverse
    from sklearn.cluster import KMeans  # noqa: PLC0415 (scikit-learn comes with scanpy; imported when needed)

    km = KMeans(n_clusters=n_support, n_init=4, random_state=seed).fit(unique, sample_weight=counts)
    return km.cluster_centers_, km.labels_[inverse]


def kantorovich_kernel(
    x: np.ndarray,
    labels: np.ndarray,
    grid: Grid,
    n_support: int | None = None,
    bandwidth: float | None = None,
    threshold: float = 1e-4,
) -> sp.csr_matrix:
    """Row-stochastic sparse kernel ``(grid.n_cells, n_support)`` from grid cells to secondary support points.

    Parameters
    ----------
    x
        ``(n, d)`` primary coordinates of the paired cells.
    labels
        ``(n,)`` support point of each cell (from :func:`secondary_support`).
    grid
        The primary grid; rows follow ``grid.points().reshape(-1, d)``.
    n_support
        Number of support points (default ``labels.max() + 1``).
    bandwidth
        Width ``h`` of the primary kernel; default Scott's rule (mean over axes), at least one grid cell.
    threshold
        Relative size below which entries are dropped.
    """
    x = np.asarray(x, dtype=float)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[1] != grid.ndim or len(labels) != len(x):
        raise ValueError(f"x, labels: expected (n, {grid.ndim}) points and n labels, got {x.shape}, {labels.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x: expected finite coordinates, found NaN or inf")
    n_support = int(labels.max()) + 1 if n_support is None else n_support
    h = float(np.mean(scott_bandwidth(x))) if bandwidth is None else float(bandwidth)
    h = max(h, max(grid.spacing))
    onehot = sp.csr_matrix((np.ones(len(x)), (np.arange(len(x)), labels)), shape=(len(x), n_support))
    pts = grid.points().reshape(-1, grid.ndim)
    blocks = []
    for start in range(0, len(pts), _CHUNK):
        q = pts[start : start + _CHUNK]
        logw = -np.square(q[:, None, :] - x[None]).sum(-1) / (2 * h * h)
        w = np.exp(logw - logw.max(1, keepdims=True))
        rows = np.asarray((onehot.T @ w.T).T)  # (chunk, n_support)
        rows[rows < threshold * rows.max(1, keepdims=True)] = 0.0
        blocks.append(sp.csr_matrix(rows / rows.sum(1, keepdims=True)))
    return sp.vstack(blocks, format="csr")
