"""Soft endpoints (``tau``): the dynamic problem with KL-penalized ends against Gaussian UOT in closed form.

Balanced dynamic transport with ``tau KL`` at both ends is the static problem ``min_pi int |x - y|^2 dpi + tau
KL(pi_0 | alpha) + tau KL(pi_1 | beta)`` (Benamou-Brenier between the fitted ends), whose value and mass
:func:`sc_syncot.gaussian.uot` gives in closed form for Gaussian ends.
"""

import numpy as np
import ot
import pytest
import torch
from scipy.stats import norm

from sc_syncot.gaussian import uot
from sc_syncot.solvers import Graph, Grid, KantorovichSecondary, SyncOTProblem, solve
from sc_syncot.solvers.endpoints import kl_prox, time_operator

MASS_A, MEAN_A, SD_A = 1.0, -0.8, 0.5
MASS_B, MEAN_B, SD_B = 1.5, 0.9, 0.6


def gaussian_ends(x):
    return MASS_A * norm.pdf(x, MEAN_A, SD_A), MASS_B * norm.pdf(x, MEAN_B, SD_B)


@pytest.mark.parametrize("tau", [2.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_grid_soft_ends_match_gaussian_uot(tau):
    grid = Grid([(-4, 4)], 128, 16)
    rho0, rho1 = gaussian_ends(grid.points().ravel())
    res = solve(SyncOTProblem(grid, rho0, rho1, delta=None, tau=tau), tol=1e-7, max_iter=20000)
    ref = uot(MASS_A, MEAN_A, SD_A**2, MASS_B, MEAN_B, SD_B**2, tau)
    assert res.converged
    mass0, mass1 = res.rho[0].sum() * grid.cell_volume, res.rho[-1].sum() * grid.cell_volume
    assert mass0 == pytest.approx(mass1, rel=1e-4)  # balanced: the path keeps its mass
    assert mass0 == pytest.approx(ref.mass, rel=0.02)
    assert res.cost == pytest.approx(ref.value, rel=0.02)
    assert set(res.costs) >= {"start_penalty", "end_penalty"}


def test_graph_soft_ends_match_gaussian_uot():
    x = np.linspace(-4, 4, 128)
    edges = np.stack([np.arange(127), np.arange(1, 128)], 1)
    graph = Graph(x[:, None], n_time=16, edges=edges, edge_weights="uniform")  # a lattice: omega = 1 is exact
    h = x[1] - x[0]
    rho0, rho1 = (r * h for r in gaussian_ends(x))  # node masses
    tau = 2.0
    res = solve(SyncOTProblem(graph, rho0, rho1, delta=None, tau=tau), tol=1e-7, max_iter=20000)
    ref = uot(MASS_A, MEAN_A, SD_A**2, MASS_B, MEAN_B, SD_B**2, tau)
    assert res.converged
    assert res.rho[0].sum() == pytest.approx(ref.mass, rel=0.02)
    assert res.cost == pytest.approx(ref.value, rel=0.02)


def test_noisy_end_is_smoothed_not_reproduced():
    grid = Grid([(-4, 4)], 96, 12)
    x = grid.points().ravel()
    rho0, clean = norm.pdf(x, 0.0, 0.5), 1.2 * norm.pdf(x, 0.3, 0.5)
    spikes = (np.abs(x - 3.3) < 0.1) | (np.abs(x + 3.3) < 0.1)  # noise far from both ends' cells
    noisy = clean + 2.0 * spikes
    vol = grid.cell_volume
    # unbalanced: the spikes could be grown in place at 4 delta^2 = 4 per unit mass, or dropped at tau = 1
    soft = solve(SyncOTProblem(grid, rho0, noisy, delta=1.0, tau=1.0), tol=1e-6)
    hard = solve(SyncOTProblem(grid, rho0, noisy, delta=1.0), tol=1e-6)
    assert soft.converged and hard.converged
    np.testing.assert_allclose(hard.rho[-1], noisy, rtol=1e-10)  # the hard end reproduces the noise
    assert soft.rho[-1][spikes].sum() < 0.2 * (noisy - clean)[spikes].sum()
    assert np.abs(soft.rho[-1] - clean).sum() * vol < 0.5 * np.abs(noisy - clean).sum() * vol


def test_large_tau_tends_to_hard_and_one_hard_end():
    grid = Grid([(-4, 4)], 48, 8)
    rho0, rho1 = gaussian_ends(grid.points().ravel())
    rho1 = rho1 * MASS_A / MASS_B
    hard = solve(SyncOTProblem(grid, rho0, rho1), tol=1e-7)
    costs = [solve(SyncOTProblem(grid, rho0, rho1, tau=t), tol=1e-7).cost for t in (0.5, 500.0)]
    assert costs[0] < costs[1] < hard.cost * 1.001
    assert costs[1] == pytest.approx(hard.cost, rel=0.01)
    half = solve(SyncOTProblem(grid, rho0, rho1, tau=(None, 0.5)), tol=1e-7)
    np.testing.assert_allclose(half.rho[0], rho0, rtol=1e-10)
    assert "start_penalty" not in half.costs and half.costs["end_penalty"] > 0


def test_tau_scales_with_the_units_of_the_box():
    grid = Grid([(-4, 4)], 32, 8)
    rho0, rho1 = gaussian_ends(grid.points().ravel())
    small = solve(SyncOTProblem(grid, rho0, rho1, tau=1.0), tol=1e-7)
    wide = Grid([(-40, 40)], 32, 8)
    big = solve(SyncOTProblem(wide, rho0 / 10, rho1 / 10, tau=100.0), tol=1e-7)  # lengths x10, costs x100
    assert big.rho[0].sum() * wide.cell_volume == pytest.approx(small.rho[0].sum() * grid.cell_volume, rel=1e-4)
    assert big.cost == pytest.approx(100 * small.cost, rel=1e-4)


def test_kl_prox_solves_its_optimality_condition():
    gen = torch.Generator().manual_seed(0)
    a = 20 * torch.randn(2000, generator=gen, dtype=torch.float64)
    q = torch.rand(2000, generator=gen, dtype=torch.float64) * 10
    q[:10] = 0.0
    s = torch.rand(2000, generator=gen, dtype=torch.float64) * 5 + 0.5  # e^{a/s} stays above underflow
    p = kl_prox(a, q, s)
    assert torch.all(p[:10] == 0) and torch.all(p[10:] > 0)
    cond = s[10:] * torch.log(p[10:] / q[10:]) + p[10:] - a[10:]  # s log(p/q) + p - a = 0
    assert float(cond.abs().max()) < 1e-9 * (1 + float(a.abs().max()))


@pytest.mark.parametrize("free", [(True, False), (False, True), (True, True)])
def test_time_operator_diagonalizes_the_free_end_laplacian(free):
    n, dt = 9, 1 / 9
    basis, eig = time_operator(n, dt, free, dtype=torch.float64, device="cpu")
    d = np.zeros((n, n + 1))
    d[np.arange(n), np.arange(n)], d[np.arange(n), np.arange(1, n + 1)] = -1 / dt, 1 / dt
    keep = [k for k in range(n + 1) if (0 < k < n) or (k == 0 and free[0]) or (k == n and free[1])]
    normal = d[:, keep] @ d[:, keep].T
    np.testing.assert_allclose(basis.numpy().T @ np.diag(eig.numpy()) @ basis.numpy(), normal, atol=1e-9)


@pytest.mark.parametrize("tau", [0.0, -1.0, "1", (1.0, 2.0, 3.0), np.array([1.0, 2.0, 3.0]), True, float("nan")])
def test_bad_tau_is_refused(tau):
    grid = Grid([(-4, 4)], 16, 4)
    rho0, rho1 = gaussian_ends(grid.points().ravel())
    with pytest.raises(ValueError, match="tau"):
        SyncOTProblem(grid, rho0, rho1, delta=1.0, tau=tau)


def test_soft_ends_with_a_kantorovich_secondary_match_the_monge_solve():
    # oracle 5 with soft ends: K = identity and delta_Y = delta_X make the Kantorovich secondary the Monge one with
    # J = I (objective (1 + lambda) WFR^2 between the fitted ends); the soft ends enter both solves the same way
    from sc_syncot.solvers import MongeSecondary
    from sc_syncot.solvers.closed_forms import gaussian_density

    g = Grid([(0, 1)], (60,), 4)
    rho0 = gaussian_density(g, [0.35], [[0.05**2]])
    rho1 = gaussian_density(g, [0.6], [[0.05**2]], mass=1.5)
    monge = MongeSecondary(np.ones((60, 1, 1)), 1.0)
    kant = KantorovichSecondary(np.eye(60), g.points().reshape(-1, 1), delta=0.5)
    tau = 0.2
    ref = solve(SyncOTProblem(g, rho0, rho1, delta=0.5, secondaries=[monge], tau=tau))
    res = solve(SyncOTProblem(g, rho0, rho1, delta=0.5, secondaries=[kant], tau=tau))
    assert res.converged and ref.converged
    assert res.cost == pytest.approx(ref.cost, rel=0.02)
    assert res.costs["end_penalty"] == pytest.approx(ref.costs["end_penalty"], rel=0.05)
    for face in (0, -1):
        assert res.rho[face].sum() == pytest.approx(ref.rho[face].sum(), rel=0.02)
    hard = solve(SyncOTProblem(g, rho0, rho1, delta=0.5, secondaries=[monge]))  # the hard ends' value (oracle 5)
    assert res.cost < 0.9 * hard.cost  # the ends gave way where moving cost more than the penalty
    with pytest.raises(ValueError, match="tau: soft endpoints need method='chambolle_pock'"):
        solve(SyncOTProblem(g, rho0, rho1, delta=0.5, secondaries=[kant], tau=tau), method="pd3o")


def test_tl_syncot_soft_ends_on_both_geometries(tmp_path):
    import anndata as ad

    import sc_syncot as scs
    from sc_syncot.cli import _tau_pair

    a = scs.datasets.simulate_multiome(240, 3, seed=1)
    fast = {"tol": 1e-5, "progress": False, "masses": "counts"}
    scs.tl.syncot(a, "time", "X_pca", "X_lsi", coupling="monge", n_nodes=160, n_time=4, tau=2e3, **fast)
    costs = a.uns["syncot"]["costs"]
    assert np.all(np.asarray(costs["start_penalty"]) > 0) and np.all(np.asarray(costs["end_penalty"]) > 0)
    np.testing.assert_array_equal(a.uns["syncot"]["params"]["tau"], [2e3, 2e3])
    a.write_h5ad(tmp_path / "soft.h5ad")  # the stored parameters are h5ad-writable (NaN marks a hard end)
    scs.tl.syncot(a, "time", "X_pca", n_dims=2, n_bins=16, n_time=4, tau=(None, 500.0), key_added="grid", **fast)
    # with the default (Kantorovich) coupling of a secondary
    scs.tl.syncot(a, "time", "X_pca", "X_lsi", n_nodes=160, n_time=4, n_support=30, tau=2e3, key_added="kant", **fast)
    assert np.all(np.asarray(a.uns["kant"]["costs"]["end_penalty"]) > 0)
    assert "start_penalty" not in a.uns["grid"]["costs"] and "end_penalty" in a.uns["grid"]["costs"]
    assert np.isnan(a.uns["grid"]["params"]["tau"][0])
    ad.read_h5ad(tmp_path / "soft.h5ad")
    before = a.copy()
    for kwargs, message in [
        ({"tau": -1.0}, "tau"),
        ({"tau": (1.0, 2.0, 3.0)}, "tau"),
    ]:
        with pytest.raises(ValueError, match=message):
            scs.tl.syncot(a, "time", "X_pca", n_nodes=160, key_added="bad", **fast, **kwargs)
    assert set(a.uns) == set(before.uns) and set(a.obsm) == set(before.obsm)
    with pytest.warns(RuntimeWarning, match="tau=1.0: the soft ends kept only"):  # everything dropped
        scs.tl.syncot(a, "time", "X_pca", n_dims=2, n_bins=16, n_time=4, tau=1.0, key_added="tiny", **fast)
    scs.tl.syncot(a, "time", "X_pca", n_dims=2, n_bins=16, n_time=4, tau="auto", key_added="auto", **fast)
    tau_auto = a.uns["auto"]["params"]["tau"]
    x, t = a.obsm["X_pca"][:, :2], a.obs["time"].to_numpy()
    tp = np.unique(t)
    w2 = [ot.emd2([], [], ot.dist(x[t == a0], x[t == a1])) for a0, a1 in zip(tp[:-1], tp[1:], strict=True)]
    np.testing.assert_allclose(tau_auto, [np.mean(w2)] * 2, rtol=1e-6)
    assert (
        _tau_pair(None) is None
        and _tau_pair(["auto"]) == "auto"
        and _tau_pair([1.0]) == 1.0
        and _tau_pair([None, 2.0]) == (None, 2.0)
    )
