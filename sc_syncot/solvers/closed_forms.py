"""Closed-form values that the solvers are checked against (Mathematics page, section 6)."""

from __future__ import annotations

import numpy as np
from scipy.linalg import sqrtm

from .grid import Grid


def gaussian_density(grid: Grid, mean, cov, mass: float = 1.0) -> np.ndarray:
    """``mass * N(mean, cov)`` at the cell centres, renormalized so that its grid mass is exactly ``mass``."""
    x = grid.points() - np.asarray(mean, dtype=float)
    prec = np.linalg.inv(np.atleast_2d(cov))
    dens = np.exp(-0.5 * np.einsum("...i,ij,...j->...", x, prec, x))
    return mass * dens / (dens.sum() * grid.cell_volume)


def bures_wasserstein2(mean0, cov0, mean1, cov1) -> float:
    """``W2^2(N(a, A), N(b, B)) = |a - b|^2 + tr A + tr B - 2 tr (A^{1/2} B A^{1/2})^{1/2}``."""
    a, b = np.atleast_2d(cov0), np.atleast_2d(cov1)
    root = sqrtm(a)
    cross = np.real(sqrtm(root @ b @ root))
    diff = np.asarray(mean0, dtype=float) - np.asarray(mean1, dtype=float)
    return float(diff @ diff + np.trace(a) + np.trace(b) - 2 * np.trace(cross))


def wfr_pure_growth(delta: float, ratio: float, mass0: float) -> float:
    """``WFR_delta^2(rho0, c rho0) = 4 delta^2 (sqrt(c) - 1)^2 |rho0|`` (no transport)."""
    return 4 * delta**2 * (np.sqrt(ratio) - 1) ** 2 * mass0


def wfr_pure_growth_path(t, ratio: float):
    """The optimal path factor ``rho_t / rho0 = ((1 - t) + t sqrt(c))^2``."""
    return ((1 - np.asarray(t)) + np.asarray(t) * np.sqrt(ratio)) ** 2


def wfr_pure_growth_with_prior(delta: float, ratio: float, mass0: float, prior: float) -> float:
    """Pure growth ``rho0 -> c rho0`` paying ``delta^2 int (g - g_0)^2 rho`` over unit time.

    Per unit of mass, ``min int_0^1 (rho' - g_0 rho)^2 / rho dt`` with ``rho = e^{g_0 t} w^2`` is
    ``4 min int e^{g_0 t} ... = 4 g_0 (sqrt(c) e^{-g_0/2} - 1)^2 / (1 - e^{-g_0})``: zero when ``c = e^{g_0}``
    (the prior's own growth), :func:`wfr_pure_growth` as ``g_0 -> 0``.
    """
    if abs(prior) < 1e-12:
        return wfr_pure_growth(delta, ratio, mass0)
    gap = np.sqrt(ratio) * np.exp(-prior / 2) - 1
    return 4 * delta**2 * mass0 * prior * gap**2 / (1 - np.exp(-prior))


def wfr_diracs(delta: float, mass0: float, mass1: float, distance: float) -> float:
    """``WFR_delta^2`` between Diracs at ``d < pi delta``: ``4 delta^2 (m0 + m1 - 2 sqrt(m0 m1) cos(d / 2 delta))``."""
    theta = min(distance / (2 * delta), np.pi / 2)
    return 4 * delta**2 * (mass0 + mass1 - 2 * np.sqrt(mass0 * mass1) * np.cos(theta))
