import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sc_syncot import tl

SHIFTS = np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.0]])
TIMES = np.array([0.0, 2.0, 3.0])  # unequal intervals: physical rescaling is tested


def translated(n=300, seed=0, secondary=None):
    """A blob translated rigidly between three time points (velocity = shift / interval length)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (n, 2))
    x = np.concatenate([base + s for s in SHIFTS])
    adata = ad.AnnData(np.zeros((3 * n, 1), np.float32))
    adata.obs["time"] = np.repeat(TIMES, n)
    adata.obsm["X_pca"] = x
    adata.obs["side"] = np.where(np.tile(base[:, 1], 3) > 0, "up", "down")
    if secondary is not None:
        adata.obsm["X_sec"] = secondary(x)
    return adata


@pytest.fixture(scope="module")
def balanced():
    adata = translated()
    # constant speed within each interval is the truth here (the speed jumps at t = 2): no time warp
    tl.syncot(adata, "time", "X_pca", delta=None, n_bins=40, n_time=8, time_warp=None)
    return adata


def test_velocity_and_cost_of_a_translation(balanced):
    n = balanced.n_obs // 3
    v = balanced.obsm["syncot_velocity"]
    expected = [(SHIFTS[1] - SHIFTS[0]) / 2.0, (SHIFTS[2] - SHIFTS[1]) / 1.0]
    assert np.allclose(v[:n].mean(0), expected[0], atol=0.01)
    assert np.allclose(v[2 * n :].mean(0), expected[1], atol=0.01)
    # time point 1 sits between both intervals: the mean of the two velocities
    assert np.allclose(v[n : 2 * n].mean(0), 0.5 * (expected[0] + expected[1]), atol=0.01)
    assert np.allclose(balanced.obs["syncot_growth"], 0)
    costs = balanced.uns["syncot"]["costs"]
    # W2^2 of a translation is |shift|^2; the action over an interval of length D is W2^2 / D
    assert np.allclose(costs["total"], [1.25 / 2.0, 1.25 / 1.0], rtol=0.01)


def test_pure_growth_rate_per_cell():
    # The same cells, four times the mass: WFR pure growth, g(t) = 2 (sqrt(c) - 1) / ((1 - t) + t sqrt(c)).
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.3, (400, 2))
    adata = ad.AnnData(np.zeros((800, 1), np.float32))
    adata.obs["time"] = np.repeat([0.0, 1.0], 400)
    adata.obsm["X_pca"] = np.concatenate([base, base])
    tl.syncot(adata, "time", "X_pca", delta=1.0, masses=[1.0, 4.0], n_bins=32, n_time=16, tol=1e-6)
    # the fields in .uns keep the geodesic's instantaneous rate, at the time steps next to the observations
    field = np.asarray(adata.uns["syncot"]["growth"])[0]  # (n_time, grid)
    density = np.asarray(adata.uns["syncot"]["density"])[0]
    t_first, t_last = 0.5 / 16, 1 - 0.5 / 16
    for step, t in ((0, t_first), (-1, t_last)):
        inside = density[step] > 0.1 * density[step].max()
        assert np.median(field[step][inside]) == pytest.approx(2 / ((1 - t) + 2 * t), rel=0.02)
    # each cell reads the constant rate of the observed growth, log(4) per unit time, at both ends
    g = adata.obs["syncot_growth"].to_numpy()
    assert np.median(g) == pytest.approx(np.log(4.0), rel=1e-4)  # measured 2e-5
    np.testing.assert_allclose(g, np.log(4.0), rtol=5e-3)  # measured 2.3e-3 at the cloud's thin edge
    assert adata.uns["syncot"]["costs"]["primary_growth"] == pytest.approx(4 * (2 - 1) ** 2 * 0.4, rel=0.02)
    # masses 0.4 and 1.6 (mean 1): the WFR path has mass ((1 - t) + 2 t)^2 0.4, 0.9 at t = 1/2
    assert tl.interpolate(adata, 0.5)[1] == pytest.approx(0.9, rel=0.01)


def test_a_growth_prior_on_the_grid_sets_the_rate_where_the_masses_allow_it():
    """Four times the mass over two units of time with every cell's prior rate log(4) / 2: the fit grows at the
    prior's constant rate (without it, the WFR path's rate falls from 2 / 2 to 1 / 2 per unit of time; see above),
    so the prior reached the grid per grid cell and in the path's time units (the interval's length times it).

    The cost is zero at this optimum, so the stopping rule's relative change never settles: 300 iterations."""
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.3, (400, 2))
    adata = ad.AnnData(np.zeros((800, 1), np.float32))
    adata.obs["time"] = np.repeat([0.0, 2.0], 400)
    adata.obsm["X_pca"] = np.concatenate([base, base])
    adata.obs["growth_prior"] = np.log(4.0) / 2
    options = {"delta": 1.0, "masses": [1.0, 4.0], "n_bins": 24, "n_time": 8, "progress": False}
    tl.syncot(adata, "time", "X_pca", growth_prior=True, max_iter=300, **options)
    g = adata.obs["syncot_growth"].to_numpy()
    np.testing.assert_allclose(g, np.log(2.0), rtol=1e-2)  # measured 4e-3 at most
    assert adata.uns["syncot"]["costs"]["total"][0] < 1e-4
    assert adata.uns["syncot"]["params"]["growth_prior"]


