import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sc_syncot import pp
from sc_syncot.solvers import Grid


def test_kde_matches_smoothed_gaussian():
    # The KDE of a Gaussian sample estimates the Gaussian convolved with the kernel: variance sigma^2 + h^2.
    rng = np.random.default_rng(0)
    x = rng.normal([0.2, -0.1], [0.5, 0.3], size=(20000, 2))
    grid = Grid([(-3, 3), (-3, 3)], 96, 4)
    h = 0.15
    dens = pp.kde_density(x, grid, mass=2.0, bandwidth=h)
    assert grid.mass(dens) == pytest.approx(2.0, rel=1e-12)
    pts = grid.points()
    var = np.array([0.5, 0.3]) ** 2 + h**2
    truth = np.exp(-0.5 * (((pts - [0.2, -0.1]) ** 2) / var).sum(-1)) / (2 * np.pi * np.sqrt(var.prod()))
    l1 = np.abs(dens / 2.0 - truth).sum() * grid.cell_volume
    assert l1 < 0.05  # sampling error of 20,000 points plus binning; a wrong variance gives > 0.1


def test_kde_rates_are_the_kernel_mean_of_the_points_rates():
    """Two clusters with rates -1 and 2: each cluster's cells take its rate, the gap a mean weighted by the points'
    masses, and the cells beyond every kernel the overall mean; constant rates stay constant everywhere."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1.0, 0.1, (300, 1)), rng.normal(1.0, 0.1, (100, 1))])
    rates = np.repeat([-1.0, 2.0], [300, 100])
    grid = Grid([(-4, 4)], 160, 4)
    field = pp.kde_rates(x, rates, grid, bandwidth=0.1)
    assert field.shape == grid.shape
    pts = grid.points()[..., 0]
    np.testing.assert_allclose(field[np.abs(pts + 1) < 0.2], -1.0, atol=1e-9)
    np.testing.assert_allclose(field[np.abs(pts - 1) < 0.2], 2.0, atol=1e-9)
    np.testing.assert_allclose(field[np.abs(pts) > 3], 300 / 400 * -1 + 100 / 400 * 2)  # beyond every kernel
    assert -1.0 <= field.min() and field.max() <= 2.0  # a mean of the rates everywhere
    # weights: the second cluster three times heavier moves the overall mean to 0.5
    heavy = pp.kde_rates(x, rates, grid, bandwidth=0.1, weights=np.repeat([1.0, 3.0], [300, 100]))
    np.testing.assert_allclose(heavy[np.abs(pts) > 3], 0.5)
    np.testing.assert_allclose(pp.kde_rates(x, np.full(400, 0.3), grid), 0.3, rtol=1e-12)
    with pytest.raises(ValueError, match="rates: expected 400 finite values"):
        pp.kde_rates(x, rates[:-1], grid)
    with pytest.raises(ValueError, match="rates: expected 400 finite values"):
        pp.kde_rates(x, np.where(rates > 0, np.nan, rates), grid)


def test_pooled_bandwidth_is_scott_over_time_points():
    # two time points of 400 and 100 cells, spreads 1 and 3 per axis: sigma 2, n 250, d 2 -> 2 * 250^(-1/6)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (400, 2)), rng.normal(0, 3, (100, 2))])
    times = np.repeat([0.0, 1.0], [400, 100])
    h = pp.pooled_bandwidth(x, times, np.array([0.0, 1.0]))
    sigma = (x[:400].std(0) + x[400:].std(0)) / 2
    np.testing.assert_allclose(h, sigma * 250 ** (-1 / 6))
    assert np.all(np.abs(sigma - 2) < 0.3)
    grid = pp.primary_grid(x, 16, 4)
    default = pp.interval_densities(x, times, np.array([0.0, 1.0]), grid, np.ones(2))
    explicit = pp.interval_densities(x, times, np.array([0.0, 1.0]), grid, np.ones(2), bandwidth=h)
    np.testing.assert_allclose(default, explicit)


def test_primary_grid_holds_cells_with_margin():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 2.0]])
    grid = pp.primary_grid(x, n_bins=16, n_time=4, margin=0.1)
    assert grid.bounds == ((-0.2, 2.2), (0.8, 3.2))
    with pytest.raises(ValueError, match="coords"):
        pp.primary_grid(np.zeros((5, 4)))


def test_time_point_masses_read_a_series_or_dict_by_its_time_labels():
    times = np.array([0.0, 1.0, 3.0])
    counts = np.array([10, 20, 30])
    by_label = pd.Series([4.0, 1.0, 1.0], index=[3.0, 0.0, 1.0])  # not in the order of the times
    np.testing.assert_allclose(pp.time_point_masses(times, counts, by_label), [0.5, 0.5, 2])
    np.testing.assert_allclose(pp.time_point_masses(times, counts, by_label.to_dict()), [0.5, 0.5, 2])
    with pytest.raises(ValueError, match=r"masses: population sizes given for \[7.0\], which are not time points"):
        pp.time_point_masses(times, counts, pd.Series([1.0, 1.0, 1.0, 1.0], index=[0.0, 1.0, 3.0, 7.0]))
    with pytest.raises(ValueError, match=r"masses: no population size for time point\(s\) \[3.0\]"):
        pp.time_point_masses(times, counts, pd.Series([1.0, 1.0], index=[0.0, 1.0]))
    with pytest.raises(ValueError, match="which are not time points"):
        pp.time_point_masses(times, counts, {0.0: 1, 1.0: 1, 3.0: 4, "day 5": 2})


def test_time_point_masses():
    times = np.array([0.0, 1.0, 3.0])
    counts = np.array([10, 20, 30])
    assert np.allclose(pp.time_point_masses(times, counts, "equal"), 1)
    assert np.allclose(pp.time_point_masses(times, counts, "counts"), [0.5, 1, 1.5])
    assert np.allclose(pp.time_point_masses(times, counts, {0.0: 1, 1.0: 1, 3.0: 4}), [0.5, 0.5, 2])
    # constant growth rate 0.5: M(t) ~ exp(0.5 t)
    cell_times = np.repeat(times, 5)
    m = pp.time_point_masses(times, counts, "growth_prior", np.full(15, 0.5), cell_times)
    assert m[1] / m[0] == pytest.approx(np.exp(0.5)) and m[2] / m[1] == pytest.approx(np.exp(1.0))
    with pytest.raises(ValueError, match="masses"):
        pp.time_point_masses(times, counts, [1, 2])
    with pytest.raises(ValueError, match="masses"):
        pp.time_point_masses(times, counts, [1, -2, 3])
    with pytest.raises(ValueError, match="growth"):
        pp.time_point_masses(times, counts, "growth_prior")


def test_monge_map_recovers_linear_jacobian():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(2000, 2))
    a = np.array([[1.0, 2.0], [-0.5, 0.3], [0.2, 0.0]])
    y = x @ a.T + 0.01 * rng.normal(size=(2000, 3))
    fitted = pp.fit_monge_map(x, y)
    assert fitted.r2 > 0.99
    inner = rng.uniform(-0.5, 0.5, size=(50, 2))  # away from the boundary, where kernel regression is biased
    jac = fitted.jacobian(inner)
    assert np.abs(jac - a).max() < 0.1 * np.abs(a).max()
    assert np.abs(fitted(inner) - inner @ a.T).max() < 0.01


def test_monge_map_slope_of_a_curved_map():
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(2000, 2))
    y = np.column_stack([np.sin(2 * x[:, 0]), x[:, 0] * x[:, 1]])
    fitted = pp.fit_monge_map(x, y + 0.02 * rng.normal(size=y.shape))
    q = rng.uniform(-0.6, 0.6, size=(50, 2))
    truth = np.zeros((50, 2, 2))
    truth[:, 0, 0] = 2 * np.cos(2 * q[:, 0])
    truth[:, 1, 0], truth[:, 1, 1] = q[:, 1], q[:, 0]
    assert np.abs(fitted.jacobian(q) - truth).max() < 0.15  # 7.5% of the largest slope, 2


def test_monge_map_reports_poor_fit():
    rng = np.random.default_rng(2)
    fitted = pp.fit_monge_map(rng.normal(size=(500, 2)), rng.normal(size=(500, 5)))
    assert fitted.r2 < 0.1


def test_kantorovich_kernel_rows_follow_labels():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-1, 0.2, (300, 1)), rng.normal(1, 0.2, (300, 1))])
    y = np.concatenate([rng.normal(0, 0.1, (300, 4)), rng.normal(3, 0.1, (300, 4))])
    support, labels = pp.secondary_support(y, n_support=2, seed=0)
    grid = Grid([(-2, 2)], 40, 4)
    kernel = pp.kantorovich_kernel(x, labels, grid)
    assert sp.issparse(kernel) and kernel.shape == (40, 2)
    assert np.allclose(kernel.sum(1), 1)
    left = labels[0]  # the support point of the cells at x = -1
    assert kernel[5, left] > 0.99 and kernel[34, left] < 0.01


def test_embeddings_leave_counts_untouched():
    rng = np.random.default_rng(4)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(120, 300)).astype(np.float32))
    adata = ad.AnnData(counts.copy())
    adata.obsm["atac"] = sp.csr_matrix(rng.binomial(1, 0.1, size=(120, 500)).astype(np.float32))
    pp.embed_rna(adata, n_comps=10)
    pp.embed_atac(adata, n_comps=8, obsm="atac")
    assert adata.obsm["X_pca"].shape == (120, 10) and adata.obsm["X_lsi"].shape == (120, 8)
    assert (adata.X != counts).nnz == 0
    with pytest.raises(ValueError, match="obsm"):
        pp.embed_atac(adata, obsm="missing")


def test_embed_rna_does_not_normalize_twice():
    import scanpy as sc

    rng = np.random.default_rng(6)
    counts = ad.AnnData(sp.csr_matrix(rng.poisson(2.0, size=(150, 200)).astype(np.float32)))
    lognorm = counts.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    pp.embed_rna(counts, n_comps=5, random_state=0)
    with pytest.warns(UserWarning, match="taken as already normalized"):
        pp.embed_rna(lognorm, n_comps=5, random_state=0)
    # the same embedding from counts and from their log-normalized values (up to the sign of each component)
    a, b = counts.obsm["X_pca"], lognorm.obsm["X_pca"]
    np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-3, atol=1e-3 * np.abs(a).max())
    pp.embed_rna(lognorm, n_comps=5, normalized=False, key_added="twice")
    assert not np.allclose(np.abs(lognorm.obsm["twice"]), np.abs(b), atol=1e-2 * np.abs(b).max())
    with pytest.warns(UserWarning, match="not peak counts"):
        pp.embed_atac(lognorm, n_comps=3)


def test_embed_atac_separates_two_groups():
    rng = np.random.default_rng(5)
    p = np.full((200, 400), 0.05)
    p[:100, :200] = 0.3  # group A opens the first half of the peaks
    p[100:, 200:] = 0.3
    adata = ad.AnnData(sp.csr_matrix(rng.binomial(1, p).astype(np.float32)))
    pp.embed_atac(adata, n_comps=2)
    z = adata.obsm["X_lsi"][:, 0]
    assert abs(z[:100].mean() - z[100:].mean()) > 3 * max(z[:100].std(), z[100:].std())


def test_lsi_is_the_svd_of_the_tfidf():
    """pp.lsi against numpy's dense SVD of the same TF-IDF matrix: embedding U S, components V (the sign fixed by
    each component's largest entry), the first component dropped; and embed_atac writes the same embedding."""
    rng = np.random.default_rng(7)
    dense = rng.poisson(rng.gamma(0.5, 0.4, size=(1, 60)), size=(40, 60)).astype(np.float32)
    dense[3] = 0  # an empty cell stays a zero row
    counts = sp.csr_matrix(dense)
    df = (dense > 0).sum(0)
    idf_expected = np.log(1 + 40 / (1 + df))
    m = np.log1p(1e4 * dense / np.maximum(dense.sum(1, keepdims=True), 1) * idf_expected)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    us, v = u * s * signs, vt.T * signs
    for drop_first, cols in ((True, slice(1, 6)), (False, slice(0, 5))):
        embedding, components, idf = pp.lsi(counts, 5, drop_first=drop_first, seed=3)
        np.testing.assert_allclose(idf, idf_expected, rtol=1e-12)
        np.testing.assert_allclose(components, v[:, cols], atol=1e-7)  # ARPACK's accuracy
        np.testing.assert_allclose(embedding, us[:, cols], atol=1e-7 * s[0])
        assert np.all(embedding[3] == 0)
    assert np.array_equal(pp.lsi(dense, 5)[0], pp.lsi(counts, 5)[0])  # dense input, the same result
    adata = ad.AnnData(counts)
    pp.embed_atac(adata, n_comps=5, random_state=3)
    np.testing.assert_array_equal(adata.obsm["X_lsi"], pp.lsi(counts, 5, seed=3)[0])
    with pytest.raises(ValueError, match="n_comps"):
        pp.lsi(counts, 39)  # 39 + the dropped one: as many as there are cells
    with pytest.raises(ValueError, match="n_comps"):
        pp.lsi(counts, 0)
    with pytest.raises(ValueError, match="nonnegative"):
        pp.lsi(-counts, 5)


