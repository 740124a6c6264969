r"""Unbalanced density control (UDC) of linear systems with Gaussian references (Mathematics page, section 5).

State measures evolve under ``x_{k+1} = A x_k + B u_k``, ``k = 0..N-1``, with a randomized control law
``u_k | x_k``; the total mass ``m`` is preserved along the horizon but chosen by the optimization. For references
``alpha = m_a N(a, Sigma_a)`` (initial) and ``beta = m_b N(b, Sigma_b)`` (terminal), UDC solves

.. math::
    \min_{\rho_0, \pi} \; \sum_{k=0}^{N-1} \mathbb{E}_{\rho_k, \pi_k}[u_k^T R u_k]
    + \tau \mathrm{KL}(\rho_0 | \alpha) + \tau \mathrm{KL}(\rho_N | \beta)
    \;[ - \lambda \sum_{k=0}^{N-1} \mathbb{E}_{\rho_k} H(\pi_k(\cdot | x)) \text{ for MaxEnt UDC}],

expectations taken against the unnormalized state measures ``rho_k``. Gaussian initial measures and affine-Gaussian
laws ``u_k = K_k x_k + d_k + w_k``, ``w_k ~ N(0, W_k)``, are optimal (the paper's Theorems 4 and 6), so with
``rho_k = m N(mu_k, Sigma_k)`` the objective is ``m J + tau (m log(m^2 / (m_a m_b)) - 2 m + m_a + m_b)`` and the mass
update is the closed form of :func:`~.uot.optimal_mass`, ``m* = sqrt(m_a m_b) exp(-J* / (2 tau))``.

**Means.** They decouple: the cheapest controls steering ``mu_0`` to ``mu_N`` cost ``e^T G^{-1} e`` with
``e = mu_N - A^N mu_0`` and the controllability Gramian ``G = sum_j A^j B R^{-1} B^T (A^j)^T``; minimizing this plus
the mean parts of the two KL terms is a linear system in ``(mu_0, mu_N)``, solved directly.

**Covariances: an SDP.** With the covariance-steering lifting ``U_k = K_k Sigma_k`` and the control second moment
``Y_k = K_k Sigma_k K_k^T + W_k``, the recursion ``Sigma_{k+1} = A Sigma_k A^T + B U_k A^T + A U_k^T B^T + B Y_k B^T``
is affine, the cost is ``sum_k tr(R Y_k)`` plus ``tau / 2 (tr(Sigma_a^{-1} Sigma_0) - log det Sigma_0)`` and its
terminal twin, and ``Y_k >= U_k Sigma_k^{-1} U_k^T`` is the linear matrix inequality ``[[Sigma_k, U_k^T],
[U_k, Y_k]] >= 0``. For MaxEnt UDC a variable ``W_k >= 0`` enters as ``[[Sigma_k, U_k^T], [U_k, Y_k - W_k]] >= 0``
with the reward ``(lambda / 2) log det W_k``: a convex relaxation of ``W_k = Y_k - U_k Sigma_k^{-1} U_k^T``, tight
at the optimum (the paper's Theorem 7). The SDP is solved with cvxpy, by default with SCS at tolerance ``1e-10``, which
recovers the moments to about ``1e-9`` on small problems (interior-point solvers, through cvxpy's exponential-cone
form of ``log det``, stop at about the square root of their tolerance). The feedback is then ``K_k = U_k Sigma_k^{-1}``,
``d_k = v_k - K_k mu_k`` (``v_k`` the mean control), ``W_k = Y_k - U_k Sigma_k^{-1} U_k^T``; when every
``Sigma_k`` is positive definite the optimal UDC policy is deterministic, ``W_k = 0`` (Theorem 5).

cvxpy is an optional dependency: ``pip install "sc-syncot[control]"``.

References
----------
Globally solving unbalanced optimal transport and density control for Gaussian distributions (the Gaussian UOT/UDC
paper: problems (34), (37), (49); Corollary 3; Theorems 5 and 7); I. M. Balci, E. Bakolas, "Exact SDP formulation
for discrete-time covariance steering with Wasserstein terminal cost" (2022), for the lifting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._settings import warn
from .linalg import logdet, pd_inv, psd_part, symmetrize
from .measures import GaussianMeasure, as_measure, check_cov, check_matrix, check_positive, numeric, unchecked_kl
from .uot import optimal_mass, uot_value

INSTALL_HINT = 'pip install "sc-syncot[control]"'
DEFAULT_SOLVER = "SCS"
DEFAULT_SOLVER_OPTIONS = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000}
# Relative slack of the lifting inequality above which MaxEnt UDC warns that the relaxation is not tight.
TIGHTNESS_TOL = 1e-6


@dataclass(frozen=True, repr=False)
class UDCResult:
    """Solution of :func:`udc` or :func:`maxent_udc`.

    Attributes
    ----------
    mass
        Optimal mass ``m* = sqrt(m_a m_b) exp(-J* / (2 tau))``, preserved along the horizon.
    value
        Optimal value ``tau (m_a + m_b - 2 m*)``.
    inner_value
        ``J*``: control cost, ``tau`` times the two normalized KL terms, minus ``lambda`` times the control
        entropies, per unit mass, evaluated at the returned policy.
    means, covs
        State mean and covariance trajectories, ``(N + 1, n)`` and ``(N + 1, n, n)``; the state measures are
        ``mass * N(means[k], covs[k])``.
    gains, offsets, control_covs
        The affine-Gaussian feedback ``u_k = gains[k] @ x_k + offsets[k] + w_k``, ``w_k ~ N(0, control_covs[k])``;
        shapes ``(N, p, n)``, ``(N, p)``, ``(N, p, p)``.
    control_means
        Mean control ``E u_k``, ``(N, p)``.
    lifting_gap
        Per step, the relative slack ``||Y_k - W_k - U_k Sigma_k^{-1} U_k^T|| / ||Y_k||`` (spectral norms) of the
        lifting inequality ``[[Sigma_k, U_k^T], [U_k, Y_k - W_k]] >= 0`` (module docstring), where ``W_k`` is the
        SDP's entropy variable for MaxEnt UDC and zero for UDC. For UDC it is the relative control covariance, zero
        when the policy is deterministic; for MaxEnt UDC it measures the tightness of the relaxation.
    tau, entropy_weight
        KL weight and entropy weight ``lambda`` (``0`` for :func:`udc`).
    status
        The SDP solver's status (``"optimal"`` or ``"optimal_inaccurate"``).
    """

    mass: float
    value: float
    inner_value: float
    means: np.ndarray
    covs: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    control_covs: np.ndarray
    control_means: np.ndarray
    lifting_gap: np.ndarray
    tau: float
    entropy_weight: float
    status: str

    @property
    def horizon(self) -> int:
        """Number of control steps ``N``."""
        return self.gains.shape[0]

    def state_measure(self, k: int) -> GaussianMeasure:
        """The state measure ``mass * N(means[k], covs[k])`` at step ``k`` (needs a positive definite covariance)."""
        return GaussianMeasure(self.mass, self.means[k], self.covs[k])

    def __repr__(self) -> str:
        kind = "MaxEnt UDC" if self.entropy_weight > 0 else "UDC"
        return (
            f"UDCResult({kind}, n={self.means.shape[1]}, p={self.gains.shape[1]}, horizon={self.horizon}, "
            f"tau={self.tau:.6g}, mass={self.mass:.6g}, value={self.value:.6g}, status={self.status})"
        )


def import_cvxpy():
    """Import cvxpy, or raise an ``ImportError`` with the install command for the optional dependency."""
    try:
        import cvxpy
    except ImportError as err:
        raise ImportError(f"unbalanced density control needs cvxpy, an optional dependency: {INSTALL_HINT}") from err
    return cvxpy


def check_system(a, b, horizon) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate ``x_{k+1} = A x_k + B u_k`` over ``horizon`` steps, including controllability in that many steps."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon: expected an integer >= 1, got {horizon!r}")
    a = check_matrix(a, "A")
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"A: expected a square matrix (n, n), got shape {a.shape}")
    b = numeric(b, "B")
    b = b.reshape(-1, 1) if b.ndim < 2 else b
    b = check_matrix(b, "B")
    if b.shape[0] != a.shape[0]:
        raise ValueError(f"B: expected {a.shape[0]} rows to match A {a.shape}, got shape {b.shape}")
    blocks = [b]
    for _ in range(int(horizon) - 1):
        blocks.append(a @ blocks[-1])
    rank = np.linalg.matrix_rank(np.hstack(blocks))
    if rank < a.shape[0]:
        raise ValueError(
            f"(A, B): not controllable in horizon={horizon} steps: [B, AB, ..., A^(N-1) B] has rank {rank} < "
            f"{a.shape[0]}, so the state cannot be steered in every direction"
        )
    return a, b, int(horizon)


def check_references(references, dim: int) -> tuple[GaussianMeasure, GaussianMeasure]:
    """The (initial, terminal) reference measures, of dimension ``dim``."""
    try:
        initial, terminal = references
    except (TypeError, ValueError):
        raise ValueError(
            "references: expected a pair (initial, terminal) of GaussianMeasure or (mass, mean, cov) triples"
        ) from None
    pair = as_measure(initial, "references[0]"), as_measure(terminal, "references[1]")
    for i, ref in enumerate(pair):
        if ref.dim != dim:
            raise ValueError(f"references[{i}]: dimension {ref.dim} does not match the state dimension {dim} of A")
    return pair


def mean_trajectory(a, b, horizon, initial, terminal, tau, cost) -> tuple[np.ndarray, np.ndarray]:
    """Optimal means ``(N + 1, n)`` and mean controls ``(N, p)`` (module docstring: a linear system)."""
    n = a.shape[0]
    powers = [np.eye(n)]
    for _ in range(horizon):
        powers.append(a @ powers[-1])
    cost_inv = pd_inv(cost)
    gram = sum(p @ b @ cost_inv @ b.T @ p.T for p in powers[:horizon])
    h, phi = pd_inv(gram), powers[horizon]
    prec_a, prec_b = pd_inv(initial.cov), pd_inv(terminal.cov)
    lhs = np.block([[tau * prec_a + 2 * phi.T @ h @ phi, -2 * phi.T @ h], [-2 * h @ phi, tau * prec_b + 2 * h]])
    rhs = np.concatenate([tau * prec_a @ initial.mean, tau * prec_b @ terminal.mean])
    sol = np.linalg.solve(lhs, rhs)
    gap = h @ (sol[n:] - phi @ sol[:n])
    controls = np.stack([cost_inv @ b.T @ powers[horizon - 1 - k].T @ gap for k in range(horizon)])
    means = [sol[:n]]
    for k in range(horizon):
        means.append(a @ means[-1] + b @ controls[k])
    return np.stack(means), controls


def covariance_sdp(cp, a, b, horizon, initial, terminal, tau, cost, entropy_weight, solver, options):
    """Solve the lifted covariance SDP; returns ``(Sigma (N+1, n, n), U (N, p, n), Y (N, p, p), W, status)``."""
    n, p = b.shape
    blocks = [cp.Variable((n + p, n + p), PSD=True) for _ in range(horizon)]
    sig = [z[:n, :n] for z in blocks] + [cp.Variable((n, n), symmetric=True)]
    lift = [z[n:, :n] for z in blocks]
    slack = [cp.Variable((p, p), PSD=True) for _ in range(horizon)] if entropy_weight > 0 else None
    second = [z[n:, n:] + slack[k] if slack else z[n:, n:] for k, z in enumerate(blocks)]
    constraints = [
        sig[k + 1] == a @ sig[k] @ a.T + b @ lift[k] @ a.T + a @ lift[k].T @ b.T + b @ second[k] @ b.T
        for k in range(horizon)
    ]
    objective = sum(cp.trace(cost @ y) for y in second)
    for s, ref in ((sig[0], initial), (sig[-1], terminal)):
        objective += tau / 2 * (cp.trace(pd_inv(ref.cov) @ s) - cp.log_det(s))
    if slack:
        objective -= entropy_weight / 2 * sum(cp.log_det(w) for w in slack)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(solver=solver, **options)
    check_status(cp, problem.status, solver)
    covs = np.stack([symmetrize(np.asarray(v.value)) for v in sig])
    lifted = np.stack([np.asarray(u.value) for u in lift])
    moments = np.stack([symmetrize(np.asarray(y.value)) for y in second])
    w = np.stack([symmetrize(np.asarray(v.value)) for v in slack]) if slack else np.zeros((horizon, p, p))
    return covs, lifted, moments, w, problem.status


def check_status(cp, status: str, solver: str) -> None:
    """Raise unless the solver reached an optimum; warn when it reports reduced accuracy."""
    if status == cp.OPTIMAL_INACCURATE:
        warn(
            f"the SDP solver {solver} stopped at reduced accuracy (status {status}); pass solver_options to tighten",
            RuntimeWarning,
        )
    elif status != cp.OPTIMAL:
        raise RuntimeError(f"the SDP solver {solver} failed with status {status!r}")


def feedback(covs, lift, second, slack, means, controls):
    """Gains, offsets, control covariances and the lifting gap from the SDP's variables."""
    gains = np.stack([lift[k] @ np.linalg.pinv(covs[k], hermitian=True) for k in range(len(lift))])
    explained = np.stack([symmetrize(g @ u.T) for g, u in zip(gains, lift, strict=True)])
    control_covs = np.stack([psd_part(y - e) for y, e in zip(second, explained, strict=True)])
    offsets = controls - np.einsum("kpn,kn->kp", gains, means[:-1])
    residual = second - slack - explained
    gap = np.linalg.norm(residual, 2, axis=(1, 2)) / np.maximum(np.linalg.norm(second, 2, axis=(1, 2)), 1e-300)
    return gains, offsets, control_covs, gap