def test_a_growth_prior_is_shifted_to_agree_with_the_masses():
    """A prior of 0 everywhere against masses that quadruple in two units of time: the masses set the mean growth,
    so the prior is shifted by log(4) / 2 (recorded in .uns) and the fit grows at that rate, as with the prior of
    the test above."""
    rng = np.random.default_rng(1)
    base = rng.normal(0, 0.3, (400, 2))
    adata = ad.AnnData(np.zeros((800, 1), np.float32))
    adata.obs["time"] = np.repeat([0.0, 2.0], 400)
    adata.obsm["X_pca"] = np.concatenate([base, base])
    adata.obs["growth_prior"] = 0.0
    options = {"delta": 1.0, "masses": [1.0, 4.0], "n_bins": 24, "n_time": 8, "progress": False}
    tl.syncot(adata, "time", "X_pca", growth_prior=True, max_iter=300, **options)
    np.testing.assert_allclose(adata.uns["syncot"]["growth_prior_shift"], [np.log(4.0) / 2], rtol=1e-12)
    np.testing.assert_allclose(adata.obs["syncot_growth"], np.log(2.0), rtol=1e-2)


def test_monge_secondary_velocity_is_jacobian_times_velocity():
    a = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])
    adata = translated(secondary=lambda x: x @ a.T)
    tl.syncot(adata, "time", "X_pca", "X_sec", coupling="monge", delta=None, n_bins=32, n_time=8)
    v = adata.obsm["syncot_velocity"]
    vy = adata.obsm["syncot_velocity_secondary"]
    assert np.allclose(vy, v @ a.T, atol=0.02)
    info = adata.uns["syncot"]["coupling"]
    assert info["r2"] > 0.99
    # y is a function of x; kNN means of 50 neighbours lose some of it at the edges of each time point's cloud
    assert info["r2_within_time"] > 0.8 and info["r2_pooled"] > 0.8
    # for a linear map the synchronized cost is (1 + lambda s^2) on the primary direction: the fitted map must
    # report a secondary cost equal to |s A shift|^2 / D with s the variance-matching scale
    s = info["scale"]
    shift = SHIFTS[1] - SHIFTS[0]
    assert adata.uns["syncot"]["costs"]["secondary"][0] == pytest.approx(s**2 * np.sum((a @ shift) ** 2) / 2, rel=0.02)


def test_push_and_pull_follow_the_flow(balanced):
    n = balanced.n_obs // 3
    tl.push(balanced, "side", "up")
    share = balanced.obs["syncot_push_up"].to_numpy()
    up = (balanced.obs["side"] == "up").to_numpy()
    for k in (1, 2):
        sl = slice(k * n, (k + 1) * n)
        assert share[sl].mean() == pytest.approx(up[:n].mean(), abs=0.03)  # a share is conserved
        assert share[sl][up[sl]].mean() > 0.7 and share[sl][~up[sl]].mean() < 0.3
    tl.pull(balanced, "side", "down")
    back = balanced.obs["syncot_pull_down"].to_numpy()
    assert np.isnan(back).sum() == 0
    assert back[:n][~up[:n]].mean() > 0.7 and back[:n][up[:n]].mean() < 0.3