def test_embed_atac_is_deterministic_and_keeps_at_least_one_component():
    rng = np.random.default_rng(8)
    counts = sp.csr_matrix(rng.binomial(1, 0.2, size=(80, 150)).astype(np.float32))
    a, b = ad.AnnData(counts), ad.AnnData(counts)
    pp.embed_atac(a, n_comps=6, random_state=0)
    pp.embed_atac(b, n_comps=6, random_state=1)  # another ARPACK start vector: the same signs and values
    np.testing.assert_allclose(a.obsm["X_lsi"], b.obsm["X_lsi"], atol=1e-9 * np.abs(a.obsm["X_lsi"]).max())
    two_peaks = ad.AnnData(counts[:, :2])
    with pytest.raises(ValueError, match="drop_first=False"), pytest.warns(UserWarning, match="at most 1"):
        pp.embed_atac(two_peaks, n_comps=1)
    with pytest.warns(UserWarning, match="at most 1"):
        pp.embed_atac(two_peaks, n_comps=3, drop_first=False)
    assert two_peaks.obsm["X_lsi"].shape == (80, 1) and np.all(np.isfinite(two_peaks.obsm["X_lsi"]))


def test_growth_prior_follows_proliferation_genes():
    genes = pp.gene_sets("human")
    names = genes["proliferation"][:30] + genes["apoptosis"][:30] + [f"G{i}" for i in range(100)]
    rng = np.random.default_rng(6)
    x = rng.normal(1.0, 0.2, size=(200, len(names)))
    x[:100, :30] += 2.0  # the first half of the cells express the proliferation genes
    adata = ad.AnnData(x, var={"gene": names})
    adata.var_names = names
    pp.growth_prior(adata, time_unit="day")
    g = adata.obs["growth_prior"].to_numpy()
    assert g[:100].mean() > g[100:].mean() + 0.5
    assert np.all((g > -1.4) & (g < 1.4))
    mouse = ad.AnnData(x, var={"gene": names})
    mouse.var_names = names
    with pytest.raises(ValueError, match="organism='mouse': the symbols in adata.var_names look human"):
        pp.growth_prior(mouse, organism="mouse", time_unit="day")  # human symbols, written as human ones
    assert "growth_prior" not in mouse.obs


