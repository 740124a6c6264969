"""pp.cell_graph: state nodes per time point, static-OT path nodes between them, masses and cells."""

import numpy as np
import pytest

from sc_syncot import pp
from sc_syncot.solvers import SyncOTProblem, solve


def _course(seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(300, 5)), rng.normal(size=(400, 5)) + [3, 0, 0, 0, 0]])
    t = np.r_[np.zeros(300), np.ones(400)]
    return x, t, np.column_stack([x[:, 0] ** 2, np.sin(x[:, 1])])


def test_masses_count_each_time_points_cells_on_its_own_state_nodes():
    x, t, y = _course()
    cg = pp.cell_graph(x, t, y, n_nodes=400)
    np.testing.assert_array_equal(cg.masses.sum(1), [300, 400])
    for k in range(2):
        own = cg.state_nodes(k)
        assert cg.masses[k, own].sum() == cg.masses[k].sum()  # no mass off its own state nodes
        np.testing.assert_array_equal(np.isin(cg.cell_nodes[t == k], own), True)
    path = (cg.node_time > 0) & (cg.node_time < 1)
    assert path.sum() > 0 and np.all(cg.masses[:, path] == 0)
    assert cg.n_nodes <= 400 and cg.secondary.shape == (cg.n_nodes, 2)
    # a state node sits at its cells' mean, in both bases
    node = cg.cell_nodes[0]
    members = cg.cell_nodes == node
    np.testing.assert_allclose(cg.graph.points[node], x[members].mean(0))
    np.testing.assert_allclose(cg.secondary[node], y[members].mean(0))


def test_path_nodes_are_mccann_interpolants_of_the_static_ot_pairs():
    x = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.1], [2.0, 1.1]])
    y = np.array([[0.0], [10.0], [4.0], [14.0]])
    cg = pp.cell_graph(x, np.array([0, 0, 1, 1]), y, n_nodes=16, fractions=(0.25, 0.5))
    np.testing.assert_allclose(cg.graph.points[:4], x)  # few cells: the cells are the state nodes
    mid = cg.node_time == 0.5
    # the exact plan pairs each cell with the one across (the crossing pairs cost more)
    np.testing.assert_allclose(np.sort(cg.graph.points[mid], axis=0), [[1.0, 0.05], [1.0, 1.05]])
    np.testing.assert_allclose(np.sort(cg.secondary[mid], axis=0), [[2.0], [12.0]])
    quarter = np.sort(cg.graph.points[cg.node_time == 0.25], axis=0)
    np.testing.assert_allclose(quarter, [[0.5, 0.025], [0.5, 1.025]])


def test_path_ends_are_the_state_nodes_each_path_node_interpolates():
    x, t, y = _course(1)
    cg = pp.cell_graph(x, t, y, n_nodes=300)
    path = cg.path_ends[:, 0] >= 0
    np.testing.assert_array_equal(path, (cg.node_time > 0) & (cg.node_time < 1))
    tail, head = cg.path_ends[path].T
    np.testing.assert_array_equal(cg.node_time[tail], 0)  # from a state node of time point 0 ...
    np.testing.assert_array_equal(cg.node_time[head], 1)  # ... to one of time point 1
    f = cg.node_time[path][:, None]
    np.testing.assert_allclose(cg.graph.points[path], (1 - f) * cg.graph.points[tail] + f * cg.graph.points[head])
    np.testing.assert_allclose(cg.secondary[path], (1 - f) * cg.secondary[tail] + f * cg.secondary[head])


def test_cells_that_share_a_primary_state_but_not_the_secondary_get_different_nodes():
    # two populations along the same primary segment, apart in the secondary (the primary's spread is the segment's,
    # so at the default weight 0.5 the secondary gap is as large as the segment in the joint space)
    rng = np.random.default_rng(1)
    x = np.c_[rng.random(200), rng.normal(scale=0.01, size=(200, 2))]
    y = np.r_[np.full(100, -5.0), np.full(100, 5.0)][:, None] + rng.normal(scale=0.1, size=(200, 1))
    t = np.tile([0.0, 1.0], 100)
    cg = pp.cell_graph(x, t, y, n_nodes=16, fractions=())  # 4 state nodes per time point
    for k in range(2):
        cells = t == k
        # no node mixes the two secondary states
        for node in np.unique(cg.cell_nodes[cells]):
            assert np.ptp(y[cells & (cg.cell_nodes == node), 0]) < 2.0


def test_secondary_weight_zero_builds_state_nodes_from_the_primary_alone():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2))
    y = rng.normal(size=(300, 4))
    t = np.tile([0.0, 1.0, 2.0], 100)
    cg = pp.cell_graph(x, t, y, n_nodes=30, fractions=(), secondary_weight=0.0)
    # k-means on the primary alone: every cell's node is its nearest centre of its time point in the primary
    for k in range(3):
        nodes = cg.state_nodes(k)
        cells = t == k
        nearest = nodes[np.argmin(((x[cells, None] - cg.graph.points[nodes]) ** 2).sum(-1), axis=1)]
        assert np.mean(nearest == cg.cell_nodes[cells]) > 0.98
        # and the nodes still carry their cells' mean secondary state
        node = nodes[0]
        np.testing.assert_allclose(cg.secondary[node], y[cells & (cg.cell_nodes == node)].mean(0))
    with pytest.raises(ValueError, match="secondary_weight"):
        pp.cell_graph(x, t, y, n_nodes=30, secondary_weight=-1.0)


def test_repeated_cells_give_finite_nodes_that_all_hold_cells():
    """More k-means clusters than distinct cells (each state repeated 8 times) left clusters empty: NaN nodes."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.repeat(rng.normal(size=(50, 5)), 8, axis=0) for _ in range(2)])
    time = np.repeat([0.0, 1.0], 400)
    g = pp.cell_graph(x, time, n_nodes=400, fractions=())  # 200 clusters per time point, 50 distinct states
    assert np.isfinite(g.graph.points).all()
    assert len(g.graph.points) <= 100  # at most one node per distinct state
    assert (g.masses.sum(0) > 0).all()
    np.testing.assert_array_equal(g.masses.sum(1), [400, 400])


def test_a_solve_on_a_cell_graph_keeps_the_mass_and_converges():
    x, t, y = _course()
    cg = pp.cell_graph(x, t, y, n_nodes=300)
    m0, m1 = cg.masses
    res = solve(SyncOTProblem(cg.graph, m0, m1, delta=2.0))
    assert res.converged
    np.testing.assert_allclose(res.mass()[[0, -1]], [300, 400])
    assert res.balance_residual() < 1e-9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time": np.zeros(700)}, "at least two distinct time points"),
        ({"x": np.full((700, 5), np.nan)}, "finite"),
        ({"x": np.zeros((699, 5))}, "one time per cell"),
        ({"y": np.zeros((10, 2))}, "y: expected"),
        ({"fractions": (0.5, 1.0)}, "fractions"),
        ({"n_nodes": 10}, "n_nodes"),
        ({"n_nodes": 400.0}, "n_nodes"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(kwargs, match):
    x, t, y = _course()
    args = {"x": x, "time": t, "y": y} | kwargs
    with pytest.raises(ValueError, match=match):
        pp.cell_graph(**args)
