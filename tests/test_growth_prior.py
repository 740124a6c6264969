"""A growth prior on the grid: ``delta^2 int (g - g_0)^2 rho`` against its closed form, batches and the errors.

The graph's checks are in test_graph.py; the compiled iteration with a prior is in test_solve.py.
"""

import numpy as np
import pytest

from sc_syncot.solvers import Grid, MongeSecondary, SyncOTProblem, solve
from sc_syncot.solvers.closed_forms import gaussian_density, wfr_pure_growth, wfr_pure_growth_with_prior

DELTA, RATIO = 0.3, 2.5
GRIDS = {"1d": Grid([(0.0, 1.0)], (64,), 16), "2d": Grid([(0.0, 1.0), (0.0, 1.0)], (16, 16), 8)}
COARSE = Grid([(0.0, 1.0)], (32,), 8)  # for the problems that also transport (2,000-3,000 iterations at tol 1e-7)


def _bump(grid: Grid, centre: float = 0.5, width: float = 0.1) -> np.ndarray:
    return gaussian_density(grid, np.full(grid.ndim, centre), width**2 * np.eye(grid.ndim))


@pytest.mark.parametrize("prior", [0.5, np.log(RATIO), 1.5])
@pytest.mark.parametrize("name", GRIDS)
def test_pure_growth_with_a_growth_prior_matches_its_closed_form(name, prior):
    """Growing by 2.5 with a prior rate costs the closed form, zero at ``g_0 = log 2.5`` (then the rate is ``g_0``).

    At ``g_0 = log 2.5`` the cost is zero, so the relative change of the stopping rule never settles: 1,000
    iterations there (the rate and masses are as close after 500 as after 2,000).
    """
    grid = GRIDS[name]
    rho0 = _bump(grid)
    own = np.isclose(prior, np.log(RATIO))
    problem = SyncOTProblem(grid, rho0, RATIO * rho0, delta=DELTA, growth_prior=np.full(grid.shape, prior))
    res = solve(problem, tol=1e-7, max_iter=1000 if own else 5000)
    exact = wfr_pure_growth_with_prior(DELTA, RATIO, 1.0, prior)
    plain = wfr_pure_growth(DELTA, RATIO, 1.0)
    # measured (cost - exact) / plain: 1-D -1.8e-4, 1.4e-7, 5.5e-4; 2-D -6.6e-4, 1.6e-6, 2.3e-3 (time steps)
    assert abs(res.cost - exact) < 1e-2 * plain
    assert res.costs["primary_growth"] == pytest.approx(res.cost, abs=1e-4 * plain)
    assert res.costs["primary_transport"] < 1e-4 * plain
    if own:  # the prior's own exponential growth: the fitted rate is the prior's
        assert res.cost < 1e-5 * plain
        np.testing.assert_allclose(grid.mass(res.rho), np.exp(prior * grid.times()), rtol=1e-3)  # measured 1.5e-4
        mid = 0.5 * (res.rho[1:] + res.rho[:-1])
        bulk = mid > 0.01 * mid.max()
        np.testing.assert_allclose(res.growth[bulk], prior, atol=5e-3 * prior)  # measured 1.5e-3
        path = np.exp(prior * grid.times()).reshape(-1, *[1] * grid.ndim) * rho0
        np.testing.assert_allclose(res.rho, path, atol=2e-2 * path.max())  # measured 4e-3 (the tails, last)


def _moving_problem(grid: Grid, prior=None, ratio: float = 1.6) -> SyncOTProblem:
    """Transport and growth: a bump moves right and grows, under a prior that varies in space."""
    return SyncOTProblem(grid, _bump(grid, 0.4), ratio * _bump(grid, 0.6), delta=DELTA, growth_prior=prior)


def _ramp(grid: Grid, low: float, high: float) -> np.ndarray:
    """A prior rising along the first axis."""
    return low + (high - low) * grid.points()[..., 0]