def test_secondary_predictability_separates_a_function_from_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 2))
    time = np.repeat([0.0, 1.0, 2.0], 400)
    drift = time[:, None] * np.array([1.0, -1.0])  # shared drift over time: pooled R^2 only
    function = np.stack([np.sin(x[:, 0]), x[:, 0] + 0.5 * x[:, 1]], 1) + 0.05 * rng.normal(size=(1200, 2))
    noise = drift + rng.normal(size=(1200, 2))
    good = pp.secondary_predictability(x, function, time, k=20)
    bad = pp.secondary_predictability(x + drift, noise, time, k=20)
    assert good["within_time"] > 0.8 and set(good["per_time"]) == {0.0, 1.0, 2.0}
    # pure noise scores about -1/k (the neighbours' mean has variance sigma^2 / k); only time is predictable
    assert abs(bad["within_time"]) < 0.1 < bad["pooled"]
    with pytest.raises(ValueError, match="x, y"):
        pp.secondary_predictability(x, function[:10])
    with pytest.raises(ValueError, match="finite"):
        pp.secondary_predictability(x, np.full_like(function, np.nan))


def test_secondary_predictability_is_scikit_learns_cross_validated_knn():
    """With a fold per cell (leave one out) the split does not depend on the seed: the pooled and per-time values
    are the R^2 of scikit-learn's kNN regression, and of a brute-force one."""
    from sklearn.model_selection import LeaveOneOut, cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1) + 0.3 * rng.normal(size=(60, 2))
    time = np.repeat([0, 1], 30)

    def r2(x, y, k):
        pred = cross_val_predict(KNeighborsRegressor(n_neighbors=k), x, y, cv=LeaveOneOut())
        d = np.square(x[:, None] - x[None]).sum(-1)
        np.fill_diagonal(d, np.inf)
        np.testing.assert_allclose(pred, y[np.argsort(d, 1)[:, :k]].mean(1), rtol=1e-12)
        return 1 - np.square(y - pred).sum() / np.square(y - y.mean(0)).sum()

    out = pp.secondary_predictability(x, y, time, k=7, n_folds=60, seed=11)
    assert out["pooled"] == pytest.approx(r2(x, y, 7), rel=1e-12)
    per_time = {t: r2(x[time == t], y[time == t], 7) for t in (0, 1)}
    assert out["per_time"] == pytest.approx(per_time, rel=1e-12)  # 30 cells, so 30 folds each
    assert out["within_time"] == pytest.approx(np.mean(list(per_time.values())), rel=1e-12)
    # 5 folds: reproducible for a seed, another seed another split
    same = [pp.secondary_predictability(x, y, time, k=7, seed=s) for s in (0, 0, 1)]
    assert same[0] == same[1] and same[0]["pooled"] != same[2]["pooled"]
    # k beyond the smallest training fold (12 cells, 5 folds: 9) is clamped to it
    small = pp.secondary_predictability(x[:12], y[:12], k=50)
    assert small == pp.secondary_predictability(x[:12], y[:12], k=9)
    with pytest.raises(ValueError, match="n >= 2"):
        pp.secondary_predictability(x[:1], y[:1])


