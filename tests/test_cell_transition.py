"""tl.cell_transition and pl.cell_transition: group-to-group tables against POT's exact plan, on both geometries."""

import importlib

import anndata as ad
import matplotlib
import numpy as np
import ot
import pandas as pd
import pytest

import sc_syncot as scs

matplotlib.use("Agg")

SIZES = {"L": 60, "M": 50, "R": 40}  # at t = 0, centred at x = -2, 0, 2
TARGETS = {"up_left": 90, "up_right": 60}  # at t = 1, centred at x = -1.2, 1.8


def _course(dim: int, seed: int = 0) -> ad.AnnData:
    """Three groups that must split over two: mass balance sends M 0.6 / 0.4, L and R one way each."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal((c, 0.0), 0.35, (n, 2)) for c, n in zip((-2, 0, 2), SIZES.values(), strict=True)]
    parts += [rng.normal((c, 2.0), 0.35, (n, 2)) for c, n in zip((-1.2, 1.8), TARGETS.values(), strict=True)]
    x = np.concatenate(parts)
    if dim > 2:
        x = np.hstack([x, rng.normal(0.0, 0.3, (len(x), dim - 2))])
    n0 = sum(SIZES.values())
    labels = [g for g, n in (SIZES | TARGETS).items() for _ in range(n)]
    obs = pd.DataFrame({"time": [0.0] * n0 + [1.0] * (len(x) - n0), "group": pd.Categorical(labels)})
    a = ad.AnnData(obs=obs.set_axis([f"c{i}" for i in range(len(x))]))
    a.obsm["X_state"] = x
    return a


def _emd_table(a: ad.AnnData, basis: str, column: str, source: float, target: float, index, columns) -> pd.DataFrame:
    """Counts of POT's exact plan (uniform masses) between two time points, summed over the groups."""
    x, t, g = a.obsm[basis], a.obs["time" if "time" in a.obs else "day"].to_numpy(), a.obs[column].to_numpy()
    s, e = t == source, t == target
    plan = ot.emd(ot.unif(s.sum()), ot.unif(e.sum()), ot.dist(x[s], x[e]), numItermax=1_000_000)
    counts = [[plan[g[s] == i][:, g[e] == j].sum() for j in columns] for i in index]
    return pd.DataFrame(counts, index=index, columns=columns)


@pytest.fixture(scope="module", params=[(2, "grid"), (5, "graph")])
def fitted(request):
    dim, geometry = request.param
    a = _course(dim)
    # balanced (delta=None): Benamou-Brenier's dynamic transport is the exact plan's, the oracle below
    scs.tl.syncot(a, "time", "X_state", delta=None, progress=False)
    assert a.uns["syncot"]["params"]["geometry"] == geometry
    return a


