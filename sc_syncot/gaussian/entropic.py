r"""Entropic unbalanced optimal transport between Gaussian measures, in closed form (Mathematics page, section 5).

For ``alpha = m_a N(a, A)``, ``beta = m_b N(b, B)`` on ``R^d`` and ``eps > 0``,

.. math::
    \min_{\pi \ge 0} \int |x - y|^2 d\pi + \varepsilon \mathrm{KL}(\pi | \alpha \otimes \beta)
    + \tau \mathrm{KL}(\pi_0 | \alpha) + \tau \mathrm{KL}(\pi_1 | \beta),

with the generalized KL and the unnormalized product ``alpha (x) beta`` (mass ``m_a m_b``) as in Janati et al. The
optimal plan is ``m N(mu, Gamma)`` with a full joint covariance ``Gamma = [[Sigma_0, C], [C^T, Sigma_1]]``: unlike the
unregularized problem, the cross-covariance ``C`` is a variable of the inner problem. Writing ``KL(p | q_a (x) q_b) =
KL(p_0 | q_a) + KL(p_1 | q_b) + I(p)`` (``I`` the mutual information), the inner objective over normalized moments is

.. math::
    G = |\mu_0 - \mu_1|^2 + \mathrm{tr}\,\Sigma_0 + \mathrm{tr}\,\Sigma_1 - 2\,\mathrm{tr}\,C
    + (\tau + \varepsilon) [\mathrm{KL}(N(\mu_0, \Sigma_0) | N(a, A)) + \mathrm{KL}(N(\mu_1, \Sigma_1) | N(b, B))]
    + \tfrac{\varepsilon}{2} (\log\det\Sigma_0 + \log\det\Sigma_1 - \log\det\Gamma),

convex in ``(mu, Gamma)``. The mass separates as in :func:`~sc_syncot.gaussian.uot`:

.. math::
    m^* = (m_a m_b)^{(\tau + \varepsilon)/(2\tau + \varepsilon)} e^{-G^*/(2\tau + \varepsilon)}, \qquad
    \text{value} = \tau (m_a + m_b) + \varepsilon m_a m_b - (2\tau + \varepsilon) m^*.

**The inner problem in closed form.** The means are those of :func:`~.uot.optimal_means` with weight
``tau + eps``. Stationarity in ``Gamma`` gives ``Gamma^{-1} = [[P, -(2/eps) I], [-(2/eps) I, R]]`` with
``P = Q + k R^{-1}``, ``R = Q' + k P^{-1}``, where ``Q = A^{-1} + s I``, ``Q' = B^{-1} + s I``, ``s = 2 / (tau + eps)``,
``k = 4 tau / (eps^2 (tau + eps))``. Eliminating ``R``, ``Z = P - Q`` solves ``Z Q' Z + Z Q' Q = k Q``; in the
variables ``W = Q'^{1/2} Z Q'^{1/2}``, ``S = Q'^{1/2} Q Q'^{1/2}`` this is ``W^2 + W S = k S``, which forces
``W S = S W`` (both other terms are symmetric), so the positive definite root is

.. math:: W = \tfrac12 \big( (S^2 + 4 k S)^{1/2} - S \big).

Block inversion then gives ``Sigma_0 = (Q - (eps / tau) Z)^{-1}``,
``Sigma_1 = (Q' - 4 P^{-1} / (eps (tau + eps)))^{-1}`` and ``C = (2 / eps) P^{-1} Sigma_1``. ``G`` is strictly
convex, so this stationary point is its minimum, exact to rounding. As ``eps -> 0`` the solution tends to the
unregularized one.

References
----------
H. Janati, B. Muzellec, G. Peyre, M. Cuturi, "Entropic optimal transport between unbalanced Gaussian measures has a
closed form", NeurIPS 2020; Globally solving unbalanced optimal transport and density control for Gaussian
distributions (the Gaussian UOT/UDC paper, entropic UOT, Theorem 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import logdet, pd_inv, pd_inv_sqrt, psd_sqrt, symmetrize
from .measures import check_cov, check_mean, check_positive, unchecked_kl
from .uot import GaussianPlan, optimal_means


@dataclass(frozen=True, repr=False)
class EntropicUOTResult(GaussianPlan):
    """Solution of :func:`entropic_uot`: the optimal plan ``mass * N(coupling_mean, coupling_cov)``.

    Attributes
    ----------
    mass
        Optimal mass ``m* = (m_a m_b)^((tau + eps) / (2 tau + eps)) exp(-G* / (2 tau + eps))``.
    value
        Optimal value, ``tau (m_a + m_b) + eps m_a m_b - (2 tau + eps) m*``.
    inner_value
        ``G*``, the optimal value of the convex inner problem over normalized moments.
    mean0, cov0, mean1, cov1
        The plan's normalized marginal moments.
    cross_cov
        Cross-covariance ``C = Cov(x, y)`` of the normalized plan, ``(d, d)``.
    tau, eps
        KL weight of the marginal penalties and entropic weight.
    """

    cross_cov: np.ndarray
    tau: float
    eps: float

    @property
    def coupling_cov(self) -> np.ndarray:
        """Covariance ``(2d, 2d)`` of the normalized plan (positive definite)."""
        return np.block([[self.cov0, self.cross_cov], [self.cross_cov.T, self.cov1]])

    @property
    def map_matrix(self) -> np.ndarray:
        """Slope ``C^T Sigma_0^{-1}`` of the conditional mean ``E[y | x]``."""
        return np.linalg.solve(self.cov0, self.cross_cov).T

    @property
    def map_offset(self) -> np.ndarray:
        """Offset of the conditional mean: ``E[y | x] = map_matrix @ x + map_offset``."""
        return self.mean1 - self.map_matrix @ self.mean0

    @property
    def conditional_cov(self) -> np.ndarray:
        """``Cov(y | x) = Sigma_1 - C^T Sigma_0^{-1} C``, the spread that the entropic term adds around the map."""
        return symmetrize(self.cov1 - self.cross_cov.T @ np.linalg.solve(self.cov0, self.cross_cov))

    def __repr__(self) -> str:
        return (
            f"EntropicUOTResult(dim={self.mean0.shape[0]}, tau={self.tau:.6g}, eps={self.eps:.6g}, "
            f"mass={self.mass:.6g}, value={self.value:.6g})"
        )


def entropic_covariances(cov_a, cov_b, tau: float, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Minimizer ``(Sigma_0, Sigma_1, C)`` of the covariance part of ``G``, and its mutual information ``I``."""
    eye = np.eye(cov_a.shape[0])
    s, k = 2.0 / (tau + eps), 4.0 * tau / (eps**2 * (tau + eps))
    q, q_b = pd_inv(cov_a) + s * eye, pd_inv(cov_b) + s * eye
    root, inv_root = psd_sqrt(q_b), pd_inv_sqrt(q_b)
    sm = symmetrize(root @ q @ root)
    w = 0.5 * (psd_sqrt(sm @ sm + 4.0 * k * sm) - sm)
    z = symmetrize(inv_root @ w @ inv_root)
    p_inv = pd_inv(q + z)
    cov0 = pd_inv(q - (eps / tau) * z)
    cov1 = pd_inv(q_b - 4.0 / (eps * (tau + eps)) * p_inv)
    # log det Gamma = log det Sigma_1 - log det P, so I = (log det Sigma_0 + log det P) / 2.
    mutual_info = 0.5 * (logdet(cov0) - logdet(p_inv))
    return cov0, cov1, (2.0 / eps) * p_inv @ cov1, mutual_info