def inner_value(initial, terminal, tau, cost, means, covs, controls, second, control_covs, entropy_weight) -> float:
    """``J`` per unit mass: control cost, ``tau`` times the normalized KL terms, minus the weighted entropies."""
    effort = sum(float(v @ cost @ v + np.trace(cost @ y)) for v, y in zip(controls, second, strict=True))
    kl = unchecked_kl(means[0], covs[0], initial.mean, initial.cov) + unchecked_kl(
        means[-1], covs[-1], terminal.mean, terminal.cov
    )
    value = effort + tau * kl
    if entropy_weight > 0:
        p = control_covs.shape[1]
        value -= entropy_weight * sum(0.5 * (p * np.log(2 * np.pi * np.e) + logdet(w)) for w in control_covs)
    return float(value)


def solve_udc(a, b, horizon, references, tau, entropy_weight, control_cost, solver, solver_options) -> UDCResult:
    """Shared body of :func:`udc` and :func:`maxent_udc`: validate, solve means and SDP, update the mass."""
    a, b, horizon = check_system(a, b, horizon)
    initial, terminal = check_references(references, a.shape[0])
    tau = check_positive(tau, "tau")
    p = b.shape[1]
    cost = np.eye(p) if control_cost is None else check_cov(control_cost, "control_cost", p)
    cp = import_cvxpy()
    options = dict(DEFAULT_SOLVER_OPTIONS) if solver is None else {}
    options.update(solver_options or {})
    solver = solver or DEFAULT_SOLVER
    means, controls = mean_trajectory(a, b, horizon, initial, terminal, tau, cost)
    covs, lift, second, slack, status = covariance_sdp(
        cp, a, b, horizon, initial, terminal, tau, cost, entropy_weight, solver, options
    )
    gains, offsets, control_covs, gap = feedback(covs, lift, second, slack, means, controls)
    inner = inner_value(initial, terminal, tau, cost, means, covs, controls, second, control_covs, entropy_weight)
    return UDCResult(
        mass=optimal_mass(initial.mass, terminal.mass, inner, tau),
        value=uot_value(initial.mass, terminal.mass, inner, tau),
        inner_value=inner,
        means=means,
        covs=covs,
        gains=gains,
        offsets=offsets,
        control_covs=control_covs,
        control_means=controls,
        lifting_gap=gap,
        tau=tau,
        entropy_weight=float(entropy_weight),
        status=status,
    )


