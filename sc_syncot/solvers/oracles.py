"""Ready-made problems with known answers: the oracles of math.md section 6.

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