def test_trajectories_and_interpolation(balanced):
    tl.trajectories(balanced, n_particles=50)
    traj = balanced.uns["syncot_trajectories"]
    assert traj["paths"].shape == (50, 2 * 8 + 1, 2)
    assert traj["times"][[0, -1]].tolist() == [0.0, 3.0]
    moved = traj["paths"][:, -1] - traj["paths"][:, 0]
    assert np.allclose(moved.mean(0), SHIFTS[2] - SHIFTS[0], atol=0.05)
    assert np.allclose(traj["weights"], 1.0)  # balanced: no growth along paths
    density, mass = tl.interpolate(balanced, 1.0)  # halfway through the first interval
    grid = balanced.uns["syncot"]["grid"]
    (lo, hi), nx = grid["bounds"][0], grid["shape"][0]
    centres = lo + (hi - lo) * (np.arange(nx) + 0.5) / nx
    mean_x = (density.sum(1) * centres).sum() / density.sum()
    n = balanced.n_obs // 3
    x = balanced.obsm["X_pca"][:, 0]
    assert mass == pytest.approx(1.0, rel=1e-6)
    assert mean_x == pytest.approx(0.5 * (x[:n].mean() + x[n : 2 * n].mean()), abs=0.01)
    with pytest.raises(ValueError, match="time"):
        tl.interpolate(balanced, 7.0)


def test_results_round_trip_h5ad(balanced, tmp_path):
    path = tmp_path / "out.h5ad"
    balanced.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert np.allclose(back.obsm["syncot_velocity"], balanced.obsm["syncot_velocity"])
    d0, _ = tl.interpolate(balanced, 2.5)
    d1, _ = tl.interpolate(back, 2.5)
    assert np.allclose(d0, d1)


def test_copy_leaves_input_alone():
    adata = translated(n=100)
    before = set(adata.obsm) | set(adata.obs) | set(adata.uns)
    out = tl.syncot(adata, "time", "X_pca", n_bins=16, n_time=4, copy=True)
    assert set(adata.obsm) | set(adata.obs) | set(adata.uns) == before
    assert "syncot_velocity" in out.obsm and "syncot" in out.uns


def test_mudata_input():
    mudata = pytest.importorskip("mudata")
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rna = translated(n=150, secondary=lambda x: x @ a.T)
    atac = ad.AnnData(np.zeros((rna.n_obs, 1), np.float32), obs=rna.obs[[]].copy())
    atac.obsm["X_lsi"] = rna.obsm.pop("X_sec")
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    tl.syncot(mdata, "time", "rna:X_pca", "atac:X_lsi", coupling="monge", delta=None, n_bins=24, n_time=4)
    assert mdata.mod["rna"].obsm["syncot_velocity_secondary"].shape == (rna.n_obs, 3)
    assert "syncot" in mdata.uns
    with pytest.raises(ValueError, match="modality"):
        tl.syncot(mdata, "time", "X_pca", n_bins=8, n_time=2)
    # a group annotated on the MuData's own .obs, not on the modality's
    mdata.obs["global_side"] = mdata.mod["rna"].obs["side"].reindex(mdata.obs_names)
    tl.pull(mdata, "global_side", "up")
    assert np.isfinite(mdata.mod["rna"].obs["syncot_pull_up"]).all()
    with pytest.raises(ValueError, match=r"groupby='nowhere': not in .mod\['rna'\].obs or the MuData's .obs"):
        tl.push(mdata, "nowhere", "up")


def _snapshot(adata):
    """Everything a call could change, deep-copied, for a before/after comparison."""
    return adata.copy()


def _assert_untouched(before, after):
    assert before.obs.equals(after.obs)
    assert set(before.obsm) == set(after.obsm) and set(before.uns) == set(after.uns)
    for k in before.obsm:
        assert np.array_equal(np.asarray(before.obsm[k]), np.asarray(after.obsm[k]), equal_nan=True)
    assert np.array_equal(before.X, after.X)


