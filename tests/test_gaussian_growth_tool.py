import anndata as ad
import numpy as np
import pytest

from sc_syncot import tl


def _two_groups(seed=0, move=0.0):
    # Group A doubles and group B halves between t = 0 and t = 2 (cell counts), in a 6-D embedding.
    rng = np.random.default_rng(seed)
    n = {(0, "A"): 200, (0, "B"): 200, (2, "A"): 400, (2, "B"): 100}
    centre = {"A": np.zeros(6), "B": np.full(6, 3.0)}
    x, t, g = [], [], []
    for (time, group), k in n.items():
        shift = move * time / 2 * np.eye(6)[0] if group == "A" else 0.0
        x.append(rng.normal(centre[group] + shift, 0.5, (k, 6)))
        t += [float(time)] * k
        g += [group] * k
    adata = ad.AnnData(np.zeros((len(t), 1), np.float32))
    adata.obs["time"], adata.obs["cluster"] = t, g
    adata.obsm["X_pca"] = np.concatenate(x)
    return adata


def test_net_rates_follow_the_group_masses():
    adata = _two_groups()
    tl.gaussian_growth(adata, "time", "cluster", "X_pca")
    res = adata.uns["gaussian_growth"]["0"]
    rates = dict(zip(res["groups"], res["growth_rate"], strict=True))
    # counts 200 -> 400 and 200 -> 100 over dt = 2; the time points' masses follow the counts (mean 1)
    assert rates["A"] == pytest.approx(np.log(2) / 2, rel=1e-9)
    assert rates["B"] == pytest.approx(np.log(0.5) / 2, rel=1e-9)
    g = adata.obs["gaussian_growth"].to_numpy()
    assert np.allclose(g[adata.obs["cluster"] == "A"], np.log(2) / 2)
    # usable as the mass prior of tl.syncot: chaining the per-cell rates gives back the population change
    from sc_syncot import pp

    m = pp.time_point_masses(np.array([0.0, 2.0]), np.array([400, 500]), "growth_prior", g, adata.obs["time"])
    assert m[1] / m[0] == pytest.approx(500 / 400, rel=1e-9)


def test_turnover_grows_with_movement_and_falls_with_tau():
    still = _two_groups(move=0.0)
    moved = _two_groups(move=2.0)
    turn = []
    for a, tau in ((still, 5.0), (moved, 5.0), (moved, 50.0)):
        tl.gaussian_growth(a, "time", "cluster", "X_pca", tau=tau)
        res = a.uns["gaussian_growth"]["0"]
        turn.append(dict(zip(res["groups"], res["turnover_rate"], strict=True))["A"])
    assert turn[1] > 5 * turn[0]  # moving group A by 2 costs turnover that sampling noise alone does not
    assert turn[2] < turn[1]


def test_bad_input():
    adata = _two_groups()
    with pytest.raises(ValueError, match="groupby='celltype'"):
        tl.gaussian_growth(adata, "time", "celltype", "X_pca")
    with pytest.raises(ValueError, match="tau"):
        tl.gaussian_growth(adata, "time", "cluster", "X_pca", tau=-1.0)
    with pytest.raises(ValueError, match="basis='X_umap'"):
        tl.gaussian_growth(adata, "time", "cluster", "X_umap")
    assert "gaussian_growth" not in adata.obs
