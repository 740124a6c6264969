r"""Per-group transported mass and birth, death and growth rates between two time points (Gaussian UOT).

A group of cells (a cluster present at both times) is summarized by Gaussian measures ``m_0 N(a, A)`` at ``t_0`` and
``m_1 N(b, B)`` at ``t_1``, in any dimension (a full embedding, where grids cannot go). :func:`~.uot.uot` between the
two gives the transported mass ``m* = sqrt(m_0 m_1) exp(-F* / (2 tau))``: the mass that the optimal plan carries from
the group at ``t_0`` to the group at ``t_1``. Reading it as an exponential birth-death budget over
``dt = t_1 - t_0`` (the group loses ``m_0 -> m*`` to death and the carried mass grows ``m* -> m_1`` by birth):

.. math::
    d = \frac{1}{\Delta t}\log\frac{m_0}{m^*}, \qquad b = \frac{1}{\Delta t}\log\frac{m_1}{m^*}, \qquad
    g = b - d = \frac{1}{\Delta t}\log\frac{m_1}{m_0}, \qquad b + d = \frac{F^*}{\tau \Delta t}.

The net growth rate ``g`` is fixed by the masses (so chaining ``m_1 = m_0 exp(g dt)`` is exact); transport decides the
split. The turnover ``b + d = F* / (tau dt) >= 0`` is the mass exchange that transport does not explain: zero when the
two summaries coincide, larger when the group's shape or position changes, smaller for a larger ``tau``. When
``|log(m_1 / m_0)|`` exceeds ``F* / tau``, one rate is negative: the symmetric KL penalties spread a mass change over
both ends, so the plan carries more than the smaller of the two masses, and the group's change is net growth (or
decline) rather than turnover. ``g`` is the rate to use as a per-cell growth prior; ``b`` and ``d`` describe it.

Covariances estimated from few cells in many dimensions are singular: shrink them (for example add a multiple of
the identity) before calling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .measures import check_cov, check_mean, check_positive, numeric
from .uot import uot


@dataclass(frozen=True, repr=False)
class GroupGrowth:
    """Output of :func:`group_growth`, one entry per group.

    Attributes
    ----------
    transported_mass
        ``m*`` per group, ``(G,)``.
    growth_rate
        Net rate ``g = log(m_1 / m_0) / dt``, ``(G,)``.
    birth_rate, death_rate
        ``b = log(m_1 / m*) / dt`` and ``d = log(m_0 / m*) / dt``, ``(G,)``; ``b - d = g``.
    turnover_rate
        ``b + d = F* / (tau dt) >= 0``, ``(G,)``.
    inner_value
        ``F*`` per group (transport cost plus ``tau`` times the normalized KL terms at the optimum), ``(G,)``.
    tau, dt
        KL weight and time between the two time points.
    """

    transported_mass: np.ndarray
    growth_rate: np.ndarray
    birth_rate: np.ndarray
    death_rate: np.ndarray
    turnover_rate: np.ndarray
    inner_value: np.ndarray
    tau: float
    dt: float

    def __repr__(self) -> str:
        return f"GroupGrowth(groups={self.growth_rate.shape[0]}, tau={self.tau:.6g}, dt={self.dt:.6g})"


def _stack(masses, means, covs, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one time point's per-group summaries: masses ``(G,)``, means ``(G, d)``, covariances ``(G, d, d)``."""
    masses = np.atleast_1d(numeric(masses, f"masses{suffix}"))
    means = numeric(means, f"means{suffix}")
    covs = numeric(covs, f"covs{suffix}")  # a copy: symmetrized below, never in the caller's array
    if masses.ndim != 1 or means.ndim != 2 or covs.ndim != 3:
        raise ValueError(
            f"masses{suffix}, means{suffix}, covs{suffix}: expected shapes (G,), (G, d), (G, d, d), got "
            f"{masses.shape}, {means.shape}, {covs.shape}"
        )
    if means.shape[0] != masses.shape[0] or covs.shape[0] != masses.shape[0]:
        raise ValueError(f"means{suffix}, covs{suffix}: expected {masses.shape[0]} groups like masses{suffix}")
    d = means.shape[1]
    for g in range(masses.shape[0]):
        check_positive(masses[g], f"masses{suffix}[{g}]")
        check_mean(means[g], f"means{suffix}[{g}]", d)
        covs[g] = check_cov(covs[g], f"covs{suffix}[{g}]", d)
    return masses, means, covs


def group_growth(masses0, means0, covs0, masses1, means1, covs1, tau: float, dt: float = 1.0) -> GroupGrowth:
    r"""Transported mass and birth, death and net growth rates per group, from Gaussian UOT between time points.

    For group ``g`` with summaries ``m_0 N(a, A)`` at ``t_0`` and ``m_1 N(b, B)`` at ``t_1 = t_0 + dt``:

    .. math::
        m^* = \sqrt{m_0 m_1}\, e^{-F^*/(2\tau)}, \quad d = \frac{\log(m_0 / m^*)}{\Delta t}, \quad
        b = \frac{\log(m_1 / m^*)}{\Delta t}, \quad g = b - d = \frac{\log(m_1 / m_0)}{\Delta t}

    (module docstring for the reading).

    Parameters
    ----------
    masses0, means0, covs0
        Groups at ``t_0``: masses ``(G,)`` (for example cell counts times a population size), means ``(G, d)``,
        symmetric positive definite covariances ``(G, d, d)``.
    masses1, means1, covs1
        The same groups at ``t_1``, in the same order.
    tau
        KL weight of :func:`~sc_syncot.gaussian.uot`, in units of squared distance of the embedding.
    dt
        ``t_1 - t_0 > 0``; rates are per unit of time.

    Returns
    -------
    GroupGrowth
        Per-group arrays.

    Raises
    ------
    ValueError
        For mismatched shapes, non-positive masses, ``tau`` or ``dt``, or a non-symmetric or non-positive-definite
        covariance (named with its group index).
    """
    tau, dt = check_positive(tau, "tau"), check_positive(dt, "dt")
    m0, a, cov_a = _stack(masses0, means0, covs0, "0")
    m1, b, cov_b = _stack(masses1, means1, covs1, "1")
    if m1.shape[0] != m0.shape[0] or b.shape[1] != a.shape[1]:
        raise ValueError(f"masses1, means1: expected {m0.shape[0]} groups of dimension {a.shape[1]} like time 0")
    results = [uot(m0[g], a[g], cov_a[g], m1[g], b[g], cov_b[g], tau) for g in range(m0.shape[0])]
    moved = np.array([r.mass for r in results])
    inner = np.array([r.inner_value for r in results])
    return GroupGrowth(
        transported_mass=moved,
        growth_rate=np.log(m1 / m0) / dt,
        birth_rate=np.log(m1 / moved) / dt,
        death_rate=np.log(m0 / moved) / dt,
        turnover_rate=inner / (tau * dt),
        inner_value=inner,
        tau=tau,
        dt=dt,
    )
