"""Gaussian UOT, entropic UOT and the group growth helper against closed forms and POT (math.md section 5, oracle 6)."""

import numpy as np
import ot
import pytest
from scipy.linalg import block_diag
from scipy.optimize import minimize
from scipy.stats import norm

from sc_syncot.gaussian import GaussianMeasure, entropic_uot, gaussian_kl, group_growth, kl_divergence, uot


def _spd(rng, d, floor=0.3):
    x = rng.normal(size=(d, d))
    return x @ x.T / d + floor * np.eye(d)


def _generalized_kl(p, q):
    return float(np.sum(p * np.log(np.maximum(p, 1e-300) / q) - p + q))


def _grid_measures(mass_a, mean_a, sd_a, mass_b, mean_b, sd_b, n, span=(-3.5, 4.0)):
    x = np.linspace(*span, n)
    h = x[1] - x[0]
    return x, mass_a * norm.pdf(x, mean_a, sd_a) * h, mass_b * norm.pdf(x, mean_b, sd_b) * h


def _plan_moments(x, plan, axis):
    w = plan.sum(axis=axis) / plan.sum()
    mean = float(w @ x)
    return mean, float(w @ (x - mean) ** 2)


# Oracle 6: POT's exact KL-penalized solver on a fine 1-D grid (unbalanced and balanced references).
@pytest.mark.parametrize(
    ("case", "tau"),
    [
        ((1.0, -1.0, 0.3, 0.6, 1.0, 0.5), 0.5),
        ((1.0, -1.0, 0.3, 0.6, 1.0, 0.5), 2.0),
        ((1.0, -0.5, 0.4, 1.0, 0.8, 0.6), 2.0),
    ],
)
def test_closed_form_mass_and_value_match_pot_mm_unbalanced(case, tau):
    mass_a, mean_a, sd_a, mass_b, mean_b, sd_b = case
    res = uot(mass_a, mean_a, sd_a**2, mass_b, mean_b, sd_b**2, tau)
    x, a, b = _grid_measures(*case, n=240)
    cost = (x[:, None] - x[None, :]) ** 2
    plan = ot.unbalanced.mm_unbalanced(a, b, cost, reg_m=tau, div="kl", numItermax=4000)
    value = float(np.sum(plan * cost)) + tau * (_generalized_kl(plan.sum(1), a) + _generalized_kl(plan.sum(0), b))
    # POT's majorization-minimization converges sublinearly (error about 0.5 / iterations): at 4000 iterations its
    # mass is 1.2e-4 to 1.8e-4 and its value up to 3.8e-4 (relative) from the closed form, and both errors halve
    # when the iterations double; the grid's quadrature error is far below that.
    assert abs(plan.sum() - res.mass) / res.mass < 5e-4
    assert abs(value - res.value) / res.value < 1e-3
    for axis, mean, var in ((1, res.mean0[0], res.cov0[0, 0]), (0, res.mean1[0], res.cov1[0, 0])):
        pot_mean, pot_var = _plan_moments(x, plan, axis)
        assert abs(pot_mean - mean) < 1e-4  # observed <= 9e-6
        assert abs(pot_var - var) < 1e-4  # observed <= 1.1e-5


def test_value_identity_and_plan_objective_in_3d():
    rng = np.random.default_rng(3)
    d = 3
    a, b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = _spd(rng, d), _spd(rng, d)
    mass_a, mass_b, tau = 1.3, 0.4, 0.8
    res = uot(mass_a, a, cov_a, mass_b, b, cov_b, tau)
    # The UOT objective of the returned plan, its transport term from POT's Bures-Wasserstein distance.
    w2 = ot.gaussian.bures_wasserstein_distance(res.mean0, res.mean1, res.cov0, res.cov1) ** 2
    src, dst = res.marginals
    objective = res.mass * w2 + tau * (
        kl_divergence(src, GaussianMeasure(mass_a, a, cov_a)) + kl_divergence(dst, GaussianMeasure(mass_b, b, cov_b))
    )
    assert objective == pytest.approx(res.value, rel=1e-10)
    assert res.value == pytest.approx(tau * (mass_a + mass_b - 2 * res.mass), rel=1e-12)
    assert res.mass == pytest.approx(np.sqrt(mass_a * mass_b) * np.exp(-res.inner_value / (2 * tau)), rel=1e-12)
    # The plan lives on the graph of the affine map, which pushes the first marginal onto the second.
    assert np.allclose(res.map_matrix @ res.cov0 @ res.map_matrix, res.cov1, atol=1e-12)
    assert np.allclose(res.transport(res.mean0), res.mean1, atol=1e-12)
    assert np.linalg.matrix_rank(res.coupling_cov, tol=1e-9) == d


