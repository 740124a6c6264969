"""Ready-made problems with known answers: the oracles of the Mathematics page section 6.

Each builder returns ``(problem, exact)`` where ``exact`` is the closed-form value of the continuous problem; the
discrete optimum approaches it as the grid is refined. Tests, benchmarks and the demo share them.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import sqrtm

from .closed_forms import bures_wasserstein2, gaussian_density, wfr_diracs, wfr_pure_growth
from .grid import Grid
from .problem import MongeSecondary, SyncOTProblem

UNIT_BOX = ((0.0, 1.0), (0.0, 1.0))

# Two anisotropic Gaussians well inside the unit square (at least 4.5 standard deviations from the edges).
MEAN0, COV0 = np.array([0.35, 0.38]), np.array([[0.055**2, 0.0], [0.0, 0.045**2]])
MEAN1, COV1 = np.array([0.62, 0.6]), np.array([[0.045**2, 0.0008], [0.0008, 0.06**2]])


def balanced_gaussians(n: int = 64, n_time: int = 32) -> tuple[SyncOTProblem, float]:
    """Oracle 1: balanced transport between two Gaussians, ``W2^2 = |a - b|^2 + Bures^2(A, B)``."""
    grid = Grid(UNIT_BOX, (n, n), n_time)
    problem = SyncOTProblem(grid, gaussian_density(grid, MEAN0, COV0), gaussian_density(grid, MEAN1, COV1))
    return problem, bures_wasserstein2(MEAN0, COV0, MEAN1, COV1)


LINEAR_MAP = np.array([[1.0, 0.4], [0.0, 0.7], [0.5, -0.3]])  # T(x) = M x, R^2 -> R^3


def linear_monge(n: int = 64, n_time: int = 32, weight: float = 1.0) -> tuple[SyncOTProblem, float]:
    """Oracle 2: Monge secondary with linear ``T(x) = M x``.

    ``G = I + weight M^T M`` is constant, so the optimum is ``W2^2`` between the pushforwards by ``G^{1/2}``,
    in closed form for Gaussians.
    """
    problem, _ = balanced_gaussians(n, n_time)
    secondary = MongeSecondary(lambda x: x @ LINEAR_MAP.T, weight=weight)
    problem = SyncOTProblem(problem.grid, problem.rho0[0], problem.rho1[0], secondaries=[secondary])
    root = np.real(sqrtm(np.eye(2) + weight * LINEAR_MAP.T @ LINEAR_MAP))
    exact = bures_wasserstein2(root @ MEAN0, root @ COV0 @ root, root @ MEAN1, root @ COV1 @ root)
    return problem, exact


def pure_growth(n: int = 64, n_time: int = 32, delta: float = 0.3, ratio: float = 2.5) -> tuple[SyncOTProblem, float]:
    """Oracle 3: ``rho1 = c rho0``, ``WFR_delta^2 = 4 delta^2 (sqrt(c) - 1)^2 |rho0|``, no motion."""
    grid = Grid(UNIT_BOX, (n, n), n_time)
    rho0 = gaussian_density(grid, MEAN0, COV0) + 0.5 * gaussian_density(grid, MEAN1, COV1)
    problem = SyncOTProblem(grid, rho0, ratio * rho0, delta=delta)
    return problem, wfr_pure_growth(delta, ratio, float(grid.mass(rho0)))


def two_bumps(
    n: int = 64, n_time: int = 32, delta: float = 0.2, masses=(1.0, 0.6), distance: float = 0.3, width: float = 0.025
) -> tuple[SyncOTProblem, float]:
    """Oracle 4: two small bumps of masses ``m0, m1`` at ``distance < pi delta``; Dirac formula, bump-width error."""
    grid = Grid(UNIT_BOX, (n, n), n_time)
    centre = np.array([0.5, 0.5])
    shift = np.array([distance / 2, 0.0])
    cov = np.eye(2) * width**2
    rho0 = gaussian_density(grid, centre - shift, cov, mass=masses[0])
    rho1 = gaussian_density(grid, centre + shift, cov, mass=masses[1])
    return SyncOTProblem(grid, rho0, rho1, delta=delta), wfr_diracs(delta, *masses, distance)


ORACLES = {
    "balanced_gaussians": balanced_gaussians,
    "linear_monge": linear_monge,
    "pure_growth": pure_growth,
    "two_bumps": two_bumps,
}


def smooth_embedding(points: np.ndarray, dim: int = 10) -> np.ndarray:
    """A smooth injective image of ``[0, 1]^d`` points in ``R^dim``: the coordinates, then sines and cosines."""
    pts = np.asarray(points, dtype=float)
    cols = [pts[:, i] for i in range(pts.shape[1])]
    k = 1
    while len(cols) < dim:
        for i in range(pts.shape[1]):
            cols.append(0.3 * np.sin(np.pi * k * pts[:, i] + 0.5 * pts[:, (i + 1) % pts.shape[1]]) / k)
            cols.append(0.3 * np.cos(np.pi * k * pts[:, i]) / k)
        k += 1
    return np.stack(cols[:dim], axis=1)


def knn_kernel(sources: np.ndarray, support: np.ndarray, k: int = 8, bandwidth: float | None = None):
    """Sparse row-stochastic kernel: each source spreads over its ``k`` nearest support points, Gaussian weights.

    The bandwidth is the median distance to the ``k``-th neighbour unless given.
    """
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(support).query(sources, k=k)
    dist, idx = dist.reshape(len(sources), -1), idx.reshape(len(sources), -1)
    h = float(np.median(dist[:, -1])) if bandwidth is None else bandwidth
    w = np.exp(-0.5 * (dist / max(h, 1e-12)) ** 2)
    w /= w.sum(1, keepdims=True)
    rows = np.repeat(np.arange(len(sources)), idx.shape[1])
    return sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(sources), len(support)))


def embedded_secondary(
    n: int = 64,
    n_time: int = 32,
    n_support: int = 1000,
    dim: int = 10,
    weight: float = 1.0,
    delta: float | None = 0.3,
    epsilon: float | None = None,
    seed: int = 0,
) -> SyncOTProblem:
    """Two Gaussians on the unit square synchronized with a Kantorovich secondary in ``R^dim``.

    The support points are random points of the smooth image of the square (:func:`smooth_embedding`), the
    kernel is :func:`knn_kernel` from the cells' images. Unbalanced (masses 1 and 1.5, growth scale ``delta``)
    unless ``delta`` is ``None`` (the balanced Gaussians of oracle 1).
    """
    from .kantorovich import KantorovichSecondary

    grid = Grid(UNIT_BOX, (n, n), n_time)
    rng = np.random.default_rng(seed)
    cells = smooth_embedding(grid.points().reshape(-1, 2), dim)
    support = smooth_embedding(rng.random((n_support, 2)), dim)
    kernel = knn_kernel(cells, support)
    sec = KantorovichSecondary(kernel, support, weight=weight, delta=delta, epsilon=epsilon)
    rho0 = gaussian_density(grid, MEAN0, COV0)
    rho1 = gaussian_density(grid, MEAN1, COV1, mass=1.0 if delta is None else 1.5)
    return SyncOTProblem(grid, rho0, rho1, delta=delta, secondaries=[sec])


def gaussians_on_a_graph(
    n: int,
    dim: int = 10,
    n_time: int = 8,
    n_neighbors: int = 10,
    seed: int = 0,
    times=(0.0, 1.0),
    **graph_kwargs,
) -> tuple[SyncOTProblem, float | np.ndarray]:
    """Balanced transport between two Gaussians in ``dim`` dimensions, on a kNN graph of ``n`` sampled nodes.

    The nodes cover the path between the two, not only its ends (Mathematics page, section 7): each is drawn from the
    McCann interpolant at a time uniform in ``[-0.1, 1.1]``. The masses are importance weights, ``p_t(x_i) / q(x_i)``
    normalized, with ``q`` the nodes' sampling density (the interpolants averaged over 97 times), so that each
    node measure tends to its Gaussian as ``n`` grows. ``times``: the interpolants whose consecutive pairs are the
    problems of a batch (``(0, 1)``: one problem between the two Gaussians); ``exact`` is ``(t_{k+1} - t_k)^2 W2^2``
    per pair, a float for one pair. The graph's cost carries both the graph's discretization error and the
    sampling error of the node measures.
    """
    from scipy.stats import multivariate_normal  # noqa: PLC0415

    from .graph import Graph  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    mean0, mean1 = np.zeros(dim), np.zeros(dim)
    mean1[:2] = [2.0, 1.0]
    sd0, sd1 = np.linspace(0.25, 0.75, dim), np.linspace(0.6, 0.3, dim)  # diagonal covariances

    def interpolant(t):  # McCann: x -> (1 - t) x + t T x, T the diagonal map sd1 / sd0 between centred Gaussians
        return (1 - t) * mean0 + t * mean1, np.diag(((1 - t) * sd0 + t * sd1) ** 2)

    t_nodes = rng.uniform(-0.1, 1.1, n)[:, None]
    x = (1 - t_nodes) * mean0 + t_nodes * mean1 + ((1 - t_nodes) * sd0 + t_nodes * sd1) * rng.normal(size=(n, dim))
    q = np.mean([multivariate_normal(*interpolant(t)).pdf(x) for t in np.linspace(-0.1, 1.1, 97)], axis=0)
    masses = np.stack([multivariate_normal(*interpolant(t)).pdf(x) / q for t in times])
    masses /= masses.sum(1, keepdims=True)
    graph = Graph(x, n_time, n_neighbors=n_neighbors, **graph_kwargs)
    problem = SyncOTProblem(graph, masses[:-1], masses[1:])
    w2 = bures_wasserstein2(mean0, np.diag(sd0**2), mean1, np.diag(sd1**2))
    exact = np.diff(np.asarray(times, dtype=float)) ** 2 * w2
    return problem, float(exact[0]) if len(exact) == 1 else exact
