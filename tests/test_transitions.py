"""tl.transition_matrix: CellRank's layout of forward transitions, checked against POT's exact plan."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sc_syncot as scs

from .test_cell_transition import SIZES, TARGETS, _course, _emd_table


def _three_times(seed: int = 0) -> ad.AnnData:
    """The two-time-point course of test_cell_transition, and a third time point where both targets move up."""
    a = _course(5, seed)
    later = a[a.obs["time"] == 1.0].copy()
    later.obs_names = [f"d{i}" for i in range(later.n_obs)]
    later.obs["time"] = 2.0
    later.obsm["X_state"] = later.obsm["X_state"] + np.array([0.0, 2.0, 0.0, 0.0, 0.0])
    return ad.concat([a, later])


@pytest.fixture(scope="module")
def fitted():
    a = _three_times()
    # balanced (delta=None): the dynamic plan is the exact plan, the oracle below
    scs.tl.syncot(a, "time", "X_state", delta=None, progress=False)
    assert a.uns["syncot"]["params"]["geometry"] == "graph"
    return a


def _block(a: ad.AnnData, matrix, source: float, target: float) -> np.ndarray:
    t = a.obs["time"].to_numpy()
    return matrix[np.flatnonzero(t == source)][:, np.flatnonzero(t == target)].toarray()


def test_rows_are_forward_probabilities_of_the_exact_plan(fitted):
    a = fitted.copy()
    scs.tl.transition_matrix(a)  # threshold=None: every entry
    p = a.obsp["syncot_transitions"]
    assert sp.issparse(p) and p.format == "csr" and p.shape == (a.n_obs, a.n_obs) and p.min() >= 0
    np.testing.assert_allclose(np.asarray(p.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    # only consecutive time points, and the last one's own block
    for source, target in [(0, 0), (1, 1), (0, 2), (1, 0), (2, 0), (2, 1)]:
        assert not _block(a, p, source, target).any(), (source, target)
    assert _block(a, p, 2, 2).any()
    # each row is where the cell's descendants are: the transport matrix's row, normalized
    plan = scs.tl.transport_matrix(a, 0, 1).to_numpy()
    np.testing.assert_allclose(_block(a, p, 0, 1), plan / plan.sum(1, keepdims=True), atol=1e-12)
    # and, averaged over a group, POT's exact plan's forward table (balanced: every cell becomes one cell)
    t, g = a.obs["time"].to_numpy(), a.obs["group"].to_numpy()
    emd = _emd_table(a, "X_state", "group", 0.0, 1.0, list(SIZES), list(TARGETS))
    forward = emd.div(emd.sum(1), axis=0)
    ours = [[_block(a, p, 0, 1)[g[t == 0] == i][:, g[t == 1] == j].sum(1).mean() for j in TARGETS] for i in SIZES]
    np.testing.assert_allclose(ours, forward, atol=2e-3)


def _plans(a: ad.AnnData) -> list[np.ndarray]:
    return [scs.tl.transport_matrix(a, source, source + 1).to_numpy() for source in (0, 1)]


def _thinned(plan: np.ndarray, cut: float) -> np.ndarray:
    kept = np.where(plan >= cut, plan, 0.0)
    return kept / kept.sum(1, keepdims=True)


def test_auto_threshold_is_cellranks_rule(fitted):
    a = fitted.copy()
    scs.tl.transition_matrix(a, threshold="auto")
    p = a.obsp["syncot_transitions"]
    np.testing.assert_allclose(np.asarray(p.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    # CellRank's "auto" (RealTimeKernel), by hand on the dense couplings: the smallest row maximum is the cut
    plans = _plans(a)
    cut = min(plan.max(axis=1).min() for plan in plans)
    for source, plan in zip((0, 1), plans, strict=True):
        np.testing.assert_allclose(_block(a, p, source, source + 1), _thinned(plan, cut), atol=1e-12)
        assert (_block(a, p, source, source + 1) > 0).sum() < 0.5 * plan.size  # it does thin the rows


def test_a_percentage_is_cellranks_percentile(fitted):
    p = scs.tl.transition_matrix(fitted, threshold=40, copy=True).obsp["syncot_transitions"]
    np.testing.assert_allclose(np.asarray(p.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    for source, plan in zip((0, 1), _plans(fitted), strict=True):
        # CellRank: np.percentile over the coupling's entries, those below it dropped
        np.testing.assert_allclose(_block(fitted, p, source, source + 1), _thinned(plan, np.percentile(plan, 40)),
                                   atol=1e-12)  # fmt: skip


def test_self_transitions_of_the_last_time_point(fitted):
    diag = scs.tl.transition_matrix(fitted, self_transitions="diagonal", copy=True).obsp["syncot_transitions"]
    np.testing.assert_array_equal(_block(fitted, diag, 2, 2), np.eye(int((fitted.obs["time"] == 2).sum())))
    conn = scs.tl.transition_matrix(fitted, n_neighbors=5, copy=True).obsp["syncot_transitions"]
    last = _block(fitted, conn, 2, 2)
    np.testing.assert_allclose(last.sum(1), 1.0, atol=1e-12)
    assert ((last > 0) == (last.T > 0)).all()  # a symmetric kNN graph
    # neighbours are near: within the cell's own cluster of the last time point
    g = fitted.obs["group"].to_numpy()[fitted.obs["time"].to_numpy() == 2]
    assert all((g[row > 0] == g[i]).all() for i, row in enumerate(last))


def test_the_last_block_of_a_large_time_point():
    """Above ~8,100 cells scanpy's approximate kNN failed with SciPy 1.17 ('csr_array' has no 'getnnz')."""
    from sc_syncot.tl._transitions import _last_block

    x = np.random.default_rng(0).normal(size=(8500, 3))
    block = _last_block(x, "connectivities", 15)
    assert block.shape == (8500, 8500)
    np.testing.assert_allclose(np.asarray(block.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert ((block > 0) != (block.T > 0)).nnz == 0  # a symmetric kNN graph
    # exact neighbours: each cell's nearest other cell is among its transitions
    d = ((x[:200, None] - x[None]) ** 2).sum(-1)
    d[np.arange(200), np.arange(200)] = np.inf
    assert all(block[i, j] > 0 for i, j in enumerate(d.argmin(1)))


def test_cellrank_reads_it():
    cr = pytest.importorskip("cellrank")
    course = _three_times()
    a = ad.AnnData(np.zeros((course.n_obs, 1)), obs=course.obs, obsm=course.obsm)  # CellRank's estimators need X
    scs.tl.syncot(a, "time", "X_state", delta=None, progress=False)
    scs.tl.transition_matrix(a)
    kernel = cr.kernels.PrecomputedKernel(a, obsp_key="syncot_transitions")
    g = cr.estimators.GPCCA(kernel)
    terminal = a.obs["group"].astype(str).where(a.obs["time"] == 2)
    g.set_terminal_states(terminal.astype("category"))
    g.compute_fate_probabilities()
    fates = pd.DataFrame(np.asarray(g.fate_probabilities), columns=g.fate_probabilities.names, index=a.obs_names)
    first = a.obs["time"] == 0
    mean = fates[first].groupby(a.obs["group"][first], observed=True).mean()
    # as the exact plan sends them: L and R one way each, M 0.6 / 0.4
    assert mean.loc["L", "up_left"] > 0.95 and mean.loc["R", "up_right"] > 0.95
    assert abs(mean.loc["M", "up_left"] - 0.6) < 0.02
    # and CellRank's own RealTimeKernel, given the same couplings, builds the same matrix with its thresholds
    a.obs["day"] = a.obs["time"].astype("category")
    couplings = {}
    for source, target in [(0.0, 1.0), (1.0, 2.0)]:
        plan = scs.tl.transport_matrix(a, source, target)
        couplings[(source, target)] = ad.AnnData(plan.to_numpy(), obs=pd.DataFrame(index=plan.index),
                                                 var=pd.DataFrame(index=plan.columns))  # fmt: skip
    real_time = cr.kernels.RealTimeKernel(a, time_key="day", couplings={k: c.copy() for k, c in couplings.items()})
    real_time.compute_transition_matrix(threshold=None, conn_kwargs={"use_rep": "X_state", "n_neighbors": 15})
    scs.tl.transition_matrix(a, key_added="ours")  # the last time point's connectivities, CellRank's default
    assert abs(sp.csr_matrix(real_time.transition_matrix) - a.obsp["ours"]).max() < 1e-6  # scanpy's float32
    for threshold in ("auto", "auto_local", 30, None):
        real_time = cr.kernels.RealTimeKernel(a, time_key="day", couplings={k: c.copy() for k, c in couplings.items()})
        real_time.compute_transition_matrix(threshold=threshold, self_transitions="diagonal")
        scs.tl.transition_matrix(a, threshold=threshold, self_transitions="diagonal", key_added="ours")
        assert abs(sp.csr_matrix(real_time.transition_matrix) - a.obsp["ours"]).max() < 1e-12, threshold


def test_h5ad_and_copy(fitted, tmp_path):
    a = fitted.copy()
    out = scs.tl.transition_matrix(a, copy=True)
    assert "syncot_transitions" not in a.obsp and "syncot_transitions" in out.obsp
    out.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad").obsp["syncot_transitions"]
    assert (back != out.obsp["syncot_transitions"]).nnz == 0


def test_bad_input_is_named_and_changes_nothing(fitted):
    a = fitted.copy()
    a.obsp["connectivities"] = sp.identity(a.n_obs, format="csr")
    before = a.copy()
    cases = [
        ({"threshold": 120}, "threshold"),
        ({"threshold": "percentile"}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"self_transitions": "uniform"}, "self_transitions"),
        ({"n_neighbors": 1}, "n_neighbors"),
        ({"key_added": "connectivities"}, "connectivities"),
        ({"key_added": "a/b"}, "key_added"),
        ({"key": "missing"}, "missing"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            scs.tl.transition_matrix(a, **kwargs)
    assert set(a.obsp) == set(before.obsp) and set(a.uns) == set(before.uns)
    moved = a.copy()
    moved.obs["time"] = moved.obs["time"] * 24  # hours now: the cells no longer match the fit's time points
    with pytest.raises(ValueError, match="key='syncot': the cells no longer match the fit"):
        scs.tl.transition_matrix(moved)
    with pytest.raises(ValueError, match="key='syncot': the cells no longer match the fit"):
        scs.tl.transition_matrix(a[a.obs["time"] > 0].copy())  # a fitted time point without cells
    assert "syncot_transitions" not in moved.obsp
    grid = _course(2)
    scs.tl.syncot(grid, "time", "X_state", delta=None, progress=False)
    with pytest.raises(ValueError, match="geometry='graph'"):
        scs.tl.transition_matrix(grid)


def test_cells_that_reach_nothing_get_a_uniform_row_and_a_warning():
    from sc_syncot.tl._transitions import _block as block

    coupling = {  # two source nodes of one cell each; the second reaches no target node
        "pi": np.array([[0.5, 0.25], [0.0, 0.0]]),
        "which": np.array([0, 1]),
        "column": np.array([0, 1, 1]),
        "n_source": np.array([1, 1]),
        "n_target": np.array([1, 2]),
    }
    with pytest.warns(UserWarning, match="1 cells at time 0.5 have no descendant"):
        out = block(coupling, 0.0, 0.5).toarray()
    np.testing.assert_allclose(out, [[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