BAD = [
    ({"time_key": "missing"}, "time_key='missing'"),
    ({"time_key": "label"}, "time_key='label': text labels .* hold no number"),
    ({"time_key": "stage"}, "time_key='stage': text labels .* hold no number"),
    ({"primary": "X_umap"}, "primary='X_umap'"),
    ({"primary": "X_1d", "n_dims": 2}, "n_dims=2 needs"),
    ({"secondary": "X_none"}, "secondary='X_none'"),
    ({"secondary": "X_bad"}, "secondary='X_bad': 1 cell has NaN or inf"),
    ({"primary": "X_nan"}, "primary='X_nan': 2 cells have NaN or inf coordinates \\(3, 7\\)"),
    ({"secondary": "X_peaks"}, "secondary='X_peaks': 1200 columns; expected an embedding .*embed_atac"),
    ({"coupling": "gromov"}, "coupling"),
    ({"n_dims": 4}, "n_dims"),
    ({"n_bins": 1}, "n_bins"),
    ({"n_bins": 16.5}, "n_bins: expected an integer"),
    ({"n_time": 2.5}, "n_time"),
    ({"primary": "X_zero"}, "primary='X_zero': all cells have the same coordinates"),
    ({"device": "gpu"}, "device: expected"),
    ({"secondary": "X_sec", "epsilon": -1.0}, "epsilon: expected a positive"),
    ({"n_time": 0}, "n_time"),
    ({"weight": -1.0}, "weight"),
    ({"weight": float("nan")}, "weight"),
    ({"delta": "large"}, "delta"),
    ({"delta": -1.0}, "delta"),
    ({"delta": None, "masses": "counts"}, "masses"),
    ({"masses": [1.0, 2.0]}, "masses"),
    ({"masses": [1.0, -2.0, 1.0]}, "masses"),
    ({"masses": "growth_prior"}, "growth_key='growth_prior'"),
    ({"masses": "proportional"}, "masses"),
    ({"n_bins": 4096, "n_time": 512}, "n_bins, n_time: the grid"),
]


def _bad_data():
    adata = translated(n=40, secondary=lambda x: x)
    adata.obs.loc[adata.obs_names[:50], "time"] = 0.0  # unequal counts
    adata.obs["label"] = adata.obs["time"].map(dict(zip(TIMES, ["early", "mid", "late"], strict=True)))
    adata.obs["stage"] = adata.obs["label"].astype("category")
    adata.obsm["X_1d"] = adata.obsm["X_pca"][:, :1]
    adata.obsm["X_nan"] = adata.obsm["X_pca"].copy()
    adata.obsm["X_nan"][[3, 7], 1] = np.nan
    adata.obsm["X_bad"] = adata.obsm["X_sec"].copy()
    adata.obsm["X_bad"][5, 0] = np.inf
    adata.obsm["X_zero"] = np.zeros_like(adata.obsm["X_pca"])
    adata.obsm["X_peaks"] = np.random.default_rng(0).poisson(0.05, (adata.n_obs, 1200)).astype(float)  # counts
    return adata


def test_nan_in_unused_columns_is_fine():
    adata = translated(n=40)
    adata.obsm["X_wide"] = np.column_stack([adata.obsm["X_pca"], np.full(adata.n_obs, np.nan)])
    tl.syncot(adata, "time", "X_wide", delta=None, n_dims=2, n_bins=12, n_time=2)  # column 2 is not read
    assert np.isfinite(adata.obsm["syncot_velocity"]).all()


@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_input_names_the_key_and_writes_nothing(kwargs, match):
    adata = _bad_data()
    before = _snapshot(adata)
    args = {"time_key": "time", "primary": "X_pca", "secondary": None, "n_bins": 16, "n_time": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        tl.syncot(adata, **args)
    _assert_untouched(before, adata)


def test_bad_time_points_and_objects():
    adata = translated(n=40)
    nan_time = adata.copy()
    nan_time.obs.loc[nan_time.obs_names[0], "time"] = np.nan
    one = adata[adata.obs["time"] == 0].copy()
    few = adata[(adata.obs["time"] != 2) | (np.arange(adata.n_obs) % 40 == 0)].copy()
    cases = [
        (nan_time, "1 cells have no time"),
        (one, "at least two time points"),
        (few, r"time point\(s\) \[2.0\] have fewer than 3 cells"),
    ]
    for data, match in cases:
        before = _snapshot(data)
        with pytest.raises(ValueError, match=match):
            tl.syncot(data, "time", "X_pca", n_bins=8, n_time=2)
        _assert_untouched(before, data)
    with pytest.raises(ValueError, match="data: expected an AnnData or a MuData"):
        tl.syncot(adata.obsm["X_pca"], "time", "X_pca")
    with pytest.raises(ValueError, match="sc_syncot.tl.syncot first"):
        tl.push(adata, "side", "up")


def test_mudata_with_unpaired_cells():
    mudata = pytest.importorskip("mudata")
    rna = translated(n=40)
    atac = ad.AnnData(np.zeros((100, 1), np.float32))
    atac.obs_names = rna.obs_names[:100]
    atac.obsm["X_lsi"] = rna.obsm["X_pca"][:100]
    mdata = mudata.MuData({"rna": rna, "atac": atac})
    with pytest.raises(ValueError, match="20 of the 120 cells"):
        tl.syncot(mdata, "time", "rna:X_pca", "atac:X_lsi", coupling="monge", n_bins=8, n_time=2)
    assert "syncot_velocity" not in mdata.mod["rna"].obsm


def test_kantorovich_coupling_through_tl():
    a = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])
    adata = translated(n=150, secondary=lambda x: x @ a.T)
    tl.syncot(adata, "time", "X_pca", "X_sec", coupling="kantorovich", delta=None, n_bins=16, n_time=4, n_support=40)
    res = adata.uns["syncot"]
    induced = res["coupling"]["secondary_density"]
    assert induced.shape == (2, 5, 40)
    # the kernel is row-stochastic: the induced mass at every node is the primary mass
    primary = res["density"].sum(axis=(2, 3)) * np.prod(
        [(hi - lo) / n for (lo, hi), n in zip(res["grid"]["bounds"], res["grid"]["shape"], strict=True)]
    )
    assert np.allclose(induced.sum(-1), primary, rtol=1e-6)
    # the path still carries the blob: entropic smoothing of the secondary bends it a little (a few %)
    v = adata.obsm["syncot_velocity"][:150].mean(0)
    assert np.allclose(v, (SHIFTS[1] - SHIFTS[0]) / 2.0, atol=0.05)
    assert res["costs"]["secondary"].shape == (2,) and np.all(res["costs"]["secondary"] > 0)


