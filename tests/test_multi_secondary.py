"""Several secondary bases in one fit: outputs per basis, both geometries, evaluation, plots, CLI and refusals.

A simulated multiome course with a third view (``X_adt``, a noisy linear readout of the latent state): ``X_lsi``
is coupled by a kernel (Kantorovich), ``X_adt`` by the nodes' coordinates or a smooth map (Monge).
"""

import anndata as ad
import matplotlib
import numpy as np
import pytest

import sc_syncot as scs
from sc_syncot.cli import main
from sc_syncot.tl.flow import read_flow

from .test_bad_input_entry_points import unchanged

matplotlib.use("Agg")

FAST = {"n_nodes": 160, "n_time": 4, "tol": 1e-5, "progress": False, "n_support": 30}
MONGE = {k: v for k, v in FAST.items() if k != "n_support"}  # a Monge fit refuses the kernel's options
GRID = {"n_dims": 2, "n_bins": 12, "n_time": 2, "tol": 1e-5, "progress": False, "n_support": 30}
BASES = ["X_lsi", "X_adt"]
COUPLINGS = ["kantorovich", "monge"]
# What one secondary writes, as before several were possible (a fit on the graph, either coupling)
ONE_SECONDARY_UNS = {
    "convergence", "costs", "coupling", "density", "edge_flow", "graph", "growth", "masses", "params",
    "secondary_action", "time_points", "time_warp", "velocity",
}  # fmt: skip


