import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from sc_syncot.solvers import prox_action
from sc_syncot.solvers.prox import prox_action_fixed
from sc_syncot.solvers.solve import PROX_RTOL


def _brute_force_prox(cell, gamma, metric, alpha):
    """argmin_{rho > 0, m, z} gamma (m^T G m + alpha z^2)/rho + |(rho, m, z) - cell|^2 / 2, by scipy, or 0."""
    d = metric.shape[0]

    def energy(u):
        rho, m, z = u[0], u[1 : d + 1], u[d + 1 :]
        action = (m @ metric @ m + alpha * float(z @ z)) / rho
        return gamma * action + 0.5 * np.sum((u - cell) ** 2)

    # The set {rho > 0} is open: compare the best interior point with the origin (value of f there is 0).
    best = minimize(
        energy,
        np.concatenate([[max(cell[0], 0) + 1.0], cell[1:]]),
        method="L-BFGS-B",
        bounds=[(1e-12, None)] + [(None, None)] * (cell.size - 1),
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10000},
    )
    zero_value = 0.5 * np.sum(cell**2)
    return best.x if best.fun < zero_value else np.zeros_like(cell)


@pytest.mark.parametrize(("with_metric", "alpha"), [(False, 1.0), (False, 0.6), (True, 0.6)])
def test_prox_matches_brute_force_minimization(with_metric, alpha):
    rng = np.random.default_rng(5)
    d, gamma = 2, 0.8
    cells = rng.normal(size=(40, d + 2)) * np.array([1.0, 2.0, 2.0, 2.0])
    if with_metric:
        a = rng.normal(size=(d, d))
        metric = np.eye(d) + a.T @ a
    else:
        metric = np.eye(d)
    evals, evecs = np.linalg.eigh(metric)
    # math.md section 3: weights (g_1..g_d, alpha) in the eigenbasis Q of G; G = I and alpha = 1 is the cubic.
    trivial = not with_metric and alpha == 1.0
    weights = None if trivial else torch.as_tensor(np.concatenate([evals, [alpha]]))[:, None]
    rotation = torch.as_tensor(evecs)[:, :, None] if with_metric else None
    out = prox_action(torch.as_tensor(cells.T.copy()), gamma, weights, rotation).numpy().T
    n_zero = 0
    for cell, ours in zip(cells, out, strict=True):
        ref = _brute_force_prox(cell, gamma, metric, alpha)
        n_zero += not ref.any()
        np.testing.assert_allclose(ours, ref, atol=2e-5)  # the tolerance is L-BFGS-B's, not ours
    assert 0 < n_zero < len(cells)  # both branches were exercised


def test_prox_residual_is_at_rounding_level_over_scales():
    gen = torch.Generator().manual_seed(6)
    for scale in (1e-3, 1.0, 1e3):
        v = torch.randn(4, 20000, generator=gen, dtype=torch.float64) * scale
        for gamma in (1e-3, 1.0, 50.0):
            p = prox_action(v, gamma)
            rho, s = p[0], v[1:].square().sum(0)
            phi = rho - v[0] - gamma * s / (rho + 2 * gamma) ** 2
            assert float(torch.where(rho > 0, phi, 0.0).abs().max()) <= 1e-12 * (1 + float(v.abs().max()))
            assert float(rho.min()) >= 0
            # all-ones weights (Newton path) agree with the G = I path
            pw = prox_action(v, gamma, weights=torch.ones(3, 1, dtype=torch.float64))
            torch.testing.assert_close(p, pw, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("metric", [False, True])
def test_fixed_newton_count_is_right_whenever_its_test_accepts(metric):
    """The compiled path's map (a fixed number of Newton steps from a warm start, no cube-root start): from a start
    left of the root, right of it, or at it, every count its acceptance test passes gives the map to rounding."""
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(4, 5000, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [2.0], [2.0], [2.0]])
    weights = torch.tensor([[0.5], [3.0], [1.0]], dtype=torch.float64) if metric else None
    exact = prox_action(v, 0.7, weights)
    answer = exact[0]
    for start in (torch.zeros_like(answer), 10 * answer + 1, answer * (1 + 1e-3)):
        accepted = 0
        for n in range(1, 40):
            p, residual, scale = prox_action_fixed(v, 0.7, weights, None, start, n)
            if float(residual / scale) <= PROX_RTOL**0.5:  # the test of TransportOperators._compiled_step
                accepted += 1
                torch.testing.assert_close(p, exact, rtol=1e-9, atol=1e-9)
        assert accepted > 0