def test_both_orientations_match_the_exact_plan(fitted):
    a = fitted
    forward = scs.tl.cell_transition(a, 0, 1, "group", forward=True)
    backward = scs.tl.cell_transition(a, 0.0, 1.0, "group")
    assert list(forward.index) == list(SIZES) and list(forward.columns) == list(TARGETS)
    emd = _emd_table(a, "X_state", "group", 0.0, 1.0, forward.index, forward.columns)
    # The graph's node masses are the cells themselves: measured 6e-5 off. The grid fits kernel densities, here with
    # Scott's bandwidth 0.70 along x, twice the clusters' spread, so M's mass overlaps L's and R's and some of its
    # descent is counted as theirs: measured 0.015 (forward) and 0.078 (backward) off.
    atol = 1e-3 if a.uns["syncot"]["params"]["geometry"] == "graph" else 0.1
    np.testing.assert_allclose(forward, emd.div(emd.sum(1), axis=0), atol=atol)
    np.testing.assert_allclose(backward, emd.div(emd.sum(0), axis=1), atol=atol)
    np.testing.assert_allclose(forward.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(backward.sum(0), 1.0, rtol=1e-12)


def test_counts_give_every_target_cell_one_ancestry(fitted):
    counts = scs.tl.cell_transition(fitted, 0, 1, "group", normalize=False)
    # the groups' shares of a target cell add up to 1 wherever the flow has mass, and every target cell has some
    np.testing.assert_allclose(counts.sum(0), list(TARGETS.values()), rtol=0.02)
    stored = fitted.uns["syncot_cell_transition"]
    assert stored["params"]["normalize"] is False
    np.testing.assert_array_equal(stored["values"], counts.to_numpy())


def test_a_dict_restricts_the_groups_and_keeps_their_order(fitted):
    table = scs.tl.cell_transition(fitted, 0, 1, {"group": ["R", "M"]}, {"group": ["up_right"]}, key_added="two")
    assert list(table.index) == ["R", "M"] and list(table.columns) == ["up_right"]
    np.testing.assert_allclose(table.sum(0), 1.0)  # normalized over the groups shown
    assert "two" in fitted.uns


def test_the_table_and_its_plot_survive_h5ad(fitted, tmp_path):
    a = fitted.copy()
    scs.tl.cell_transition(a, 0, 1, "group", forward=True)
    a.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_allclose(b.uns["syncot_cell_transition"]["values"], a.uns["syncot_cell_transition"]["values"])
    fig = scs.pl.cell_transition(b, return_fig=True)
    assert fig.axes[0].get_title() == "fraction of descendants (rows)"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(SIZES)
    assert fig.axes[0].get_xlabel() == "group at 1"  # the column's name, from the stored parameters
    fig = scs.pl.cell_transition(scs.tl.cell_transition(a, 0, 1, "group", forward=True), return_fig=True)
    assert len(fig.axes[0].texts) == len(SIZES) * len(TARGETS)
    assert fig.axes[0].get_title() == "fraction of descendants (rows)"  # read off the table: its rows sum to 1
    assert fig.axes[0].get_ylabel() == "group (source)"
    with pytest.raises(ValueError, match="run sc_syncot.tl.cell_transition"):
        scs.pl.cell_transition(a, key="other")


def test_any_labels_survive_h5ad_and_numbers_sort_by_value(fitted, tmp_path):
    a = fitted.copy()
    codes = {"L": 10, "M": 2, "R": 3, "up_left": 1, "up_right": 20}
    a.obs["code"] = a.obs["group"].map(codes).astype(int)  # integer labels, one equal to nothing, one to a count
    a.obs["n"] = a.obs["code"].astype(str)  # a target label column named like nothing in particular
    table = scs.tl.cell_transition(a, 0, 1, "code", "n", forward=True)
    assert list(table.index) == [2, 3, 10] and list(table.columns) == ["1", "20"]
    a.write_h5ad(tmp_path / "a.h5ad")
    b = ad.read_h5ad(tmp_path / "a.h5ad")
    fig = scs.pl.cell_transition(b, return_fig=True)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["2", "3", "10"]


def test_mudata_tables_go_where_they_are_checked():
    md = pytest.importorskip("mudata")
    m = md.MuData({"rna": _course(5)})
    scs.tl.syncot(m, "time", "rna:X_state", delta=None, n_nodes=200, progress=False)
    m.uns["other"] = {"mine": 1}
    with pytest.raises(ValueError, match="holds other data"):
        scs.tl.cell_transition(m, 0, 1, "group", key_added="other")
    assert dict(m.uns["other"]) == {"mine": 1}
    table = scs.tl.cell_transition(m, 0, 1, "group", forward=True)
    np.testing.assert_allclose(m.uns["syncot_cell_transition"]["values"], table.to_numpy())


def test_bad_input_is_named_and_changes_nothing(fitted):
    a = fitted.copy()
    a.uns["pca"] = {"variance": np.ones(3)}
    before = set(a.uns)
    cases = [
        ({"source": 1, "target": 0}, "source before target"),
        ({"source": 0.5}, "source"),
        ({"target": 2}, "target"),
        ({"source_groups": "colour"}, "colour"),
        ({"source_groups": {"group": ["up_left"]}}, "no cells at time 0"),
        ({"target_groups": {"group": "L"}}, "no cells at time 1"),
        ({"source_groups": ["group"]}, "source_groups"),
        ({"key_added": "syncot"}, "syncot"),
        ({"key_added": "a/b"}, "key_added"),
        ({"key": "other"}, "no sc_syncot result"),
        ({"key_added": "pca"}, "holds other data"),  # another tool's entry
        ({"source_groups": {"group": ["l"]}}, "not labels of"),  # a typo, told from a label absent at the time
        ({"source": "day0"}, "source: expected a number"),  # the fit read numbers, not labels
    ]
    for kwargs, match in cases:
        args = {"source": 0, "target": 1, "source_groups": "group"} | kwargs
        with pytest.raises(ValueError, match=match):
            scs.tl.cell_transition(a, **args)
    assert set(a.uns) == before and set(a.uns["pca"]) == {"variance"}


def test_times_are_read_as_the_fit_read_its_text_column():
    a = _course(5)
    a.obs["day"] = np.where(a.obs["time"] == 0, "day0", "day1")
    scs.tl.syncot(a, "day", "X_state", delta=None, n_nodes=200, progress=False)
    by_label = scs.tl.cell_transition(a, "day0", "day1", "group", forward=True)
    np.testing.assert_allclose(by_label, scs.tl.cell_transition(a, 0, 1, "group", forward=True))
    scs.tl.push(a, "group", "M", time="day0")
    assert a.obs["syncot_push_M"].notna().all()
    with pytest.raises(ValueError, match=r"'day0' -> 0, 'day1' -> 1"):
        scs.tl.cell_transition(a, "day 0", "day1", "group")


def test_the_transport_matrix_is_a_near_optimal_coupling_on_the_graph(fitted, monkeypatch):
    a = fitted
    if a.uns["syncot"]["params"]["geometry"] == "grid":
        with pytest.raises(ValueError, match="geometry='graph'"):
            scs.tl.transport_matrix(a, 0, 1)
        return
    plan = scs.tl.transport_matrix(a, 0, 1)
    t = a.obs["time"].to_numpy()
    assert list(plan.index) == list(a.obs_names[t == 0]) and list(plan.columns) == list(a.obs_names[t == 1])
    np.testing.assert_allclose(plan.sum(0), 1.0, atol=1e-9)  # every target cell's ancestry, whole
    np.testing.assert_allclose(plan.sum(1), 1.0, atol=0.01)  # balanced, equal sizes: one cell each (measured 1e-3)
    # a coupling of the same marginals costs at least the exact plan's; the flow's mixing at nodes costs more
    x = a.obsm["X_state"]
    cost = ot.dist(x[t == 0], x[t == 1])
    exact = ot.emd2(ot.unif(len(cost)), ot.unif(cost.shape[1]), cost)
    ratio = float(np.sum(plan.to_numpy() * cost) / plan.to_numpy().sum()) / exact
    assert 1 - 1e-6 <= ratio <= 1.25  # measured 1.12
    counts = scs.tl.cell_transition(a, 0, 1, "group", normalize=False, key_added="counts")
    g = a.obs["group"].to_numpy()
    summed = [[plan.to_numpy()[g[t == 0] == i][:, g[t == 1] == j].sum() for j in counts.columns] for i in counts.index]
    np.testing.assert_allclose(summed, counts, atol=1e-10)
    monkeypatch.setattr(importlib.import_module("sc_syncot.tl._fates"), "MAX_TRANSPORT_ENTRIES", 100)
    with pytest.raises(ValueError, match="150 x 150"):
        scs.tl.transport_matrix(a, 0, 1)


def test_reprogramming_transitions_match_the_exact_plan():
    """Schiebinger's reprogramming subset (moscot's test data), 30 PCs, day 10 -> 10.5, as a moscot user runs it."""
    sc = pytest.importorskip("scanpy")
    try:
        a = scs.datasets.moscot_temporal()  # where the loaders look: $SC_SYNCOT_DATA, else ../shared/data
    except scs.datasets.DataNotFoundError as err:
        pytest.skip(str(err))
    sc.pp.pca(a, n_comps=30, random_state=0)
    scs.tl.syncot(a, "day", "X_pca", progress=False)  # with growth, as users fit: near the balanced plan here
    table = scs.tl.cell_transition(a, 10, 10.5, "cell_type", forward=True)
    emd = _emd_table(a, "X_pca", "cell_type", 10.0, 10.5, table.index, table.columns)
    diff = np.abs(table - emd.div(emd.sum(1), axis=0)).to_numpy()
    assert diff.mean() < 0.03 and diff.max() < 0.1  # measured 0.0094 and 0.043
    # no Stromal cell of day 10 has descendants among day 10.5's IPS and Trophoblast cells: only the mixing's
    # rounding (1e-29 and 1e-18 cells), which must read as no descent, not as 100% Trophoblast
    with pytest.warns(UserWarning, match="none of the groups shown"):
        none = scs.tl.cell_transition(
            a, 10, 10.5, {"cell_type": ["Stromal"]}, {"cell_type": ["IPS", "Trophoblast"]}, forward=True
        )
    assert none.isna().all().all()
    plan = scs.tl.transport_matrix(a, 10, 10.5).to_numpy()
    x, day = a.obsm["X_pca"], a.obs["day"].to_numpy()
    cost = ot.dist(x[day == 10], x[day == 10.5])
    exact = ot.emd2(ot.unif(len(cost)), ot.unif(cost.shape[1]), cost)
    assert np.sum(plan * cost) / plan.sum() <= 1.1 * exact  # measured 1.027