def test_secondary_predictability_is_near_one_for_a_function_and_near_zero_for_noise():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, size=(1500, 2))
    smooth = np.stack([np.sin(x[:, 0]) + x[:, 1] ** 2, np.cos(x[:, 1])], 1)
    assert pp.secondary_predictability(x, smooth, k=10)["pooled"] > 0.98
    assert abs(pp.secondary_predictability(x, rng.normal(size=(1500, 3)), k=10)["pooled"]) < 0.15


def test_prior_shifts_make_the_chained_masses_equal_the_given_ones():
    rng = np.random.default_rng(0)
    times = np.array([0.0, 1.0, 3.0])
    cell_times = np.repeat(times, 50)
    rates = rng.normal(0.2, 0.5, 150)
    masses = np.array([1.0, 0.7, 2.5])
    shifts = pp.prior_shifts(times, masses, rates, cell_times)
    per_interval = rates + np.concatenate([np.repeat(shifts, 50), np.zeros(50)])
    chained = pp.time_point_masses(times, np.full(3, 50), "growth_prior", per_interval, cell_times)
    np.testing.assert_allclose(chained, masses / masses.mean(), rtol=1e-12)
    # sizes chained from the rates themselves need no shift
    own = pp.time_point_masses(times, np.full(3, 50), "growth_prior", rates, cell_times)
    np.testing.assert_allclose(pp.prior_shifts(times, own, rates, cell_times), 0.0, atol=1e-12)