def entropic_uot(mass_a, mean_a, cov_a, mass_b, mean_b, cov_b, tau: float, eps: float) -> EntropicUOTResult:
    r"""Entropic unbalanced optimal transport between ``m_a N(a, A)`` and ``m_b N(b, B)``, in closed form.

    Solves

    .. math::
        \min_{\pi \ge 0} \int |x - y|^2 d\pi + \varepsilon \mathrm{KL}(\pi | \alpha \otimes \beta)
        + \tau \mathrm{KL}(\pi_0 | \alpha) + \tau \mathrm{KL}(\pi_1 | \beta)

    over Gaussian plans with the cross-covariance as a variable; the inner problem's stationarity is solved exactly
    (module docstring) and the mass is ``(m_a m_b)^((tau + eps) / (2 tau + eps)) exp(-G* / (2 tau + eps))``.

    Parameters
    ----------
    mass_a, mean_a, cov_a, mass_b, mean_b, cov_b
        The reference measures, as in :func:`~sc_syncot.gaussian.uot`.
    tau
        KL weight of the marginal penalties ``> 0``.
    eps
        Entropic weight ``> 0``; a larger ``eps`` pulls the plan toward the product ``alpha (x) beta`` (a wider
        conditional spread ``Cov(y | x)``).

    Returns
    -------
    EntropicUOTResult
        Mass, value, the plan's mean and full covariance, and its conditional (barycentric) map.

    Raises
    ------
    ValueError
        For a non-positive mass, ``tau`` or ``eps``, a non-symmetric or non-positive-definite covariance, or
        mismatched dimensions.

    References
    ----------
    Janati et al., NeurIPS 2020; the Gaussian UOT/UDC paper (problem (17)); Mathematics page, section 5.
    """
    mass_a, mass_b = check_positive(mass_a, "mass_a"), check_positive(mass_b, "mass_b")
    tau, eps = check_positive(tau, "tau"), check_positive(eps, "eps")
    mean_a = check_mean(mean_a, "mean_a")
    d = mean_a.shape[0]
    cov_a = check_cov(cov_a, "cov_a", d)
    mean_b, cov_b = check_mean(mean_b, "mean_b", d), check_cov(cov_b, "cov_b", d)
    mean0, mean1 = optimal_means(mean_a, cov_a, mean_b, cov_b, tau + eps)
    cov0, cov1, cross, mutual_info = entropic_covariances(cov_a, cov_b, tau, eps)
    kl = unchecked_kl(mean0, cov0, mean_a, cov_a) + unchecked_kl(mean1, cov1, mean_b, cov_b)
    transport = np.sum((mean0 - mean1) ** 2) + np.trace(cov0) + np.trace(cov1) - 2.0 * np.trace(cross)
    inner = float(transport + (tau + eps) * kl + eps * mutual_info)
    log_mass = ((tau + eps) * np.log(mass_a * mass_b) - inner) / (2.0 * tau + eps)
    mass = float(np.exp(log_mass))
    return EntropicUOTResult(
        mass=mass,
        value=float(tau * (mass_a + mass_b) + eps * mass_a * mass_b - (2.0 * tau + eps) * mass),
        inner_value=inner,
        mean0=mean0,
        cov0=cov0,
        mean1=mean1,
        cov1=cov1,
        cross_cov=cross,
        tau=tau,
        eps=eps,
    )
