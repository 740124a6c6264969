"""Unbalanced density control (UDC) and MaxEnt UDC: the lifted SDP against closed forms and direct minimization."""

import importlib
import sys
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from sc_syncot.gaussian import gaussian_kl, maxent_udc, udc, uot

DOUBLE_INTEGRATOR = (np.array([[1.0, 0.2], [0.0, 1.0]]), np.array([[0.0], [1.0]]))
REFS_2D = (
    (1.0, np.array([0.0, 0.5]), np.array([[0.3, 0.05], [0.05, 0.2]])),
    (0.7, np.array([2.0, -0.5]), np.array([[0.2, -0.04], [-0.04, 0.5]])),
)


@pytest.fixture
def cvxpy():
    return pytest.importorskip(
        "cvxpy", reason='UDC needs the optional dependency cvxpy: pip install "sc-syncot[control]"'
    )


def _spd(rng, d, floor=0.3):
    x = rng.normal(size=(d, d))
    return x @ x.T / d + floor * np.eye(d)


def _direct_objective(theta, a, b, horizon, refs, tau, entropy_weight, cost):
    """``J`` of an affine-Gaussian policy given as (mu_0, chol Sigma_0, per step: gain, mean control[, chol W])."""
    n, p = b.shape
    (_, m0, s0), (_, m1, s1) = refs
    it = iter(theta)
    take = lambda k: np.array([next(it) for _ in range(k)])  # noqa: E731
    mu = take(n)
    chol = np.zeros((n, n))
    chol[np.tril_indices(n)] = take(n * (n + 1) // 2)
    sig = chol @ chol.T
    mu_start, sig_start, value = mu, sig, 0.0
    for _ in range(horizon):
        gain, v, w = take(p * n).reshape(p, n), take(p), np.zeros((p, p))
        if entropy_weight > 0:
            lw = np.zeros((p, p))
            lw[np.tril_indices(p)] = take(p * (p + 1) // 2)
            w = lw @ lw.T
            value -= entropy_weight * 0.5 * (p * np.log(2 * np.pi * np.e) + np.linalg.slogdet(w)[1])
        value += v @ cost @ v + np.trace(cost @ (gain @ sig @ gain.T + w))
        closed = a + b @ gain
        sig, mu = closed @ sig @ closed.T + b @ w @ b.T, a @ mu + b @ v
    return value + tau * (gaussian_kl(mu_start, sig_start, m0, s0) + gaussian_kl(mu, sig, m1, s1))


def _direct_minimum(a, b, horizon, refs, tau, entropy_weight=0.0, cost=None):
    n, p = b.shape
    cost = np.eye(p) if cost is None else cost
    parts = [refs[0][1], np.linalg.cholesky(refs[0][2])[np.tril_indices(n)]]
    for _ in range(horizon):
        parts += [np.zeros(p * n), np.zeros(p)]
        if entropy_weight > 0:
            parts.append(0.3 * np.eye(p)[np.tril_indices(p)])
    args = (a, b, horizon, refs, tau, entropy_weight, cost)
    return minimize(_direct_objective, np.concatenate(parts), args=args, method="BFGS", options={"gtol": 1e-10}).fun


def _propagate(res, a, b):
    """State moments produced by the returned feedback from the returned initial moments."""
    means, covs = [res.means[0]], [res.covs[0]]
    for k in range(res.horizon):
        closed = a + b @ res.gains[k]
        means.append(closed @ means[-1] + b @ res.offsets[k])
        covs.append(closed @ covs[-1] @ closed.T + b @ res.control_covs[k] @ b.T)
    return np.stack(means), np.stack(covs)


def test_identity_system_is_uot_with_cost_over_horizon(cvxpy):
    # x_{k+1} = x_k + u_k: straight lines are cheapest, sum |u_k|^2 = |x_N - x_0|^2 / N, so UDC equals (1/N) UOT
    # with weight N tau, and the states follow the displacement interpolation of its affine map.
    rng = np.random.default_rng(4)
    n, horizon, tau = 2, 3, 1.5
    refs = ((1.0, rng.normal(size=n), _spd(rng, n)), (0.7, rng.normal(size=n), _spd(rng, n)))
    res = udc(np.eye(n), np.eye(n), horizon, refs, tau)
    exact = uot(*refs[0], *refs[1], horizon * tau)
    assert res.mass == pytest.approx(exact.mass, rel=1e-8)  # observed 2e-13
    assert res.value == pytest.approx(exact.value / horizon, rel=1e-8)
    for k in range(horizon + 1):
        t = k / horizon
        step = (1 - t) * np.eye(n) + t * exact.map_matrix
        assert np.allclose(res.covs[k], step @ exact.cov0 @ step.T, atol=1e-8)  # observed 5e-11
        assert np.allclose(res.means[k], (1 - t) * exact.mean0 + t * exact.mean1, atol=1e-12)


@pytest.mark.parametrize(
    ("system", "cost"),
    [(DOUBLE_INTEGRATOR, None), ((np.array([[1.2]]), np.array([[0.5]])), np.array([[2.0]]))],
    ids=["double_integrator", "scalar_weighted"],
)
def test_udc_matches_direct_minimization_over_affine_policies(cvxpy, system, cost):
    a, b = system
    n = a.shape[0]
    refs = (
        REFS_2D if n == 2 else ((1.0, np.array([-1.0]), np.array([[0.3]])), (0.5, np.array([1.5]), np.array([[0.6]])))
    )
    tau, horizon = 1.5, 4
    res = udc(a, b, horizon, refs, tau, control_cost=cost)
    direct = _direct_minimum(a, b, horizon, refs, tau, cost=cost)
    # BFGS over deterministic affine policies (nonconvex, no lifting) reaches the SDP's global value to 3e-11.
    assert res.inner_value == pytest.approx(direct, rel=1e-8)
    assert res.mass == pytest.approx(np.sqrt(refs[0][0] * refs[1][0]) * np.exp(-direct / (2 * tau)), rel=1e-8)
    assert res.value == pytest.approx(tau * (refs[0][0] + refs[1][0] - 2 * res.mass), rel=1e-12)


def test_positive_definite_trajectory_gives_a_deterministic_policy(cvxpy):
    a, b = DOUBLE_INTEGRATOR
    res = udc(a, b, 5, REFS_2D, 2.0)
    assert min(np.linalg.eigvalsh(c)[0] for c in res.covs) > 1e-3
    # The paper's Theorem 5: zero control covariance; the SDP leaves a relative slack of ~1e-10.
    assert res.lifting_gap.max() < 1e-7
    assert np.abs(res.control_covs).max() < 1e-7 * np.abs(res.gains).max() ** 2 * np.abs(res.covs).max()
    means, covs = _propagate(res, a, b)
    assert np.allclose(means, res.means, atol=1e-8) and np.allclose(covs, res.covs, atol=1e-7)


def test_maxent_larger_entropy_weight_gives_larger_control_covariance(cvxpy):
    a, b = DOUBLE_INTEGRATOR
    covs = [maxent_udc(a, b, 4, REFS_2D, 1.5, lam).control_covs[:, 0, 0] for lam in (0.05, 0.5, 2.0)]
    assert np.all(covs[0] > 0) and np.all(covs[1] > covs[0]) and np.all(covs[2] > covs[1])


def test_maxent_relaxation_is_tight_and_matches_direct_minimization(cvxpy):
    a, b = DOUBLE_INTEGRATOR
    tau, lam, horizon = 1.5, 0.3, 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the tightness check must not fire
        res = maxent_udc(a, b, horizon, REFS_2D, tau, lam)
    assert res.lifting_gap.max() < 1e-6  # the paper's Theorem 7; observed ~1e-11
    # The relaxed optimum is attained by the returned policy: it reproduces the state trajectory ...
    means, covs = _propagate(res, a, b)
    assert np.allclose(means, res.means, atol=1e-8) and np.allclose(covs, res.covs, atol=1e-7)
    # ... and equals the best affine-Gaussian policy found without any relaxation (observed 1e-14).
    assert res.inner_value == pytest.approx(_direct_minimum(a, b, horizon, REFS_2D, tau, lam), rel=1e-8)


# Bad input fails before cvxpy is needed.
@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"B": np.array([[1.0], [0.0]]), "A": np.eye(2)}, r"\(A, B\): not controllable in horizon=4 steps"),
        ({"horizon": 1}, r"\(A, B\): not controllable in horizon=1 steps: .* rank 1 < 2"),
        ({"horizon": 0}, r"horizon: expected an integer >= 1"),
        ({"horizon": 2.5}, r"horizon: expected an integer >= 1"),
        ({"A": np.ones((2, 3))}, r"A: expected a square matrix"),
        ({"B": np.ones((3, 1))}, r"B: expected 2 rows"),
        ({"tau": -1.0}, r"tau: expected a finite number > 0"),
        ({"references": REFS_2D[:1]}, r"references: expected a pair"),
        ({"references": (REFS_2D[0], (0.0, [0.0, 0.0], np.eye(2)))}, r"references\[1\] mass: expected a finite number"),
        ({"references": (REFS_2D[0], (1.0, [0.0], [[1.0]]))}, r"references\[1\]: dimension 1 does not match"),
        (
            {"references": ((1.0, [0.0, 0.0], [[1.0, 0.3], [0.0, 1.0]]), REFS_2D[1])},
            r"references\[0\] covariance: not sym",
        ),
        ({"references": ((1.0, [0.0, 0.0], -np.eye(2)), REFS_2D[1])}, r"references\[0\] covariance: not positive def"),
        ({"control_cost": [[-1.0]]}, r"control_cost: not positive definite"),
    ],
)
def test_udc_bad_input_raises_value_error(change, pattern):
    kwargs = {"A": DOUBLE_INTEGRATOR[0], "B": DOUBLE_INTEGRATOR[1], "horizon": 4, "references": REFS_2D, "tau": 1.0}
    kwargs.update(change)
    with pytest.raises(ValueError, match=pattern):
        udc(**kwargs)


def test_maxent_rejects_non_positive_entropy_weight():
    with pytest.raises(ValueError, match=r"entropy_weight: expected a finite number > 0"):
        maxent_udc(*DOUBLE_INTEGRATOR, 4, REFS_2D, 1.0, 0.0)


def test_udc_without_cvxpy_raises_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # makes `import cvxpy` fail
    with pytest.raises(ImportError, match=r'pip install "sc-syncot\[control\]"'):
        udc(*DOUBLE_INTEGRATOR, 4, REFS_2D, 1.0)


def test_package_imports_and_solves_uot_without_cvxpy(monkeypatch):
    import sc_syncot

    monkeypatch.setitem(sys.modules, "cvxpy", None)
    monkeypatch.setattr(sc_syncot, "gaussian", sc_syncot.gaussian)  # restored after the fresh import below
    for name in [m for m in sys.modules if m.startswith("sc_syncot.gaussian")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("sc_syncot.gaussian")
    assert fresh.uot(1, 0, 1, 4, 0, 1, 1).mass == pytest.approx(2.0, rel=1e-12)
