r"""Unbalanced optimal transport between Gaussian measures, in closed form (Mathematics page, section 5).

For ``alpha = m_a N(a, A)`` and ``beta = m_b N(b, B)`` on ``R^d``,

.. math::
    \min_{\pi \ge 0} \int |x - y|^2 \, d\pi + \tau \mathrm{KL}(\pi_0 | \alpha) + \tau \mathrm{KL}(\pi_1 | \beta),

with the generalized ``KL(p | q) = int p log(p / q) - p + q``. Optimal plans are Gaussian, supported on the graph of
an affine map. With marginals ``m N(mu_0, Sigma_0)`` and ``m N(mu_1, Sigma_1)`` the objective is
``m F(theta) + tau (m log(m^2 / (m_a m_b)) - 2 m + m_a + m_b)``, where ``theta = (mu_0, Sigma_0, mu_1, Sigma_1)`` and

.. math::
    F(\theta) = |\mu_0 - \mu_1|^2 + \mathrm{Bures}^2(\Sigma_0, \Sigma_1)
    + \tau \mathrm{KL}(N(\mu_0, \Sigma_0) | N(a, A)) + \tau \mathrm{KL}(N(\mu_1, \Sigma_1) | N(b, B)).

The mass separates from the convex inner problem ``F* = min F``:

.. math:: m^* = \sqrt{m_a m_b}\, e^{-F^*/(2\tau)}, \qquad \text{value} = \tau (m_a + m_b - 2 m^*).

**The inner problem in closed form.** With ``s = 2 / tau``, the means minimize a quadratic, whose stationarity gives
``delta = mu_0 - mu_1 = (I + s (A + B))^{-1} (a - b)``, ``mu_0 = a - s A delta``, ``mu_1 = b + s B delta``. For the
covariances, the gradient of ``Bures^2`` is ``I - T`` in ``Sigma_0`` and ``I - T^{-1}`` in ``Sigma_1``, with ``T`` the
symmetric map such that ``T Sigma_0 T = Sigma_1``. Stationarity reads ``Sigma_0^{-1} = A^{-1} + s (I - T)`` and
``Sigma_1^{-1} = B^{-1} + s (I - T^{-1})``; substituting both into ``Sigma_1^{-1} = T^{-1} Sigma_0^{-1} T^{-1}``
leaves the Riccati equation

.. math:: T (B^{-1} + s I) T = A^{-1} + s I,

whose unique symmetric positive definite solution is a matrix geometric mean (:func:`~.linalg.congruence_map`).
Then ``Sigma_0 = (A^{-1} + s (I - T))^{-1}`` (positive definite: ``s T <= s^{1/2} (A^{-1} + s I)^{1/2}``
by monotonicity of the geometric mean) and ``Sigma_1 = T Sigma_0 T``. ``F`` is convex and differentiable on
positive definite matrices, so this stationary point is the global minimum: the inner problem is solved to rounding
error, with no iteration. The optimal plan is ``m* N`` on the graph of ``y = mu_1 + T (x - mu_0)``.

References
----------
Globally solving unbalanced optimal transport and density control for Gaussian distributions (the Gaussian UOT/UDC
paper: Theorem 1 for the Gaussian reduction, Corollary 1 for the mass); C. R. Givens, R. M. Shortt, "A class of
Wasserstein metrics for probability distributions", Michigan Math. J. 31 (1984), for the Bures term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import bures2, congruence_map, pd_inv, symmetrize
from .measures import GaussianMeasure, check_cov, check_mean, check_positive, unchecked_kl


@dataclass(frozen=True, repr=False)
class GaussianPlan:
    """A Gaussian plan ``mass * N`` on ``R^d x R^d`` given by its value and normalized marginal moments."""

    mass: float
    value: float
    inner_value: float
    mean0: np.ndarray
    cov0: np.ndarray
    mean1: np.ndarray
    cov1: np.ndarray

    @property
    def coupling_mean(self) -> np.ndarray:
        """Mean ``(2d,)`` of the normalized plan on ``R^d x R^d``."""
        return np.concatenate([self.mean0, self.mean1])

    @property
    def marginals(self) -> tuple[GaussianMeasure, GaussianMeasure]:
        """The plan's marginals ``m* N(mean0, cov0)`` and ``m* N(mean1, cov1)``."""
        return GaussianMeasure(self.mass, self.mean0, self.cov0), GaussianMeasure(self.mass, self.mean1, self.cov1)