def _with_adt(a: ad.AnnData, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    a.obsm["X_adt"] = a.obsm["X_pca"][:, :3] @ rng.normal(size=(3, 4)) + 0.1 * rng.normal(size=(a.n_obs, 4))
    return a


@pytest.fixture(scope="module")
def course():
    return _with_adt(scs.datasets.simulate_multiome(240, 3, seed=1))


@pytest.fixture(scope="module")
def on_graph(course):
    a = course.copy()
    scs.tl.syncot(a, "time", "X_pca", BASES, coupling=COUPLINGS, weight=[1.0, 0.5], masses="counts", **FAST)
    return a


def test_graph_fit_writes_each_secondary_under_its_key(on_graph):
    u = on_graph.uns["syncot"]
    n = on_graph.n_obs
    assert on_graph.obsm["syncot_velocity_X_lsi"].shape == (n, 10)
    assert on_graph.obsm["syncot_velocity_X_adt"].shape == (n, 4)
    assert "syncot_velocity_secondary" not in on_graph.obsm and "coupling" not in u
    assert {"X_lsi", "X_adt", "total"} <= set(u["costs"]) and "secondary" not in u["costs"]
    assert u["couplings"]["X_lsi"]["secondary_density"].shape[-1] == u["couplings"]["X_lsi"]["n_support"]
    assert "secondary_density" not in u["couplings"]["X_adt"]
    assert set(u["secondary_actions"]) == set(BASES)
    assert list(u["params"]["secondary"]) == BASES and list(u["params"]["coupling"]) == COUPLINGS
    assert np.allclose(u["params"]["weight"], [1.0, 0.5])
    assert u["graph"]["secondaries"]["X_adt"].shape == (u["graph"]["n_nodes"], 4)
    # each secondary is scaled to the primary's spread on its own
    assert u["couplings"]["X_lsi"]["scale"] != u["couplings"]["X_adt"]["scale"]


def test_h5ad_round_trip_keeps_every_secondary(on_graph, tmp_path):
    on_graph.write_h5ad(tmp_path / "fit.h5ad")
    back = ad.read_h5ad(tmp_path / "fit.h5ad")
    u = back.uns["syncot"]
    assert list(u["params"]["secondary"]) == BASES
    np.testing.assert_allclose(back.obsm["syncot_velocity_X_adt"], on_graph.obsm["syncot_velocity_X_adt"])
    np.testing.assert_allclose(u["costs"]["X_lsi"], on_graph.uns["syncot"]["costs"]["X_lsi"])
    flow = read_flow(back, "syncot")
    assert flow.secondary.shape == (flow.n_nodes, 14)  # both bases' node coordinates, in the order given


def test_grid_fit_with_a_kernel_and_a_map(course):
    a = course.copy()
    scs.tl.syncot(a, "time", "X_pca", BASES, coupling=COUPLINGS, **GRID)
    u = a.uns["syncot"]
    assert a.obsm["syncot_velocity_X_adt"].shape == (a.n_obs, 4)
    assert "syncot_velocity_X_lsi" not in a.obsm  # a kernel on a grid has no per-cell velocity
    assert "secondary_density" in u["couplings"]["X_lsi"] and "r2" in u["couplings"]["X_adt"]
    assert {"X_lsi", "X_adt"} <= set(u["costs"]) and "grid" in u
    assert len(scs.pl.secondary_path(a, secondary="X_lsi", n_panels=2, return_fig=True).axes) >= 2  # support masses
    matplotlib.pyplot.close("all")


def test_a_larger_weight_lowers_its_own_action(course):
    fits = []
    for w in (0.0, 4.0):
        a = course.copy()
        scs.tl.syncot(a, "time", "X_pca", BASES, coupling="monge", weight=[1.0, w], **MONGE)
        u = a.uns["syncot"]
        actions = {k: float(np.sum(v)) for k, v in u["secondary_actions"].items()}
        costs = {k: float(np.sum(v)) for k, v in u["costs"].items()}
        # each weight prices its own space only: the stored cost is the weight times that space's action
        assert costs["X_lsi"] == pytest.approx(actions["X_lsi"], rel=1e-6)
        assert costs["X_adt"] == pytest.approx(w * actions["X_adt"], rel=1e-6, abs=1e-9)
        fits.append((actions, costs["primary_transport"] + costs["primary_growth"] + costs["X_lsi"]))
    (before, rest_before), (after, rest_after) = fits
    assert after["X_adt"] < 0.9 * before["X_adt"]
    # at weight 0 the path minimizes the rest of the objective: pricing X_adt can only make the rest costlier
    assert rest_after >= 0.99 * rest_before


def test_one_secondary_keeps_its_outputs(course):
    a, b = course.copy(), course.copy()
    scs.tl.syncot(a, "time", "X_pca", "X_lsi", **FAST)
    scs.tl.syncot(b, "time", "X_pca", ["X_lsi"], coupling=["kantorovich"], weight=[1.0], **FAST)
    for fit in (a, b):
        u = fit.uns["syncot"]
        assert set(u) == ONE_SECONDARY_UNS
        assert "syncot_velocity_secondary" in fit.obsm and "secondary" in u["costs"]
        assert u["params"]["secondary"] == "X_lsi" and u["params"]["coupling"] == "kantorovich"
        assert isinstance(u["params"]["weight"], float)
    np.testing.assert_allclose(a.obsm["syncot_velocity_secondary"], b.obsm["syncot_velocity_secondary"])


def test_a_refit_with_other_secondaries_replaces_their_outputs(course):
    a = course.copy()
    scs.tl.syncot(a, "time", "X_pca", BASES, coupling="monge", **MONGE)
    scs.tl.syncot(a, "time", "X_pca", "X_adt", coupling="monge", **MONGE)
    assert "syncot_velocity_X_lsi" not in a.obsm and "syncot_velocity_X_adt" not in a.obsm
    assert "syncot_velocity_secondary" in a.obsm


def test_heldout_scores_each_space(course):
    table = scs.tl.evaluate_heldout(
        course, "time", 1.5, "X_pca", BASES, coupling=COUPLINGS, n_repeats=1, n_sample=80, **FAST
    )
    spaces = set(table.loc[table.method == "syncot", "space"])
    assert spaces == {"primary", "X_lsi", "X_adt"}
    assert set(table.loc[table.method == "readout", "space"]) == set(BASES)
    assert np.isfinite(table.w1).all()


def test_plots_pick_one_secondary(on_graph):
    fig = scs.pl.secondary_path(on_graph, secondary="X_adt", return_fig=True)
    assert "X_adt" in fig.axes[0].get_title()
    scs.pl.secondary_path(on_graph, secondary="X_lsi", return_fig=True)  # on the graph every secondary moves
    with pytest.raises(ValueError, match="secondary"):
        scs.pl.secondary_path(on_graph, return_fig=True)
    table = scs.pl.cost_table(on_graph, secondary="X_adt")
    assert table.weight.tolist() == [0.5] and np.isfinite(table.secondary).all()
    with pytest.raises(ValueError, match="secondary"):
        scs.pl.cost_table(on_graph)
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"secondary": BASES, "weight": [1.0, 2.0, 3.0]}, "weight"),
        ({"secondary": BASES, "coupling": ["monge"] * 3}, "coupling"),
        ({"secondary": BASES, "n_support": [10]}, "n_support"),
        ({"secondary": BASES, "coupling": ["monge", "sinkhorn"]}, "coupling"),
        ({"secondary": BASES, "weight": [1.0, -1.0]}, "weight"),
        ({"secondary": ["X_lsi", "X_lsi"]}, "secondary"),
        ({"secondary": ["X_lsi", "X_pca"]}, "secondary"),
        ({"secondary": "X_pca"}, "secondary"),
        ({"secondary": ["X_lsi", "X_protein"]}, "secondary"),
        ({"secondary": ["X_lsi", 3]}, "secondary"),
        ({"secondary": []}, "secondary"),
        ({"secondary": "X_lsi", "weight": [1.0, 2.0]}, "weight"),
    ],
)
def test_bad_secondaries_are_refused_and_the_data_kept(course, kwargs, match):
    a = course.copy()
    with unchanged(a), pytest.raises(ValueError, match=match):
        scs.tl.syncot(a, "time", "X_pca", **(FAST | kwargs))