def test_a_zero_prior_is_no_prior():
    grid = COARSE
    without = solve(_moving_problem(grid), tol=1e-7)
    zero = solve(_moving_problem(grid, np.zeros(grid.shape)), tol=1e-7)
    assert zero.n_iter == without.n_iter
    assert zero.cost == pytest.approx(without.cost, rel=1e-12)
    for key, val in without.costs.items():
        assert zero.costs[key] == pytest.approx(val, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(zero.rho, without.rho, rtol=0, atol=1e-12 * without.rho.max())


def test_the_reported_growth_cost_is_the_departure_from_the_prior():
    """``costs["primary_growth"]`` is ``delta^2 sum (g - g_0)^2 rho`` of the fitted path, and the fit follows the
    prior: where it is higher the fitted rate is higher than without it."""
    grid = COARSE
    prior = _ramp(grid, -0.5, 1.5)
    res = solve(_moving_problem(grid, prior), tol=1e-7)
    assert res.converged
    mid = 0.5 * (res.rho[1:] + res.rho[:-1])
    by_hand = DELTA**2 * np.sum((res.growth - prior) ** 2 * mid) * grid.dt * grid.cell_volume
    assert res.costs["primary_growth"] == pytest.approx(by_hand, rel=1e-2)  # prox point vs iterate: measured 2e-4
    assert res.costs["total"] == pytest.approx(res.cost)
    assert res.cost == pytest.approx(res.costs["primary_transport"] + res.costs["primary_growth"])
    plain = solve(_moving_problem(grid), tol=1e-7)
    bulk = mid > 0.05 * mid.max()
    right = bulk & (grid.points()[..., 0] > 0.6)
    left = bulk & (grid.points()[..., 0] < 0.4)
    assert res.growth[right].mean() > plain.growth[right].mean()
    assert res.growth[left].mean() < plain.growth[left].mean()


def test_a_monge_secondary_pays_its_growth_from_the_prior_too():
    """``g_Y = g``: the secondary's growth term is ``delta_Y^2 (g - g_0)^2 rho`` as well, so the costs add up."""
    grid = COARSE
    base = _moving_problem(grid, _ramp(grid, 0.0, 1.0))
    secondary = MongeSecondary(lambda x: np.concatenate([x, x**2], axis=1), weight=0.5, delta=0.2)
    problem = SyncOTProblem(
        grid, base.rho0[0], base.rho1[0], delta=DELTA, secondaries=[secondary], growth_prior=base.growth_prior[0]
    )
    res = solve(problem, tol=1e-7)
    parts = res.costs["primary_transport"] + res.costs["primary_growth"] + res.costs["secondary_0"]
    assert res.cost == pytest.approx(parts)
    # the objective the iteration minimized is the reported total
    assert res.history["objective"][-1] == pytest.approx(res.cost, rel=1e-6)


def test_a_batch_with_different_priors_gives_the_separate_solves():
    grid = COARSE
    priors = np.stack([_ramp(grid, -0.5, 1.0), _ramp(grid, 1.0, 0.2)])
    single = [solve(_moving_problem(grid, p), tol=1e-7) for p in priors]
    problem = SyncOTProblem(
        grid, np.stack([_bump(grid, 0.4)] * 2), 1.6 * np.stack([_bump(grid, 0.6)] * 2), delta=DELTA,
        growth_prior=priors,
    )  # fmt: skip
    both = solve(problem, tol=1e-7)
    assert both.rho.shape == (2, grid.n_time + 1, *grid.shape)
    for b, one in enumerate(single):  # they stop at different iterations: measured 1.5e-5 (cost), 3.4e-5 (rho)
        assert abs(one.cost - both.cost[b]) < 2e-4 * one.cost
        np.testing.assert_allclose(both.rho[b], one.rho, atol=2e-4 * one.rho.max())
    # one prior for the whole batch acts as that prior given to every problem
    shared = SyncOTProblem(grid, problem.rho0, problem.rho1, delta=DELTA, growth_prior=priors[0])
    assert shared.growth_prior.shape == (1, *grid.shape)
    each = SyncOTProblem(grid, problem.rho0, problem.rho1, delta=DELTA, growth_prior=np.stack([priors[0]] * 2))
    np.testing.assert_array_equal(solve(shared, max_iter=100).rho, solve(each, max_iter=100).rho)


def test_a_growth_prior_on_a_grid_is_checked_with_its_name():
    grid = Grid([(0.0, 1.0), (0.0, 1.0)], (8, 8), 4)
    rho = np.ones((8, 8))
    with pytest.raises(ValueError, match="growth_prior: a growth prior needs an unbalanced"):
        SyncOTProblem(grid, rho, rho, growth_prior=np.zeros((8, 8)))
    for bad in (np.zeros(64), np.zeros((8, 7)), np.zeros((3, 8, 8)), 0.5):
        with pytest.raises(ValueError, match=r"growth_prior: expected \(8, 8\) or \(1, 8, 8\) rates per grid cell"):
            SyncOTProblem(grid, rho, rho, delta=1.0, growth_prior=bad)
    nan = np.zeros((8, 8))
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="growth_prior: expected finite values"):
        SyncOTProblem(grid, rho, rho, delta=1.0, growth_prior=nan)
    batch = SyncOTProblem(grid, np.stack([rho] * 2), np.stack([rho] * 2), delta=1.0, growth_prior=np.zeros((2, 8, 8)))
    assert batch.growth_prior.shape == (2, 8, 8)
