import os
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from sc_syncot.datasets import (
    DataNotFoundError,
    moscot_temporal,
    scgem,
    sciCAR_A549,
    scnmt,
    simulate_multiome,
    tigon_bifurcation,
    tigon_emt,
)
from sc_syncot.datasets._dynamics import BRANCHES, Bifurcation
from sc_syncot.pp import lsi
from sc_syncot.pp.embedding import tfidf as _tfidf

NO_GROWTH = {"progenitor": 0.5, "A": 0.5, "B": 0.5}  # as proliferation and death: every cell's net growth is 0


SMALL = {"n_cells": 200, "n_timepoints": 3, "seed": 3}


@pytest.fixture(scope="module")
def sim():
    return simulate_multiome(n_cells=1200, n_timepoints=4, seed=0)


@pytest.fixture(scope="module")
def small():
    return simulate_multiome(**SMALL)


def _dynamics_from_record(adata):
    """Rebuild the true dynamics from uns alone: the record must be complete."""
    params = dict(adata.uns["simulation"]["params"]["dynamics"])
    for key in ("proliferation", "death"):
        params[key] = tuple(params[key][b] for b in BRANCHES)
    params["start_sd"] = tuple(params["start_sd"])
    return Bifurcation(**params)


def _per_time_means(adata, values):
    codes = adata.obs["time_point"].cat.codes.to_numpy()
    return np.array([values[codes == k].mean(axis=0) for k in range(codes.max() + 1)])


# --- simulator: layout -------------------------------------------------------------------------------------------


def test_shapes_and_types(sim):
    n = 1200
    assert sim.shape == (n, 200)
    assert sparse.issparse(sim.X) and sim.X.format == "csr" and sim.X.dtype == np.float32
    atac = sim.obsm["atac_counts"]
    assert sparse.issparse(atac) and atac.format == "csr" and atac.dtype == np.float32 and atac.shape == (n, 500)
    assert len(sim.uns["atac_counts_var_names"]) == 500
    for key, dim in [("X_latent", 2), ("velocity_latent", 2), ("X_pca", 10), ("velocity_pca", 10), ("X_lsi", 10)]:
        assert sim.obsm[key].shape == (n, dim) and np.isfinite(sim.obsm[key]).all(), key
    assert sim.obs["time"].dtype == np.float64
    assert list(sim.obs["branch"].cat.categories) == ["progenitor", "A", "B"]
    assert set(sim.var["program"]) == {"latent", "proliferation", "apoptosis"}
    for values in (sim.X.data, atac.data):
        assert np.array_equal(values, np.round(values)) and values.min() > 0  # counts


def test_time_points_present_and_counts_follow_true_mass(sim):
    record = sim.uns["simulation"]
    times = record["time_points"]
    np.testing.assert_allclose(times, np.linspace(0, 3, 4))
    labels = sim.obs["time_point"]
    assert labels.cat.ordered and list(labels.cat.categories) == ["t0", "t1", "t2", "t3"]
    counts = labels.value_counts(sort=False).to_numpy()
    np.testing.assert_array_equal(counts, record["n_cells_per_time"])
    np.testing.assert_array_equal(sim.obs["time"].to_numpy(), times[labels.cat.codes.to_numpy()])
    mass = record["mass"]
    assert mass[0] == 1.0 and np.all(np.diff(mass) > 0)  # net growth is positive with the default rates
    np.testing.assert_allclose(counts / counts.sum(), mass / mass.sum(), atol=1 / counts.sum())
    branch_total = sum(record["mass_per_branch"].values())
    np.testing.assert_allclose(branch_total, mass)


def test_deterministic_given_seed(small):
    a, b, c = small, simulate_multiome(**SMALL), simulate_multiome(**(SMALL | {"seed": 4}))
    for key in ("X_latent", "X_pca", "X_lsi", "velocity_pca"):
        np.testing.assert_array_equal(a.obsm[key], b.obsm[key])
    assert (a.X != b.X).nnz == 0 and (a.obsm["atac_counts"] != b.obsm["atac_counts"]).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert not np.array_equal(a.obsm["X_latent"], c.obsm["X_latent"])


# --- simulator: ground truth -------------------------------------------------------------------------------------


def test_branch_labels_match_latent_position(sim):
    z, branch = sim.obsm["X_latent"], sim.obs["branch"].to_numpy()
    assert np.all(z[branch == "A", 1] > 0.25) and np.all(z[branch == "B", 1] < -0.25)
    assert np.all(z[branch != "progenitor", 0] > 0)
    assert (branch[sim.obs["time_point"] == "t0"] == "progenitor").all()
    late = sim.obs["time_point"] == "t3"
    assert (branch[late] == "A").sum() > 0 and (branch[late] == "B").sum() > 0


