"""Kantorovich secondaries discretized on a graph of their support points (solvers/dynamic_secondary.py)."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sc_syncot.solvers import Graph, Grid, KantorovichSecondary, MongeSecondary, SyncOTProblem, oracles, solve
from sc_syncot.solvers.dynamic_secondary import CoupledProjector, DynamicSecondary
from sc_syncot.solvers.graph_transport import GraphProjector

DELTA = 0.3


def path_graph(n: int, n_time: int) -> Graph:
    x = (np.arange(n) + 0.5) / n
    return Graph(x[:, None], n_time, edges=np.stack([np.arange(n - 1), np.arange(1, n)], axis=1))


def bumps(x):
    def bump(mean, mass):
        p = np.exp(-0.5 * ((x - mean) / 0.05) ** 2)
        return mass * p / p.sum()

    return bump(0.35, 1.0), bump(0.6, 1.5)


def identity_secondary(g: Graph, weight: float = 1.0) -> KantorovichSecondary:
    """Each node its own support point: the secondary is a copy of the primary (oracle 5).

    The kNN graph with k = 2 of the path's points is the path, plus an edge from each end node to its second
    neighbour, where no mass goes.
    """
    identity = sp.identity(g.n_nodes, format="csr")
    return KantorovichSecondary(identity, g.points, weight, delta=DELTA, discretization="graph", n_neighbors=2)


def test_a_copy_of_the_primary_pays_what_the_primary_pays():
    # Mathematics page, oracle 5 on a path graph: the support graph is the primary's own, so the synchronized
    # problem is the primary's doubled: the same path, twice its cost
    g = path_graph(60, 8)
    rho0, rho1 = bumps(g.points[:, 0])
    alone = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA), tol=1e-8)
    res = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=[identity_secondary(g)]), tol=1e-8)
    assert res.converged
    assert res.cost == pytest.approx(2 * alone.cost, rel=1e-4)
    assert res.costs["secondary_0"] == pytest.approx(alone.cost, rel=1e-4)
    # the paths agree to about the square root of the costs' agreement (the cost is stationary at the optimum):
    # 1.5e-3 of the peak measured
    np.testing.assert_allclose(res.rho, alone.rho, atol=5e-3 * alone.rho.max())
    np.testing.assert_allclose(res.secondary_density[0], res.rho, atol=1e-12 * alone.rho.max())


@pytest.mark.parametrize("n_time", [4, 32])
def test_a_copy_of_the_primary_converges_about_as_fast_as_the_primary(n_time):
    # the secondary's time chain is solved by the projection, so the iterations stay near the primary's at every
    # n_time: 460 and 640 against 440 and 480 at weight 0 (the pairs discretization: 3,760 and 1,220)
    g = path_graph(60, n_time)
    rho0, rho1 = bumps(g.points[:, 0])
    alone = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA))
    res = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=[identity_secondary(g)]))
    assert res.converged
    assert res.n_iter <= 1.6 * alone.n_iter


def test_two_copies_and_a_light_one_add_up():
    # two graph secondaries in one projection (their Schur complements stacked), beside a pair-discretized one at
    # weight 0.5: copies of the primary, so the path stays the primary's and the cost is (1 + 1 + 1 + 0.5) times its
    # (the pairs' debiased HK meets the primary's cost within 3% on this oracle, tests/test_graph.py)
    g = path_graph(60, 8)
    rho0, rho1 = bumps(g.points[:, 0])
    alone = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA), tol=1e-8)
    pairs = KantorovichSecondary(sp.identity(60, format="csr"), g.points, 0.5, delta=DELTA, name="pairs")
    secs = [identity_secondary(g), dataclasses.replace(identity_secondary(g), name="again"), pairs]
    res = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=secs))
    assert res.converged
    assert res.costs["secondary_0"] == pytest.approx(alone.cost, rel=1e-3)
    assert res.costs["again"] == pytest.approx(alone.cost, rel=1e-3)
    assert res.costs["pairs"] == pytest.approx(0.5 * alone.cost, rel=3e-2)
    np.testing.assert_allclose(res.rho, alone.rho, atol=5e-3 * alone.rho.max())


def test_at_weight_zero_the_secondary_is_priced_along_the_primary_path():
    # the action along a fixed curve is a quadratic form per time step (action_along); on a copy of the primary it
    # is the primary's own action, within the stopping rule's error of the path (2e-5 at tol 1e-10, 6e-4 at 1e-8)
    g = path_graph(60, 8)
    rho0, rho1 = bumps(g.points[:, 0])
    res = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=[identity_secondary(g, 0.0)]), tol=1e-8)
    alone = solve(SyncOTProblem(g, rho0, rho1, delta=DELTA), tol=1e-8)
    assert res.n_iter == alone.n_iter and res.cost == pytest.approx(alone.cost, rel=1e-12)
    assert res.costs["secondary_0"] == 0.0
    assert res.secondary_actions["secondary_0"] == pytest.approx(alone.cost, rel=1e-3)


def test_the_secondary_action_meets_the_monge_solve_of_the_same_map():
    # an identity kernel onto the images T(x) of the grid cells under a smooth map T into 10-D is the Monge secondary
    # with T, whose solve is exact by a change of variables; the graph of the images prices transport along its
    # edges (measured 0.8% below at 16^2 x 4, 2.6-2.9% at 32^2; the pairs discretization read 16% below)
    grid = Grid(oracles.UNIT_BOX, (16, 16), 4)
    t_map = lambda p: oracles.smooth_embedding(p, 10)  # noqa: E731
    cells = t_map(grid.points().reshape(-1, 2))
    rho0 = oracles.gaussian_density(grid, oracles.MEAN0, oracles.COV0)
    rho1 = oracles.gaussian_density(grid, oracles.MEAN1, oracles.COV1, mass=1.5)
    monge = solve(SyncOTProblem(grid, rho0, rho1, delta=DELTA, secondaries=[MongeSecondary(t_map)]))
    kant = KantorovichSecondary(sp.identity(grid.n_cells, format="csr"), cells, discretization="graph")
    res = solve(SyncOTProblem(grid, rho0, rho1, delta=DELTA, secondaries=[kant]))
    assert res.converged
    exact = monge.secondary_actions["secondary_0"]
    assert abs(res.secondary_actions["secondary_0"] - exact) < 0.03 * exact
    assert abs(res.cost - monge.cost) < 0.03 * monge.cost


def _coupled(n_time=3):
    """A small coupled projection: a 12-node path primary, 5 support points in 2-D with a smooth kernel."""
    g = path_graph(12, n_time)
    rng = np.random.default_rng(0)
    support = rng.uniform(size=(5, 2))
    kernel = rng.uniform(size=(12, 5)) ** 4
    kernel /= kernel.sum(1, keepdims=True)
    sec = KantorovichSecondary(kernel, support, delta=0.5, discretization="graph", n_neighbors=3)
    opts = {"dtype": torch.float64, "device": "cpu"}
    rho0, rho1 = (torch.as_tensor(rng.uniform(0.5, 1.5, size=(1, 12)), **opts) for _ in range(2))
    primary = GraphProjector(g, rho0, rho1, 0.7)
    block = DynamicSecondary(sec, n_time, np.ones(1), rho0, rho1, opts)
    return g, block, CoupledProjector(primary, [block]), primary


def _residuals(x, block, primary):
    sigma = block.induced(x[0])
    q, s = x[3], x[4]
    own = (sigma[:, 1:] - sigma[:, :-1]) / block.graph.dt + block.projector.divergence([sigma, q]) - s / block.delta
    return primary.residual(x[:3]), own


def test_the_coupled_projection_is_the_nearest_point_of_both_balance_equations():
    # against the projection computed densely: the affine constraint map read off column by column, then
    # x - A^T (A A^T)^+ (A x - b) by least squares (numpy), with the end masses fixed
    g, block, proj, primary = _coupled()
    rng = np.random.default_rng(1)
    shapes = [(1, 4, 12), (1, 3, g.n_edges), (1, 3, 12), (1, 3, block.graph.n_edges), (1, 3, 5)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflat(v):
        parts = np.split(v, np.cumsum(sizes)[:-1])
        return [torch.as_tensor(p.reshape(s).copy()) for p, s in zip(parts, shapes, strict=True)]

    def constraint(v):  # the residuals, with the end faces fixed as the projection fixes them
        x = unflat(v)
        primary.set_ends_(x[:3])
        return np.concatenate([r.numpy().ravel() for r in _residuals(x, block, primary)])

    x0 = rng.normal(size=sum(sizes))
    free = np.ones(sum(sizes), bool)
    free[np.r_[0:12, 36:48]] = False  # rho's end faces
    base = constraint(np.zeros_like(x0))
    a = np.stack([constraint(np.eye(len(x0))[i]) - base for i in range(len(x0))], 1)[:, free]
    xf = x0[free]
    shift = np.linalg.lstsq(a @ a.T, a @ xf + base, rcond=None)[0]
    expected = x0.copy()
    expected[free] = xf - a.T @ shift
    x = unflat(x0)
    proj.project_(x, 3)
    got = np.concatenate([t.numpy().ravel() for t in x])
    expected[~free] = got[~free]  # the ends are set, not projected
    np.testing.assert_allclose(got, expected, atol=1e-10)
    for r in _residuals(x, block, primary):
        assert float(r.abs().max()) < 1e-10


def test_the_graph_secondary_refuses_what_it_cannot_do():
    g = path_graph(20, 4)
    rho0, rho1 = bumps(g.points[:, 0])
    sec = identity_secondary(g)
    with pytest.raises(ValueError, match="discretization: expected one of"):
        dataclasses.replace(sec, discretization="chain")
    with pytest.raises(ValueError, match="n_neighbors: expected a positive integer"):
        dataclasses.replace(sec, n_neighbors=0)
    balanced = SyncOTProblem(g, rho0, rho0, secondaries=[dataclasses.replace(sec, delta=None)])
    with pytest.raises(ValueError, match="needs an unbalanced problem"):
        solve(balanced)
    problem = SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=[sec])
    with pytest.raises(ValueError, match="method='chambolle_pock'"):
        solve(problem, method="pd3o")
    soft = SyncOTProblem(g, rho0, rho1, delta=DELTA, secondaries=[sec], tau=1.0)
    with pytest.raises(ValueError, match="fixed endpoints"):
        solve(soft)


def test_iterations_of_the_embedded_secondary_do_not_grow_with_the_time_steps():
    # oracles.embedded_secondary, 100 support points in 10-D on a 16^2 grid: 1,360 and 1,940 iterations at 4 and 16
    # steps (pairs: 1,060 and 2,860); on 32^2 with 200 points 1,500 and 1,580 at 4 and 32 (pairs 500 and 6,460)
    iters = []
    for n_time in (4, 16):
        p = oracles.embedded_secondary(16, n_time, n_support=100)
        sec = dataclasses.replace(p.secondaries[0], discretization="graph")
        res = solve(SyncOTProblem(p.geometry, p.rho0[0], p.rho1[0], delta=p.delta, secondaries=[sec]))
        assert res.converged
        iters.append(res.n_iter)
    assert iters[1] <= 1.6 * iters[0]