def _inner_objective_by_parameters(theta, d, a, cov_a, b, cov_b, tau):
    tril = np.tril_indices(d)
    mu0, mu1 = theta[:d], theta[d : 2 * d]
    k = len(tril[0])
    l0, l1 = np.zeros((d, d)), np.zeros((d, d))
    l0[tril], l1[tril] = theta[2 * d : 2 * d + k], theta[2 * d + k :]
    s0, s1 = l0 @ l0.T + 1e-12 * np.eye(d), l1 @ l1.T + 1e-12 * np.eye(d)
    w2 = ot.gaussian.bures_wasserstein_distance(mu0, mu1, s0, s1) ** 2
    return w2 + tau * (gaussian_kl(mu0, s0, a, cov_a) + gaussian_kl(mu1, s1, b, cov_b))


def test_inner_problem_minimizer_against_generic_optimizer():
    rng = np.random.default_rng(7)
    d, tau = 3, 1.2
    a, b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = _spd(rng, d), _spd(rng, d)
    res = uot(1.0, a, cov_a, 1.0, b, cov_b, tau)
    tril = np.tril_indices(d)
    start = np.concatenate([a, b, np.linalg.cholesky(cov_a)[tril], np.linalg.cholesky(cov_b)[tril]])
    args = (d, a, cov_a, b, cov_b, tau)
    found = minimize(_inner_objective_by_parameters, start, args=args, method="BFGS", options={"gtol": 1e-10})
    # A generic quasi-Newton run (finite differences) stops 2e-14 above the closed-form minimum; never below it.
    assert res.inner_value <= found.fun + 1e-12
    assert found.fun - res.inner_value < 1e-9
    assert np.allclose(found.x[:d], res.mean0, atol=1e-4)


def test_equal_covariances_have_the_hand_derived_inner_value():
    # With A = B = s^2 I the covariances stay put and F* = |a - b|^2 / (1 + 4 s^2 / tau) (means shrink symmetrically).
    a, b, var, tau = np.array([0.5, -1.0]), np.array([2.0, 1.0]), 0.7, 1.5
    res = uot(2.0, a, var * np.eye(2), 0.5, b, var * np.eye(2), tau)
    assert res.inner_value == pytest.approx(np.sum((a - b) ** 2) / (1 + 4 * var / tau), rel=1e-12)
    assert np.allclose(res.cov0, var * np.eye(2), atol=1e-12) and np.allclose(res.cov1, var * np.eye(2), atol=1e-12)


def test_large_tau_recovers_balanced_bures_wasserstein():
    rng = np.random.default_rng(11)
    d = 3
    a, b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = _spd(rng, d), _spd(rng, d)
    w2 = ot.gaussian.bures_wasserstein_distance(a, b, cov_a, cov_b) ** 2
    slope, offset = ot.gaussian.bures_wasserstein_mapping(a, b, cov_a, cov_b)
    errors = []
    for tau in (1e3, 1e4, 1e6):
        res = uot(2.0, a, cov_a, 2.0, b, cov_b, tau)
        errors.append(abs(res.value / 2.0 - w2) / w2)
    # The deviation is O(1/tau): it falls tenfold per decade of tau (5.7e-3, 5.8e-4, 5.8e-6 observed).
    assert errors[0] > 5 * errors[1] > 50 * errors[2] and errors[2] < 1e-5
    assert res.mass == pytest.approx(2.0, rel=1e-5)  # observed 3.6e-6
    # Map and offset also deviate by O(1/tau) at tau = 1e6 (observed 1.7e-6 and 1.1e-5).
    assert np.allclose(res.map_matrix, slope.T, rtol=0, atol=1e-4)
    assert np.allclose(res.map_offset, np.ravel(offset), rtol=0, atol=1e-4)
    # Unequal masses: m* -> sqrt(m_a m_b) and value -> tau (sqrt m_a - sqrt m_b)^2 + sqrt(m_a m_b) W2^2.
    tau = 1e6
    res = uot(3.0, a, cov_a, 0.5, b, cov_b, tau)
    gm = np.sqrt(1.5)
    assert res.mass == pytest.approx(gm, rel=1e-5)  # observed 3.6e-6
    assert res.value - tau * (np.sqrt(3.0) - np.sqrt(0.5)) ** 2 == pytest.approx(gm * w2, rel=1e-4)


def test_optimal_marginals_approach_the_references_as_tau_grows():
    ref_a, ref_b = GaussianMeasure(1.0, -1.0, 0.25), GaussianMeasure(0.5, 1.5, 0.64)
    gaps, masses = [], []
    for tau in (0.2, 1.0, 10.0, 30.0, 300.0):
        res = uot(ref_a.mass, ref_a.mean, ref_a.cov, ref_b.mass, ref_b.mean, ref_b.cov, tau)
        src, dst = res.marginals
        gaps.append(kl_divergence(src, ref_a) + kl_divergence(dst, ref_b))
        masses.append(res.mass)
    assert np.all(np.diff(gaps) < 0) and np.all(np.diff(masses) > 0)
    assert masses[-1] < np.sqrt(0.5) and masses[-1] == pytest.approx(np.sqrt(0.5), rel=2e-2)