def test_sinkhorn_sweeps_reach_the_solver():
    a = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])
    adata = translated(n=150, secondary=lambda x: x @ a.T)
    kwargs = {"coupling": "kantorovich", "delta": None, "n_bins": 12, "n_time": 4, "n_support": 30, "max_iter": 200}
    tl.syncot(adata, "time", "X_pca", "X_sec", sinkhorn_sweeps=3, **kwargs)
    history = adata.uns["syncot"]["convergence"]["history"]
    assert np.all(np.diff(history["sinkhorn_sweeps"]) == 3 * 20)  # 3 sweeps per iteration, checks every 20
    assert adata.uns["syncot"]["params"]["sinkhorn_sweeps"] == 3
    with pytest.raises(ValueError, match="sinkhorn_sweeps"):
        tl.syncot(adata, "time", "X_pca", "X_sec", sinkhorn_sweeps=0, key_added="bad", **kwargs)
    assert "bad" not in adata.uns


def test_ordered_text_times_keep_their_numbers():
    from sc_syncot.pp.inputs import times

    adata = translated(n=20)
    labels = [f"{t:g}h" for t in TIMES]
    adata.obs["hours"] = pd.Categorical(adata.obs["time"].map(lambda t: f"{t:g}h"), categories=labels, ordered=True)
    with pytest.warns(UserWarning, match=r"read as times \[0.0, 2.0, 3.0\], the numbers in its labels"):
        got = times(adata, "hours", "X_pca")
    np.testing.assert_array_equal(got.to_numpy(), adata.obs["time"].to_numpy())
    stages = ["early", "mid", "late"]
    stage_of = dict(zip(TIMES, stages, strict=True))
    adata.obs["stage"] = pd.Categorical(adata.obs["time"].map(stage_of), stages, ordered=True)
    with pytest.warns(UserWarning, match="equally spaced steps"):
        got = times(adata, "stage", "X_pca")
    np.testing.assert_array_equal(np.unique(got), [0.0, 1.0, 2.0])


def test_default_grid_follows_the_coupling():
    from sc_syncot.tl.evaluation import _fit_params
    from sc_syncot.tl.syncot import default_graph_time, default_grid

    assert default_grid("kantorovich", "X_lsi", 1.0, None, None) == (32, 4)
    assert default_grid("monge", "X_lsi", 1.0, None, None) == (64, 16)
    assert default_grid("kantorovich", None, 1.0, None, None) == (64, 16)
    assert default_grid("kantorovich", "X_lsi", 1.0, 40, None) == (40, 4)
    # held-out evaluations fit every method on the grid of syncot (primary_only has weight 0)
    params = _fit_params("time", "X_pca", "X_lsi", {}, "grid", 2)
    assert (params["n_bins"], params["n_time"]) == (32, 4)
    # on a graph: 4 steps with a Kantorovich secondary (also for primary_only, fitted on syncot's steps), else 8
    assert _fit_params("time", "X_pca", "X_lsi", {}, "graph", None)["n_time"] == 4
    assert _fit_params("time", "X_pca", "X_lsi", {"coupling": "monge"}, "graph", None)["n_time"] == 8
    assert default_graph_time("kantorovich", ["X_lsi", "X_b"], [0.0, 1.0], None) == 4
    assert default_graph_time("kantorovich", "X_lsi", 0.0, None) == 8
    assert default_graph_time("kantorovich", None, 1.0, None) == 8
    assert default_graph_time("kantorovich", "X_lsi", 1.0, 6) == 6


