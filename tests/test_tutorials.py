"""The single-cell tutorials run in their fast setting and show what their text claims."""

import os
import runpy
from pathlib import Path

import numpy as np
import pytest

from sc_syncot import tl

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
# as the loaders and tests/test_datasets.py: $SC_SYNCOT_DATA, else ../shared/data beside the repository
DATA = Path(os.environ.get("SC_SYNCOT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def fast(tmp_path, monkeypatch):
    monkeypatch.setenv("SC_SYNCOT_TUTORIAL_FAST", "1")
    monkeypatch.setenv("SC_SYNCOT_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_simulated_multiome(fast):
    ns = runpy.run_path(str(TUTORIALS / "simulated_multiome.py"), run_name="__main__")
    for name in ("density_path", "velocity", "secondary_path", "growth", "fates", "trajectories", "tradeoff"):
        assert (fast / f"{name}.png").stat().st_size > 10_000, name
    table = ns["table"]
    w1 = table.pivot(index="method", columns="space", values="w1")
    assert w1.loc["syncot", "primary"] < w1.loc["nearest", "primary"]
    assert np.median(ns["cosine"]) > 0.5


@pytest.fixture
def real_data(fast, monkeypatch):
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (set SC_SYNCOT_DATA to the folder of the shared .h5ad files)")
    monkeypatch.setenv("SC_SYNCOT_DATA", str(DATA))
    return fast


def test_scicar_a549(real_data):
    ns = runpy.run_path(str(TUTORIALS / "scicar_a549.py"), run_name="__main__")
    for name in ("density_path", "velocity", "secondary_path", "growth", "heldout_w1"):
        assert (real_data / f"{name}.png").stat().st_size > 10_000, name
    adata = ns["adata"]
    # as the text says: time runs along RNA PC 2 (standardized units), and is weaker in ATAC
    shift = {}
    for key in ("X_rna", "X_atac"):
        assert adata.obsm[key].shape == (adata.n_obs, 2)
        z, t = adata.obsm[key], adata.obs["time_h"].to_numpy()
        shift[key] = np.abs(z[t == 3.0].mean(0) - z[t == 0.0].mean(0))
    assert shift["X_rna"][1] > 1.0
    assert shift["X_rna"][1] > 2 * shift["X_atac"].max()
    w1 = ns["table"].pivot(index="method", columns="space", values="w1")
    # 0 h and 3 h are the only held-in time points: too few to fit a time warp, so no warped rows
    warped = {f"{m}_warped" for m in tl.evaluation.WARPED}
    assert set(w1.index) == set(tl.evaluation.METHODS) - warped - {"graph_floor"}  # a grid fit (2-D embeddings)
    assert list(w1.columns) == ["primary", "secondary"]
    assert np.isfinite(w1.drop(index="readout").to_numpy()).all() and np.isfinite(w1.loc["readout", "secondary"])
    # every prediction is further from the held-out cells than two halves of them are from each other
    for method in ("syncot", "primary_only", "static_ot", "static_uot", "nearest"):
        assert (w1.loc[method] > w1.loc["noise_floor"]).all(), method
    # the time signal is in RNA: the 0 h cells are a poor prediction of the 1 h cells there, unlike any path
    assert w1.loc["nearest", "primary"] > 1.5 * w1.loc["syncot", "primary"]
    # the text says a map of the two RNA components explains little of ATAC
    assert ns["monge_r2"] < 0.2


def test_unpaired_scnmt(real_data):
    ns = runpy.run_path(str(TUTORIALS / "unpaired_scnmt.py"), run_name="__main__")
    for name in ("coupling", "density_path", "velocity", "secondary_path", "growth"):
        assert (real_data / f"{name}.png").stat().st_size > 10_000, name
    rna = ns["rna"]
    coupled = rna.obsm["X_accessibility_coupled"]
    assert coupled.shape == (rna.n_obs, ns["acc"].obsm["X_accessibility"].shape[1])
    assert np.isfinite(coupled).all()
    # the blind coupling finds the stages well above chance and in the right order (not mirrored in time)
    assert ns["blind_agreement"] > ns["chance"] + 0.2
    assert ns["blind_order"] > 0.5
    # barycentres shrink, and the per-time match keeps part of the RNA geometry
    quality = ns["quality"]
    assert (quality["spread ratio"] < 1).all()
    assert (quality["distance Spearman"] > 0.3).all()
    assert np.isfinite(rna.obsm["syncot_velocity"]).all()
    assert ns["res"]["convergence"]["converged"]