@dataclass(frozen=True, repr=False)
class GaussianUOTResult(GaussianPlan):
    """Solution of :func:`uot`: the optimal plan ``mass * N(coupling_mean, coupling_cov)``.

    Attributes
    ----------
    mass
        Optimal transported mass ``m* = sqrt(m_a m_b) exp(-F* / (2 tau))``.
    value
        Optimal value of the unbalanced problem, ``tau (m_a + m_b - 2 m*)``.
    inner_value
        ``F*``, the optimal value of the convex inner problem over normalized moments.
    mean0, cov0, mean1, cov1
        Optimal normalized moments: the plan's marginals are ``mass * N(mean0, cov0)`` and ``mass * N(mean1, cov1)``.
    map_matrix, map_offset
        The affine transport map ``y = map_matrix @ x + map_offset`` (``map_matrix`` symmetric positive definite).
    tau
        KL weight of the marginal penalties.
    """

    map_matrix: np.ndarray
    map_offset: np.ndarray
    tau: float

    @property
    def coupling_cov(self) -> np.ndarray:
        """Covariance ``(2d, 2d)`` of the normalized plan, ``[[S0, S0 T], [T S0, S1]]`` (rank ``d``)."""
        cross = self.cov0 @ self.map_matrix
        return np.block([[self.cov0, cross], [cross.T, self.cov1]])

    def transport(self, x) -> np.ndarray:
        """Apply the affine map to points ``x`` of shape ``(..., d)``."""
        return np.asarray(x, dtype=float) @ self.map_matrix.T + self.map_offset

    def __repr__(self) -> str:
        return (
            f"GaussianUOTResult(dim={self.mean0.shape[0]}, tau={self.tau:.6g}, mass={self.mass:.6g}, "
            f"value={self.value:.6g}, inner_value={self.inner_value:.6g})"
        )


def optimal_mass(mass_a: float, mass_b: float, inner_value: float, tau: float) -> float:
    r"""Closed-form optimal mass ``m* = sqrt(m_a m_b) exp(-F* / (2 tau))``.

    It minimizes ``m F* + tau (m log(m^2 / (m_a m_b)) - 2 m + m_a + m_b)`` over ``m > 0``, the unbalanced objective
    once the normalized moments are optimal (the Gaussian UOT/UDC paper, Corollaries 1 and 3).
    """
    mass_a, mass_b = check_positive(mass_a, "mass_a"), check_positive(mass_b, "mass_b")
    tau = check_positive(tau, "tau")
    if not np.isfinite(inner_value):
        raise ValueError(f"inner_value: expected a finite number, got {inner_value!r}")
    return float(np.sqrt(mass_a * mass_b) * np.exp(-inner_value / (2.0 * tau)))


def uot_value(mass_a: float, mass_b: float, inner_value: float, tau: float) -> float:
    r"""Optimal value ``tau (m_a + m_b - 2 m*)`` at the optimal mass, written without cancellation.

    ``tau (sqrt(m_a) - sqrt(m_b))^2 - 2 tau sqrt(m_a m_b) expm1(-F* / (2 tau))`` is the same number, accurate also
    when ``tau`` is large and ``m*`` close to ``sqrt(m_a m_b)``.
    """
    gm = np.sqrt(mass_a * mass_b)
    return float(tau * (np.sqrt(mass_a) - np.sqrt(mass_b)) ** 2 - 2.0 * tau * gm * np.expm1(-inner_value / (2 * tau)))