def test_an_unpredictable_secondary_is_warned_only_where_it_acts():
    # a noise secondary: R^2 within time about 0, recorded in both fits, warned only when the weight lets it act
    # on the fit (evaluate_heldout's weight-0 refit used to repeat the warning)
    import warnings

    adata = translated(n=60)
    adata.obsm["X_noise"] = np.random.default_rng(0).standard_normal((adata.n_obs, 3))
    for weight, warned in ((1.0, True), (0.0, False)):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            tl.syncot(adata, "time", "X_pca", "X_noise", weight=weight, n_bins=8, n_time=2, n_support=30, max_iter=2)
        assert any("hardly predictable" in str(w.message) for w in said) is warned
        assert adata.uns["syncot"]["coupling"]["r2_within_time"] < 0.05


def test_a_support_of_near_duplicates_is_warned_with_an_epsilon_to_pass():
    # secondary states in a few tight clumps (as coupled coordinates of unpaired views can be): nearest neighbours
    # almost coincide, the default epsilon is a tiny share of the median cost, and the fit says what to pass instead:
    # EPSILON_CAP times the median cost, which converged on scNMT's coupled views where 0.1 times it did not
    import warnings

    from sc_syncot.solvers.kantorovich import EPSILON_CAP
    from sc_syncot.tl.syncot import FINE_SMOOTHING

    adata = translated(n=60, secondary=lambda x: np.round(2 * x) + 1e-3 * x)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        tl.syncot(adata, "time", "X_pca", "X_sec", n_bins=8, n_time=2, n_support=40, max_iter=2)
    info = adata.uns["syncot"]["coupling"]
    assert info["epsilon_ratio"] < FINE_SMOOTHING
    message = next(str(w.message) for w in said if "close to their neighbours" in str(w.message))
    c_med = info["epsilon"] / info["epsilon_ratio"]
    assert f"pass epsilon={EPSILON_CAP * c_med:.3g}" in message and "coupling='monge'" in message


def test_smoothing_of_the_kantorovich_secondary_is_reported():
    import warnings

    from sc_syncot.solvers.kantorovich import cost_scales
    from sc_syncot.tl.syncot import SMOOTHING_WARNING

    a = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])
    adata = translated(n=60, secondary=lambda x: x @ a.T)

    def fit(n_time, **kwargs):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            tl.syncot(adata, "time", "X_pca", "X_sec", n_bins=8, n_time=n_time, n_support=40, max_iter=2, **kwargs)
        info = adata.uns["syncot"]["coupling"]
        warned = any("entropic smoothing" in str(w.message) for w in said)
        assert warned == (info["epsilon_ratio"] > SMOOTHING_WARNING), (n_time, info["epsilon_ratio"])
        return info

    # the debiased secondary's default epsilon does not follow the time step: the same at every n_time
    infos = {n_time: fit(n_time) for n_time in (2, 8)}
    assert infos[2]["epsilon"] == infos[8]["epsilon"]
    # the ratio is epsilon over the median cost between the support points, recomputed here independently
    info = infos[8]
    support = info["support"] * info["scale"]
    c_med, c_nn = cost_scales(support, adata.uns["syncot"]["params"]["delta"])
    np.testing.assert_allclose(info["epsilon"], 2 * c_nn, rtol=1e-9)
    np.testing.assert_allclose(info["epsilon_ratio"], info["epsilon"] / c_med, rtol=1e-9)
    # a given epsilon is used as is, recorded, and warned when large against the support's spread
    info = fit(8, epsilon=2 * SMOOTHING_WARNING * c_med)
    assert adata.uns["syncot"]["params"]["epsilon"] == 2 * SMOOTHING_WARNING * c_med == info["epsilon"]
    assert info["epsilon_ratio"] > SMOOTHING_WARNING  # and so warned (checked in fit)
