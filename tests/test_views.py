import anndata as ad
import numpy as np
import pytest

from sc_syncot import pp


def _views(seed=0):
    # An asymmetric cloud (three clusters of different sizes and spreads) seen in two views: the second is a
    # rotated, scaled, shifted copy of the same cells, in a 3-D space, with the cells shuffled.
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [rng.normal([0, 0], 0.1, (60, 2)), rng.normal([1.5, 0], 0.25, (30, 2)), rng.normal([0, 2.5], 0.05, (15, 2))]
    )
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)], [0.0, 0.0]])
    y = 3.0 * x @ rot.T + [5.0, -1.0, 2.0]
    order = rng.permutation(len(x))
    a = ad.AnnData(np.zeros((len(x), 1), np.float32), obs={"day": np.zeros(len(x))})
    b = ad.AnnData(np.zeros((len(x), 1), np.float32), obs={"day": np.zeros(len(x))})
    a.obs_names = [f"a{i}" for i in range(len(x))]
    b.obs_names = [f"b{i}" for i in range(len(x))]
    a.obsm["X_rna"], b.obsm["X_atac"] = x, y[order]
    return a, b, y


def test_couple_views_recovers_an_isometric_view():
    a, b, y = _views()
    pp.couple_views(a, b, "X_rna", "X_atac", time_key="day", epsilon=1e-3)
    err = np.linalg.norm(a.obsm["X_atac_coupled"] - y, axis=1)
    spread = np.linalg.norm(y - y.mean(0), axis=1).mean()
    assert np.median(err) < 0.1 * spread
    assert a.uns["X_atac_coupled"]["gw_discrepancy"].shape == (1,)


def test_couple_views_bad_input():
    a, b, _ = _views()
    b.obs["day"] = 1.0
    with pytest.raises(ValueError, match="only one of the views"):
        pp.couple_views(a, b, "X_rna", "X_atac", time_key="day")
    with pytest.raises(ValueError, match="secondary_basis='X_lsi'"):
        pp.couple_views(a, b, "X_rna", "X_lsi")
    with pytest.raises(ValueError, match="epsilon"):
        pp.couple_views(a, b, "X_rna", "X_atac", epsilon=0)
    assert "X_atac_coupled" not in a.obsm