def test_growth_rate_is_net_rate_of_the_branch(sim):
    obs = sim.obs
    np.testing.assert_allclose(obs["growth_rate"], obs["proliferation_rate"] - obs["death_rate"])
    late = obs[obs["time_point"] == "t3"]
    medians = late.groupby("branch", observed=True)["growth_rate"].median()
    assert medians["A"] == pytest.approx(0.9, abs=0.02) and medians["B"] == pytest.approx(-0.5, abs=0.02)


@pytest.mark.parametrize("swap", [False, True])
def test_branch_cell_counts_move_with_branch_growth(swap):
    rates = {"proliferation": {"A": 0.3, "B": 1.0}, "death": {"A": 0.8, "B": 0.1}} if swap else {}
    adata = simulate_multiome(n_cells=800, n_timepoints=4, seed=1, **rates)
    growing, dying = ("B", "A") if swap else ("A", "B")
    table = pd.crosstab(adata.obs["time_point"], adata.obs["branch"])
    mass = adata.uns["simulation"]["mass_per_branch"]
    # In the last interval almost no progenitor is left to feed the branches: each follows its own growth rate.
    assert table.loc["t3", growing] > table.loc["t2", growing] and mass[growing][3] > mass[growing][2]
    assert table.loc["t3", dying] < table.loc["t2", dying] and mass[dying][3] < mass[dying][2]
    ratio = table[growing] / table[dying]
    assert ratio["t3"] > ratio["t2"]


def test_true_mass_grows_at_the_mean_growth_rate_of_observed_cells():
    # d log M / dt = mean growth rate over the population, which the observed cells sample.
    adata = simulate_multiome(n_cells=1000, n_timepoints=7, seed=0)
    record = adata.uns["simulation"]
    g = _per_time_means(adata, adata.obs["growth_rate"].to_numpy())
    predicted = np.diff(record["time_points"]) * (g[1:] + g[:-1]) / 2
    np.testing.assert_allclose(np.diff(np.log(record["mass"])), predicted, atol=0.1)
    assert np.log(record["mass"][-1]) == pytest.approx(predicted.sum(), abs=0.15)


def test_velocity_is_the_derivative_of_the_drift_flow(sim):
    dyn = _dynamics_from_record(sim)
    z, h = sim.obsm["X_latent"], 1e-4

    def rk4(u, step):
        k1 = dyn.drift(u)
        k2 = dyn.drift(u + step / 2 * k1)
        k3 = dyn.drift(u + step / 2 * k2)
        return u + step / 6 * (k1 + 2 * k2 + 2 * k3 + dyn.drift(u + step * k3))

    central = (rk4(z, h) - rk4(z, -h)) / (2 * h)
    np.testing.assert_allclose(sim.obsm["velocity_latent"], central, atol=1e-6)


def test_snapshot_means_move_with_the_true_velocities():
    # Without growth the mean position obeys d mean(z) / dt = mean(v): the trapezoid rule on the observed snapshots
    # is close even though cells are not tracked (dx/dt is linear in x). In the RNA PCA, velocity_pca must point
    # the way the snapshot means move while cells travel (the first six intervals, before they settle).
    adata = simulate_multiome(n_cells=1300, n_timepoints=13, seed=0, proliferation=NO_GROWTH, death=NO_GROWTH)
    dt = np.diff(adata.uns["simulation"]["time_points"])[:, None]
    for position, velocity, intervals in [("X_latent", "velocity_latent", 12), ("X_pca", "velocity_pca", 6)]:
        m = _per_time_means(adata, adata.obsm[position])
        v = _per_time_means(adata, adata.obsm[velocity])
        step, trapezoid = np.diff(m, axis=0)[:intervals], (dt * (v[1:] + v[:-1]) / 2)[:intervals]
        if position == "X_latent":  # cumulated, so that each snapshot's sampling noise counts once
            np.testing.assert_allclose(np.cumsum(step[:, 0]), np.cumsum(trapezoid[:, 0]), atol=0.1)
            continue
        norms = np.linalg.norm(step, axis=1), np.linalg.norm(trapezoid, axis=1)
        assert ((step * trapezoid).sum(axis=1) / norms[0] / norms[1]).min() > 0.85
        assert np.all(norms[0] / norms[1] > 0.8)  # velocity_pca is ~15% shorter than the noisy embedding moves


def test_modalities_see_the_latent_state_with_different_geometry(sim):
    cells = np.random.default_rng(0).choice(sim.n_obs, 300, replace=False)
    d_latent, d_pca, d_lsi = (pdist(sim.obsm[k][cells]) for k in ("X_latent", "X_pca", "X_lsi"))
    assert spearmanr(d_pca, d_latent)[0] > 0.7 and spearmanr(d_lsi, d_latent)[0] > 0.6
    assert spearmanr(d_pca, d_lsi)[0] < 0.9