def test_a_secondary_velocity_name_held_by_other_data_is_refused(course):
    a = course.copy()
    a.obsm["syncot_velocity_X_adt"] = a.obsm["X_adt"].copy()
    with unchanged(a), pytest.raises(ValueError, match="key_added"):
        scs.tl.syncot(a, "time", "X_pca", BASES, **FAST)


def test_mudata_with_three_modalities(course):
    pytest.importorskip("mudata")
    from sc_syncot.datasets._mudata import build_mudata

    obs = course.obs.copy()
    mods = {
        "rna": ad.AnnData(np.zeros((course.n_obs, 1), np.float32), obsm={"X_pca": course.obsm["X_pca"]}),
        "atac": ad.AnnData(np.zeros((course.n_obs, 1), np.float32), obsm={"X_lsi": course.obsm["X_lsi"]}),
        "adt": ad.AnnData(course.obsm["X_adt"].astype(np.float32), obsm={"X_adt": course.obsm["X_adt"]}),
    }
    for m in mods.values():
        m.obs_names = course.obs_names
    md = build_mudata(mods, obs)
    scs.tl.syncot(md, "time", "rna:X_pca", ["atac:X_lsi", "adt:X_adt"], coupling=COUPLINGS, **FAST)
    rna = md.mod["rna"]
    assert rna.obsm["syncot_velocity_adt:X_adt"].shape == (course.n_obs, 4)
    assert set(md.uns["syncot"]["couplings"]) == {"atac:X_lsi", "adt:X_adt"}


def test_cli_takes_several_secondaries(course, tmp_path, capsys):
    src, dst = tmp_path / "cells.h5ad", tmp_path / "out.h5ad"
    course.write_h5ad(src)
    argv = ["run", str(src), "--time-key", "time", "--primary", "X_pca", "--secondary", *BASES]
    argv += ["--coupling", *COUPLINGS, "--weight", "1", "0.5", "--n-nodes", "160", "--n-time", "4"]
    argv += ["--n-support", "30", "--tol", "1e-5", "--no-progress", "-o", str(dst)]
    assert main(argv) == 0
    out = ad.read_h5ad(dst)
    assert "syncot_velocity_X_adt" in out.obsm and "X_lsi" in out.uns["syncot"]["costs"]
    bad = argv[:-2] + ["--weight", "1", "2", "3", "-o", str(tmp_path / "bad.h5ad")]
    assert main(bad) == 2
    assert "weight" in capsys.readouterr().err