# Entropic UOT: POT's unbalanced Sinkhorn with the reference a b^T, at eps where it is stable.
@pytest.mark.parametrize(("tau", "eps"), [(1.0, 0.5), (5.0, 1.0)])
def test_entropic_closed_form_matches_pot_sinkhorn(tau, eps):
    case = (1.0, -1.0, 0.3, 0.6, 1.0, 0.5)
    mass_a, mean_a, sd_a, mass_b, mean_b, sd_b = case
    res = entropic_uot(mass_a, mean_a, sd_a**2, mass_b, mean_b, sd_b**2, tau, eps)
    x, a, b = _grid_measures(*case, n=200, span=(-4.0, 5.0))  # 8 standard deviations or more: no truncation
    cost = (x[:, None] - x[None, :]) ** 2
    plan = ot.unbalanced.sinkhorn_unbalanced(
        a, b, cost, eps, tau, method="sinkhorn_stabilized", numItermax=20000, stopThr=1e-12
    )
    value = float(np.sum(plan * cost)) + tau * (_generalized_kl(plan.sum(1), a) + _generalized_kl(plan.sum(0), b))
    value += eps * _generalized_kl(plan, a[:, None] * b[None, :])
    # Grid sums of Gaussians converge spectrally and Sinkhorn runs to 1e-12: agreement is 1e-11 or better.
    assert plan.sum() == pytest.approx(res.mass, rel=1e-9)
    assert value == pytest.approx(res.value, rel=1e-9)
    w = plan / plan.sum()
    mx, my = w.sum(1) @ x, w.sum(0) @ x
    assert mx == pytest.approx(res.mean0[0], abs=1e-9) and my == pytest.approx(res.mean1[0], abs=1e-9)
    cross = float(np.sum(w * np.outer(x - mx, x - my)))
    assert cross == pytest.approx(res.cross_cov[0, 0], abs=1e-9)


def _entropic_objective_by_parameters(theta, d, a, cov_a, b, cov_b, tau, eps):
    mu0, mu1 = theta[:d], theta[d : 2 * d]
    chol = np.zeros((2 * d, 2 * d))
    chol[np.tril_indices(2 * d)] = theta[2 * d :]
    gam = chol @ chol.T
    s0, s1, c = gam[:d, :d], gam[d:, d:], gam[:d, d:]
    mi = 0.5 * (np.linalg.slogdet(s0)[1] + np.linalg.slogdet(s1)[1] - np.linalg.slogdet(gam)[1])
    kl = gaussian_kl(mu0, s0, a, cov_a) + gaussian_kl(mu1, s1, b, cov_b)
    return np.sum((mu0 - mu1) ** 2) + np.trace(s0) + np.trace(s1) - 2 * np.trace(c) + (tau + eps) * kl + eps * mi


def test_entropic_inner_minimizer_against_generic_optimizer():
    rng = np.random.default_rng(5)
    d, tau, eps = 2, 1.5, 0.3
    a, b = rng.normal(size=d), rng.normal(size=d)
    cov_a, cov_b = _spd(rng, d), _spd(rng, d)
    res = entropic_uot(1.0, a, cov_a, 1.0, b, cov_b, tau, eps)
    start = np.concatenate([a, b, np.linalg.cholesky(block_diag(cov_a, cov_b))[np.tril_indices(2 * d)]])
    args = (d, a, cov_a, b, cov_b, tau, eps)
    found = minimize(_entropic_objective_by_parameters, start, args=args, method="BFGS", options={"gtol": 1e-10})
    assert res.inner_value <= found.fun + 1e-12
    assert found.fun - res.inner_value < 1e-9  # observed 4e-15
    assert np.allclose(res.coupling_cov, _gamma(found.x, d), atol=1e-4)


def _gamma(theta, d):
    chol = np.zeros((2 * d, 2 * d))
    chol[np.tril_indices(2 * d)] = theta[2 * d :]
    return chol @ chol.T