def test_lsi_is_a_projection_of_the_tfidf(sim):
    counts = sim.obsm["atac_counts"]
    embedding, components, idf = lsi(counts, 5, seed=0)
    tfidf, idf_again = _tfidf(counts, return_idf=True)
    np.testing.assert_allclose(idf, idf_again)
    np.testing.assert_allclose(embedding, tfidf @ components, rtol=1e-4, atol=1e-3)
    assert embedding.shape == (sim.n_obs, 5) and components.shape == (counts.shape[1], 5)


# --- simulator: serialization, MuData, bad input -------------------------------------------------------------------


def _assert_same(a, b, where="uns"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)


def _fate_accuracy(adata, key: str, t: float) -> float:
    """Cross-validated balanced accuracy of a kNN classifier telling each cell's fate from ``key`` at time ``t``."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    at = np.isclose(adata.obs["time"].to_numpy(), t)
    fate = adata.obs["fate"].to_numpy()[at]
    knn = KNeighborsClassifier(15)
    return float(cross_val_score(knn, adata.obsm[key][at], fate, cv=5, scoring="balanced_accuracy").mean())


def test_secondary_leads_shows_the_fate_in_atac_one_time_point_before_rna():
    a = simulate_multiome(n_cells=900, n_timepoints=6, seed=2, secondary_leads=True)
    times = np.unique(a.obs["time"])
    before, after = times[1], times[2]  # 0.6 and 1.2: the split (t ~ 0.87) falls between them
    assert (a.obs.loc[np.isclose(a.obs["time"], before), "branch"] == "progenitor").all()  # RNA has not split yet
    assert _fate_accuracy(a, "X_lsi", before) > 0.9
    assert _fate_accuracy(a, "X_pca", before) < 0.7  # near chance (0.5)
    assert _fate_accuracy(a, "X_pca", after) > 0.85
    committed = a.obs["branch"].isin(["A", "B"]).to_numpy()
    branch, fate = a.obs["branch"].astype(str).to_numpy(), a.obs["fate"].astype(str).to_numpy()
    agree = np.mean(branch[committed] == fate[committed])
    assert agree > 0.97  # the fate decides the branch
    share = a.uns["simulation"]["fate_share"]
    assert share.shape == times.shape and np.all((share > 0) & (share < 1))
    # the A-fated share of the mass grows as branch A divides and branch B dies
    assert share[-1] > share[0] + 0.2
    rates = a.obs.groupby("branch", observed=True)["growth_rate"].median()
    assert rates["A"] > 0.8 and rates["B"] < -0.4


def test_h5ad_round_trip(sim, tmp_path):
    file = tmp_path / "sim.h5ad"
    sim.write_h5ad(file)
    back = ad.read_h5ad(file)
    assert (back.X != sim.X).nnz == 0
    assert set(back.obsm) == set(sim.obsm)
    for key, value in sim.obsm.items():
        other = back.obsm[key]
        if sparse.issparse(value):
            assert (other != value).nnz == 0, key
        else:
            np.testing.assert_array_equal(other, value, err_msg=key)
    pd.testing.assert_frame_equal(back.obs, sim.obs)
    pd.testing.assert_frame_equal(back.var, sim.var)
    _assert_same(dict(sim.uns), dict(back.uns))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # mudata 0.3 announces a new default when writing
def test_as_mudata(small, tmp_path):
    mudata = pytest.importorskip("mudata")
    mdata, plain = simulate_multiome(**SMALL, as_mudata=True), small
    assert set(mdata.mod) == {"rna", "atac"}
    assert mdata["rna"].shape == (200, 200) and mdata["atac"].shape == (200, 500)
    np.testing.assert_array_equal(mdata["rna"].obsm["X_pca"], plain.obsm["X_pca"])
    np.testing.assert_array_equal(mdata["atac"].obsm["X_lsi"], plain.obsm["X_lsi"])
    np.testing.assert_array_equal(mdata.obsm["X_latent"], plain.obsm["X_latent"])
    pd.testing.assert_frame_equal(mdata.obs, plain.obs)
    mdata.write(tmp_path / "sim.h5mu")
    back = mudata.read_h5mu(tmp_path / "sim.h5mu")
    pd.testing.assert_frame_equal(back.obs, plain.obs)


def test_mudata_stays_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "mudata", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install mudata"):
        simulate_multiome(n_cells=200, as_mudata=True)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_timepoints": 1}, "n_timepoints"),
        ({"n_cells": 30}, "n_cells"),
        ({"n_cells": 500.5}, "n_cells"),
        ({"n_genes": 5}, "n_genes"),
        ({"n_peaks": 10}, "n_peaks"),
        ({"n_pcs": 0}, "n_pcs"),
        ({"n_lsi": 499}, "n_lsi"),
        ({"seed": -1}, "seed"),
        ({"t_max": 0.0}, "t_max"),
        ({"t_max": "3"}, "t_max"),
        ({"diffusion": -0.1}, "diffusion"),
        ({"proliferation": {"C": 1.0}}, "proliferation"),
        ({"death": {"A": -1.0}}, "death"),
        ({"death": {"progenitor": 10.0, "A": 10.0, "B": 10.0}, "proliferation": NO_GROWTH}, "n_cells"),
    ],
)
def test_bad_input_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_multiome(**({"n_cells": 200} | kwargs))


# --- loaders -------------------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]
_DATA = Path(os.environ.get("SC_SYNCOT_DATA") or REPO_ROOT.parent / "shared" / "data")
needs_data = pytest.mark.skipif(
    not (_DATA / "sciCAR_A549_rna.h5ad").is_file(),
    reason=f"real data not found at {_DATA}: set SC_SYNCOT_DATA to the folder of the shared .h5ad files",
)


@needs_data
def test_sciCAR_paired_aligned_by_name():
    adata = sciCAR_A549(_DATA)
    assert adata.shape == (2641, 1185)
    atac = adata.obsm["atac"]
    assert sparse.issparse(atac) and atac.shape == (2641, 52761) and len(adata.uns["atac_var_names"]) == 52761
    assert adata.obs["time_h"].value_counts().to_dict() == {0.0: 583, 1.0: 983, 3.0: 1075}
    stored = ad.read_h5ad(_DATA / "sciCAR_A549_atac.h5ad")
    cell = adata.obs_names[123]
    row = stored.obs_names.get_loc(cell)
    np.testing.assert_array_equal(atac[123].toarray(), stored.X[row].toarray())


@needs_data
def test_sciCAR_unpaired_and_mudata():
    rna, atac = sciCAR_A549(_DATA, paired=False)
    assert rna.obs_names.equals(atac.obs_names) and atac.n_vars == 52761
    pytest.importorskip("mudata")
    mdata = sciCAR_A549(_DATA, as_mudata=True)
    assert set(mdata.mod) == {"rna", "atac"} and "time_h" in mdata.obs


@needs_data
def test_single_view_loaders():
    emt = tigon_emt(_DATA)
    assert emt.obsm["X_tigon"].shape == (3133, 3) and sorted(emt.obs["time_days"].unique())[-1] == 7.0
    bif = tigon_bifurcation(_DATA)
    assert bif.obsm["X_tigon"].shape == (1896, 4) and set(bif.obs["time_index"]) == set(range(8))
    gem = scgem(_DATA)
    assert gem.shape == (177, 34) and gem.obsm["methylation"].shape == (177, 27)
    assert sorted(gem.obs["time"].unique()) == [0, 1, 2, 3, 4]
    mos = moscot_temporal(_DATA)
    assert mos.obs["day"].dtype == np.float64 and sorted(mos.obs["day"].unique()) == [10.0, 10.5, 11.0]
    assert mos.uns["tmap_10_105"].shape == ((mos.obs["day"] == 10).sum(), (mos.obs["day"] == 10.5).sum())
    assert "description" in mos.uns


@needs_data
def test_scnmt_views_are_unpaired():
    views = scnmt(_DATA)
    assert {k: v.obsm[f"X_{k}"].shape for k, v in views.items()} == {
        "rna": (597, 30),
        "methylation": (725, 30),
        "accessibility": (647, 30),
    }
    assert all(sorted(v.obs["time"].unique()) == [4.5, 5.5, 6.5, 7.5] for v in views.values())


@needs_data
def test_default_folder_from_variable_and_from_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("SC_SYNCOT_DATA", str(_DATA))
    assert tigon_emt().n_obs == 3133
    monkeypatch.delenv("SC_SYNCOT_DATA")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(_DATA.resolve())
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert tigon_emt().n_obs == 3133


def test_missing_data_errors_say_where_they_looked(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="path") as info:
        tigon_emt(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError) and "SC_SYNCOT_DATA" in str(info.value)
    with pytest.raises(DataNotFoundError, match="TIGON_EMT.h5ad"):
        tigon_emt(tmp_path)  # the folder exists, the file does not
    monkeypatch.setenv("SC_SYNCOT_DATA", str(tmp_path / "wrong"))
    with pytest.raises(FileNotFoundError, match="SC_SYNCOT_DATA=.*wrong"):
        scgem()
    monkeypatch.delenv("SC_SYNCOT_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="shared/data"):
        scnmt()