def optimal_means(mean_a, cov_a, mean_b, cov_b, weight: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Minimizer of ``|mu_0 - mu_1|^2 + (w/2) |mu_0 - a|^2_{A^{-1}} + (w/2) |mu_1 - b|^2_{B^{-1}}``.

    ``delta = (I + (2/w)(A + B))^{-1} (a - b)``, ``mu_0 = a - (2/w) A delta``, ``mu_1 = b + (2/w) B delta``.
    """
    s = 2.0 / weight
    delta = np.linalg.solve(np.eye(mean_a.shape[0]) + s * (cov_a + cov_b), mean_a - mean_b)
    return mean_a - s * cov_a @ delta, mean_b + s * cov_b @ delta


def optimal_covariances(cov_a, cov_b, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimizer ``(Sigma_0, Sigma_1, T)`` of the covariance part of ``F`` (module docstring): Riccati solution."""
    s = 2.0 / tau
    eye = np.eye(cov_a.shape[0])
    prec_a = pd_inv(cov_a) + s * eye
    t = congruence_map(pd_inv(cov_b) + s * eye, prec_a)
    cov0 = pd_inv(prec_a - s * t)
    return cov0, symmetrize(t @ cov0 @ t), t


def inner_objective(mean0, cov0, mean1, cov1, mean_a, cov_a, mean_b, cov_b, tau: float) -> float:
    """``F(theta)`` of the module docstring, at given normalized moments."""
    kl = unchecked_kl(mean0, cov0, mean_a, cov_a) + unchecked_kl(mean1, cov1, mean_b, cov_b)
    return float(np.sum((mean0 - mean1) ** 2) + bures2(cov0, cov1) + tau * kl)


def uot(mass_a, mean_a, cov_a, mass_b, mean_b, cov_b, tau: float) -> GaussianUOTResult:
    r"""Unbalanced optimal transport between ``m_a N(a, A)`` and ``m_b N(b, B)``, globally and in closed form.

    Solves

    .. math::
        \min_{\pi \ge 0} \int |x - y|^2 d\pi + \tau \mathrm{KL}(\pi_0 | m_a N(a, A))
        + \tau \mathrm{KL}(\pi_1 | m_b N(b, B))

    through the Gaussian reduction: the inner problem over normalized moments has a closed-form minimizer (a Riccati
    equation solved by a matrix geometric mean, see the module docstring), and the optimal mass is
    ``m* = sqrt(m_a m_b) exp(-F* / (2 tau))`` with value ``tau (m_a + m_b - 2 m*)``.

    Parameters
    ----------
    mass_a, mass_b
        Masses ``m_a, m_b > 0`` of the reference measures.
    mean_a, mean_b
        Means ``(d,)`` (scalars for ``d = 1``).
    cov_a, cov_b
        Symmetric positive definite covariances ``(d, d)`` (scalars for ``d = 1``).
    tau
        KL weight ``> 0``; ``tau -> infinity`` recovers balanced transport (``W2^2`` times the mass when
        ``m_a = m_b``) and ``m* -> sqrt(m_a m_b)``.

    Returns
    -------
    GaussianUOTResult
        Mass, value, optimal moments, affine map and the plan's moments.

    Raises
    ------
    ValueError
        For a non-positive mass or ``tau``, a non-symmetric or non-positive-definite covariance, or mismatched
        dimensions; the message names the argument.

    References
    ----------
    Globally solving unbalanced optimal transport and density control for Gaussian distributions (Theorem 1,
    Corollary 1, Algorithm 1); Mathematics page, section 5.
    """
    mass_a, mass_b = check_positive(mass_a, "mass_a"), check_positive(mass_b, "mass_b")
    tau = check_positive(tau, "tau")
    mean_a = check_mean(mean_a, "mean_a")
    d = mean_a.shape[0]
    cov_a = check_cov(cov_a, "cov_a", d)
    mean_b, cov_b = check_mean(mean_b, "mean_b", d), check_cov(cov_b, "cov_b", d)
    mean0, mean1 = optimal_means(mean_a, cov_a, mean_b, cov_b, tau)
    cov0, cov1, t = optimal_covariances(cov_a, cov_b, tau)
    inner = inner_objective(mean0, cov0, mean1, cov1, mean_a, cov_a, mean_b, cov_b, tau)
    return GaussianUOTResult(
        mass=optimal_mass(mass_a, mass_b, inner, tau),
        value=uot_value(mass_a, mass_b, inner, tau),
        inner_value=inner,
        mean0=mean0,
        cov0=cov0,
        mean1=mean1,
        cov1=cov1,
        map_matrix=t,
        map_offset=mean1 - t @ mean0,
        tau=tau,
    )