def udc(
    A,
    B,
    horizon: int,
    references,
    tau: float,
    *,
    control_cost=None,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> UDCResult:
    r"""Unbalanced density control of ``x_{k+1} = A x_k + B u_k`` between Gaussian references, globally.

    Solves

    .. math::
        \min_{\rho_0, \pi} \sum_{k=0}^{N-1} \mathbb{E}[u_k^T R u_k] + \tau \mathrm{KL}(\rho_0 | \alpha)
        + \tau \mathrm{KL}(\rho_N | \beta)

    over initial measures and control laws: the means by a linear system, the covariances by the lifted SDP (module
    docstring), and the mass by ``m* = sqrt(m_a m_b) exp(-J* / (2 tau))``; value ``tau (m_a + m_b - 2 m*)``.

    Parameters
    ----------
    A
        State matrix ``(n, n)``.
    B
        Input matrix ``(n, p)`` (a vector is one input column).
    horizon
        Number of steps ``N >= 1``; ``(A, B)`` must be controllable in ``N`` steps.
    references
        ``(alpha, beta)``: initial and terminal references, each a :class:`GaussianMeasure` or a ``(mass, mean,
        cov)`` triple.
    tau
        KL weight ``> 0`` of the soft endpoints.
    control_cost
        ``R``, symmetric positive definite ``(p, p)``; identity by default.
    solver, solver_options
        cvxpy solver name and its keyword options; default SCS with ``eps_abs = eps_rel = 1e-10``.

    Returns
    -------
    UDCResult
        Mass, value, state trajectories and the affine feedback.

    Raises
    ------
    ImportError
        When cvxpy is not installed (``pip install "sc-syncot[control]"``).
    ValueError
        For mismatched shapes, non-symmetric or non-positive-definite covariances, non-positive masses or ``tau``,
        or a system not controllable in ``horizon`` steps.
    RuntimeError
        When the SDP solver fails.

    References
    ----------
    The Gaussian UOT/UDC paper (problem (37), Algorithm 2, Corollary 3, Theorem 5); Mathematics page, section 5.
    """
    return solve_udc(A, B, horizon, references, tau, 0.0, control_cost, solver, solver_options)


def maxent_udc(
    A,
    B,
    horizon: int,
    references,
    tau: float,
    entropy_weight: float,
    *,
    control_cost=None,
    solver: str | None = None,
    solver_options: dict | None = None,
) -> UDCResult:
    r"""Maximum-entropy unbalanced density control: UDC with a reward on the entropy of the control law.

    Solves

    .. math::
        \min_{\rho_0, \pi} \sum_{k=0}^{N-1} \mathbb{E}_{\rho_k}\big[ \mathbb{E}_{\pi_k}[u_k^T R u_k]
        - \lambda H(\pi_k(\cdot | x)) \big] + \tau \mathrm{KL}(\rho_0 | \alpha) + \tau \mathrm{KL}(\rho_N | \beta),

    with the differential entropy ``H(N(., W)) = (p log(2 pi e) + log det W) / 2``, through the convex relaxation
    ``[[Sigma_k, U_k^T], [U_k, Y_k - W_k]] >= 0`` of the paper's problem (49). The relaxation is tight at the optimum;
    :attr:`UDCResult.lifting_gap` reports the slack, and a ``RuntimeWarning`` is raised when it exceeds ``1e-6``
    (solver inaccuracy). A larger ``entropy_weight`` gives a larger control covariance.

    Parameters
    ----------
    A, B, horizon, references, tau, control_cost, solver, solver_options
        As in :func:`udc`.
    entropy_weight
        ``lambda > 0``.

    Returns
    -------
    UDCResult
        As for :func:`udc`; ``control_covs`` are the optimal (non-zero) control covariances.

    Raises
    ------
    ImportError, ValueError, RuntimeError
        As for :func:`udc`; ``ValueError`` also for a non-positive ``entropy_weight``.

    References
    ----------
    The Gaussian UOT/UDC paper (problems (46), (49), Theorems 6 and 7).
    """
    weight = check_positive(entropy_weight, "entropy_weight")
    result = solve_udc(A, B, horizon, references, tau, weight, control_cost, solver, solver_options)
    if result.lifting_gap.max() > TIGHTNESS_TOL:
        warn(
            f"MaxEnt UDC: the relaxation's slack is {result.lifting_gap.max():.2e} (relative), above "
            f"{TIGHTNESS_TOL:g}; the solver stopped early, tighten solver_options",
            RuntimeWarning,
        )
    return result
