import anndata as ad
import numpy as np
import pytest
from scipy.stats import spearmanr

from sc_syncot import datasets, tl


@pytest.fixture(scope="module")
def simulated():
    adata = datasets.simulate_multiome(n_cells=1500, n_timepoints=4, seed=0)
    tl.syncot(adata, "time", "X_pca", "X_lsi", coupling="monge", n_dims=2, n_bins=32, n_time=8, masses="counts")
    return adata


def test_velocity_and_growth_agree_with_the_truth(simulated):
    v = simulated.obsm["syncot_velocity"]
    truth = simulated.obsm["velocity_pca"][:, :2]  # the true velocity in the two primary components
    cos = (v * truth).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(truth, axis=1))
    assert np.median(cos) > 0.7
    rho = spearmanr(simulated.obs["syncot_growth"], simulated.obs["growth_rate"])[0]
    assert rho > 0.5


def _same(a, b, path="uns"):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, np.ndarray | list | tuple):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, path
        assert np.array_equal(a, b) if a.dtype.kind in "OUSb" else np.allclose(a, b, equal_nan=True), path
    else:
        assert a == b, path


def test_every_key_round_trips_h5ad(simulated, tmp_path):
    simulated.write_h5ad(tmp_path / "sim.h5ad")
    back = ad.read_h5ad(tmp_path / "sim.h5ad")
    _same(simulated.uns["syncot"], back.uns["syncot"])
    for key in ("syncot_velocity", "syncot_velocity_secondary"):
        assert np.array_equal(simulated.obsm[key], back.obsm[key])
    assert np.array_equal(simulated.obs["syncot_growth"], back.obs["syncot_growth"])


@pytest.mark.parametrize(
    "geometry", [{"n_dims": 2, "n_bins": 16, "n_time": 4}, {"n_nodes": 150, "n_time": 4}], ids=["grid", "graph"]
)
def test_mudata_gives_the_anndata_result(geometry):
    mudata = pytest.importorskip("mudata")
    adata = datasets.simulate_multiome(n_cells=400, n_timepoints=3, seed=1)
    mdata = datasets.simulate_multiome(n_cells=400, n_timepoints=3, seed=1, as_mudata=True)
    assert isinstance(mdata, mudata.MuData)
    kwargs = {"coupling": "monge", "masses": "counts", **geometry}
    tl.syncot(adata, "time", "X_pca", "X_lsi", **kwargs)
    tl.syncot(mdata, "time", "rna:X_pca", "atac:X_lsi", **kwargs)
    rna = mdata.mod["rna"]
    assert np.allclose(rna.obsm["syncot_velocity"], adata.obsm["syncot_velocity"])
    assert np.allclose(rna.obs["syncot_growth"], adata.obs["syncot_growth"])
    assert np.allclose(mdata.uns["syncot"]["costs"]["total"], adata.uns["syncot"]["costs"]["total"])