def test_entropic_tends_to_uot_as_eps_vanishes():
    rng = np.random.default_rng(2)
    a, b, cov_a, cov_b = rng.normal(size=2), rng.normal(size=2), _spd(rng, 2), _spd(rng, 2)
    exact = uot(1.0, a, cov_a, 0.6, b, cov_b, 2.0)
    gaps = [abs(entropic_uot(1.0, a, cov_a, 0.6, b, cov_b, 2.0, eps).mass - exact.mass) for eps in (1e-2, 1e-4, 1e-6)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5 * exact.mass
    spread = [np.trace(entropic_uot(1.0, a, cov_a, 0.6, b, cov_b, 2.0, eps).conditional_cov) for eps in (0.1, 1.0, 5.0)]
    assert np.all(np.diff(spread) > 0)


def test_group_growth_rates_follow_the_transported_mass():
    var, tau, dt = 0.5, 2.0, 0.5
    # Groups: unchanged; moved by 2 and grown by 20 %; unmoved and tripled.
    means0, means1 = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 3.0]]), np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]])
    covs = np.stack([var * np.eye(2)] * 3)
    masses0, masses1 = np.array([100.0, 100.0, 50.0]), np.array([100.0, 120.0, 150.0])
    out = group_growth(masses0, means0, covs, masses1, means1, covs, tau, dt)
    inner = np.array([0.0, 4.0 / (1 + 4 * var / tau), 0.0])  # equal covariances: |a - b|^2 / (1 + 4 var / tau)
    moved = np.sqrt(masses0 * masses1) * np.exp(-inner / (2 * tau))
    assert np.allclose(out.transported_mass, moved, rtol=1e-12)
    assert np.allclose(out.growth_rate, np.log(masses1 / masses0) / dt, rtol=1e-12)
    assert np.allclose(out.birth_rate - out.death_rate, out.growth_rate, atol=1e-12)
    assert np.allclose(out.turnover_rate, inner / (tau * dt), atol=1e-12)
    assert out.death_rate[0] == pytest.approx(0.0, abs=1e-12) and out.birth_rate[0] == pytest.approx(0.0, abs=1e-12)
    # A displacement the transport cannot fully explain shows as turnover: both rates positive.
    assert out.death_rate[1] > 0 and out.birth_rate[1] > out.growth_rate[1]
    # Pure growth in place: the plan carries sqrt(50 * 150) > 50, so the death rate is negative (documented).
    assert out.death_rate[2] == pytest.approx(-0.5 * np.log(3.0) / dt, rel=1e-12)


# Bad input: a ValueError naming the argument and the reason.
GOOD = dict(mass_a=1.0, mean_a=[0.0, 0.0], cov_a=np.eye(2), mass_b=0.5, mean_b=[1.0, 0.0], cov_b=2 * np.eye(2), tau=1.0)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"mass_a": 0.0}, r"mass_a: expected a finite number > 0"),
        ({"mass_b": -1.0}, r"mass_b: expected a finite number > 0"),
        ({"tau": 0.0}, r"tau: expected a finite number > 0"),
        ({"tau": np.inf}, r"tau: expected a finite number > 0"),
        ({"cov_a": [[1.0, 0.5], [0.0, 1.0]]}, r"cov_a: not symmetric"),
        ({"cov_b": [[1.0, 2.0], [2.0, 1.0]]}, r"cov_b: not positive definite"),
        ({"cov_b": np.eye(3)}, r"cov_b: expected shape \(2, 2\)"),
        ({"mean_b": [0.0, 1.0, 2.0]}, r"mean_b: dimension 3 does not match"),
        ({"mean_a": [np.nan, 0.0]}, r"mean_a: contains non-finite values"),
    ],
)
@pytest.mark.parametrize("solver", ["uot", "entropic_uot"])
def test_bad_input_raises_value_error(change, pattern, solver):
    kwargs = {**GOOD, **change}
    with pytest.raises(ValueError, match=pattern):
        if solver == "uot":
            uot(**kwargs)
        else:
            entropic_uot(**kwargs, eps=0.5)


def test_entropic_rejects_non_positive_eps():
    with pytest.raises(ValueError, match=r"eps: expected a finite number > 0"):
        entropic_uot(**GOOD, eps=0.0)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"covs1": np.stack([np.eye(2), -np.eye(2)])}, r"covs1\[1\]: not positive definite"),
        ({"masses0": [1.0, 0.0]}, r"masses0\[1\]: expected a finite number > 0"),
        ({"means1": np.zeros((3, 2))}, r"means1, covs1: expected 2 groups"),
        ({"dt": -1.0}, r"dt: expected a finite number > 0"),
    ],
)
def test_group_growth_bad_input(change, pattern):
    kwargs = dict(
        masses0=[1.0, 2.0],
        means0=np.zeros((2, 2)),
        covs0=np.stack([np.eye(2)] * 2),
        masses1=[1.0, 2.0],
        means1=np.zeros((2, 2)),
        covs1=np.stack([np.eye(2)] * 2),
        tau=1.0,
    )
    with pytest.raises(ValueError, match=pattern):
        group_growth(**{**kwargs, **change})
