"""Bad input and faults at the public entry points: tl, pp, sc_syncot.gaussian and the ``sc-syncot`` command.

Every refusal is a ``ValueError`` (or a documented warning) whose message names the argument or key and what was
expected, raised before any long computation, and leaves the AnnData / MuData exactly as it was (obs, var, obsm,
layers, uns and X are compared before and after). Inputs that are legitimate (integer, float32 or sparse bases, a
DataFrame in ``.obsm``, unsorted or negative times, ...) must give finite results. The grids are tiny (8 x 8, two
time steps) and the solves capped at a few dozen iterations: these tests check behaviour, not accuracy.
"""

from __future__ import annotations

import copy
import importlib
import os
import tempfile
import warnings
from contextlib import contextmanager

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from sc_syncot import gaussian, pp, tl
from sc_syncot.cli import main
from sc_syncot.solvers.solve import TransportOperators

FIT = {"n_bins": 8, "n_time": 2, "max_iter": 40, "progress": False, "time_warp": None}
N = 30  # cells per time point
TIMES = (0.0, 1.0, 2.0)


def course(n: int = N, seed: int = 0, times=TIMES) -> ad.AnnData:
    """A blob drifting over three time points, with counts, a layer, a var table and something in .uns."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 0.3, (n, 2)) + [k, 0.5 * k] for k in range(len(times))])
    adata = ad.AnnData(rng.poisson(2.0, (len(x), 12)).astype(np.float32))
    adata.var_names = [f"gene{i}" for i in range(adata.n_vars)]
    adata.var["kind"] = "protein_coding"
    adata.obs["time"] = np.repeat(np.asarray(times, float), n)
    adata.obs["side"] = np.where(np.arange(len(x)) % 2 == 0, "up", "down")
    adata.obsm["X_pca"] = x
    adata.obsm["X_sec"] = np.column_stack([x, np.sin(x[:, 0])])
    adata.layers["counts"] = adata.X.copy()
    adata.uns["note"] = {"source": "synthetic", "ids": np.arange(3)}
    return adata


# --- the snapshot: what a failed call must leave as it was ----------------------------------------------------------


def _copy(value):
    return value.copy() if hasattr(value, "copy") else copy.deepcopy(value)


def snapshot(data) -> dict:
    """Deep copies of obs, var, obsm, layers, uns and X (of every modality, for a MuData)."""
    if hasattr(data, "mod"):
        return {
            "obs": data.obs.copy(),
            "obsm": {k: _copy(v) for k, v in data.obsm.items()},
            "uns": copy.deepcopy(dict(data.uns)),
            "mod": {name: snapshot(m) for name, m in data.mod.items()},
        }
    return {
        "obs_names": list(data.obs_names),
        "obs": data.obs.copy(),
        "var": data.var.copy(),
        "X": _copy(data.X),
        "obsm": {k: _copy(v) for k, v in data.obsm.items()},
        "layers": {k: _copy(v) for k, v in data.layers.items()},
        "uns": copy.deepcopy(dict(data.uns)),
    }


def assert_same(after, before, where: str = "data") -> None:
    """Equal snapshots (NaN equals NaN; dtypes of arrays and frames included)."""
    if isinstance(before, dict):
        assert isinstance(after, dict), where
        assert sorted(after) == sorted(before), f"{where}: keys {sorted(after)}, expected {sorted(before)}"
        for k in before:
            assert_same(after[k], before[k], f"{where}[{k!r}]")
    elif isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, obj=where)
    elif sp.issparse(before):
        assert sp.issparse(after) and after.shape == before.shape and (after != before).nnz == 0, where
    elif before is None:
        assert after is None, where
    else:
        a, b = np.asarray(after), np.asarray(before)
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype}, expected {b.dtype}"
        np.testing.assert_array_equal(a, b, err_msg=where)


@contextmanager
def unchanged(data):
    """The block must leave ``data`` exactly as it was (use around ``pytest.raises``)."""
    before = snapshot(data)
    yield
    assert_same(snapshot(data), before)


def assert_kept(data, before: dict) -> None:
    """A successful call may add keys, but what was there before must be untouched."""
    after = snapshot(data)
    for part in ("obsm", "layers", "uns"):
        kept = {k: v for k, v in after[part].items() if k in before[part]}
        assert_same(kept, before[part], part)
    assert_same(after["obs"][before["obs"].columns], before["obs"], "obs")
    for part in ("var", "X", "obs_names"):
        assert_same(after[part], before[part], part)


def assert_finite_fit(adata, key: str = "syncot") -> None:
    """The results of tl.syncot hold no NaN or inf."""
    u = adata.uns[key]
    for name in ("density", "velocity", "growth"):
        assert np.all(np.isfinite(u[name])), name
    assert all(np.all(np.isfinite(v)) for v in u["costs"].values())
    assert np.all(np.isfinite(adata.obsm[f"{key}_velocity"]))
    assert np.all(np.isfinite(adata.obs[f"{key}_growth"]))


# --- tl.syncot: refusals --------------------------------------------------------------------------------------------


def _nan_primary(a):
    a.obsm["X_pca"][3, 0] = np.nan


def _inf_secondary(a):
    a.obsm["X_sec"][5, 2] = np.inf


def _text_times(a):
    a.obs["time"] = np.repeat(["early", "mid", "late"], N)


def _unordered_categories(a):
    a.obs["time"] = pd.Categorical(np.repeat(["early", "mid", "late"], N))


def _one_time_point(a):
    a.obs["time"] = 0.0


def _missing_time(a):
    a.obs.loc[a.obs_names[4], "time"] = np.nan


def _cells_at_new_time(k):
    def mutate(a):
        a.obs.loc[a.obs_names[:k], "time"] = 5.0

    return mutate


def _duplicated_names(a):
    names = list(a.obs_names)
    names[7] = names[2]
    a.obs_names = names


def _extra_basis(name, columns):
    def mutate(a):
        a.obsm[name] = np.random.default_rng(1).normal(size=(a.n_obs, columns))

    return mutate


def _constant(key):
    def mutate(a):
        a.obsm[key][:] = 1.5

    return mutate


SEC = {"secondary": "X_sec", "n_support": 10}


def _forbid_fitting(monkeypatch) -> None:
    """Every refusal must come before the densities, the coupling or the solve are computed."""

    def fitting(*args, **kwargs):
        raise AssertionError("fitting started before the input was refused")

    for name in ("interval_densities", "fit_monge_map", "secondary_support", "secondary_predictability"):
        monkeypatch.setattr(pp, name, fitting)
    monkeypatch.setattr(importlib.import_module("sc_syncot.tl.syncot"), "solve", fitting)


@pytest.mark.parametrize(
    ("mutate", "kwargs", "match"),
    [
        pytest.param(_nan_primary, {}, r"primary='X_pca': 1 cell has NaN or inf", id="nan-in-primary"),
        pytest.param(_inf_secondary, SEC, r"secondary='X_sec': 1 cell has NaN or inf", id="inf-in-secondary"),
        pytest.param(None, {"primary": "X_umap"}, r"primary='X_umap': not in \.obsm", id="missing-primary-key"),
        pytest.param(None, {"primary": "X"}, r"primary='X': not in \.obsm .*not \.X: compute one first", id="X"),
        pytest.param(None, {"secondary": "X_lsi"}, r"secondary='X_lsi': not in \.obsm", id="missing-secondary-key"),
        pytest.param(None, {"time_key": "day"}, r"time_key='day': not in \.obs", id="missing-time-key"),
        pytest.param(_text_times, {}, r"time_key='time': text labels .* hold no number", id="text-times"),
        pytest.param(_unordered_categories, {}, r"time_key='time': text labels .* hold no number", id="unordered"),
        pytest.param(_missing_time, {}, r"time_key='time': 1 cells have no time", id="nan-time"),
        pytest.param(_one_time_point, {}, r"time_key='time': expected at least two time points", id="one-time-point"),
        pytest.param(_cells_at_new_time(1), {}, r"time point\(s\) \[5\.0\] have fewer than 3 cells", id="1-cell"),
        pytest.param(_cells_at_new_time(2), {}, r"time point\(s\) \[5\.0\] have fewer than 3 cells", id="2-cells"),
        pytest.param(_duplicated_names, {}, r"obs_names: 1 cell name\(s\) .* duplicated", id="duplicated-names"),
        pytest.param(
            _extra_basis("X_1d", 1),
            {"primary": "X_1d", "n_dims": 2},
            "primary='X_1d': has 1 columns, n_dims=2",
            id="1d",
        ),
        pytest.param(_extra_basis("X_4d", 4), {"primary": "X_4d", "n_dims": 4}, r"n_dims: .* 1 to 3", id="4d-grid"),
        pytest.param(_extra_basis("X_50", 50), {"primary": "X_50", "n_dims": 50}, r"n_dims: .*got 50", id="50d-grid"),
        pytest.param(_constant("X_pca"), {}, r"primary='X_pca': all cells have the same", id="constant-primary"),
        pytest.param(_constant("X_sec"), SEC, r"secondary='X_sec': all cells have the same", id="constant-secondary"),
        pytest.param(None, {"masses": [1.0, -1.0, 1.0]}, r"masses: expected positive finite", id="negative-masses"),
        pytest.param(None, {"masses": [1.0, 0.0, 1.0]}, r"masses: expected positive finite", id="zero-masses"),
        pytest.param(None, {"masses": [1.0, 1.0]}, r"masses: expected 3 population sizes", id="masses-length"),
        pytest.param(
            None,
            {"masses": {0.0: 1.0, 1.0: 2.0}},
            r"masses: no population size for time point\(s\) \[2\.0\]",
            id="masses-map",
        ),
        pytest.param(None, {"masses": "cells"}, r"masses: expected 'equal', 'counts'", id="masses-name"),
        pytest.param(
            None,
            {"masses": {0.0: 1.0, 1.0: 2.0, 2.0: 1.0, 9.0: 1.0}},
            r"masses: .* \[9\.0\], which are not time",
            id="masses-extra-time",
        ),
        pytest.param(None, {"seed": None}, r"seed: expected an integer >= 0", id="seed-none"),
        pytest.param(None, {"seed": 1.5}, r"seed: expected an integer >= 0", id="seed-float"),
        pytest.param(None, {"masses": "growth_prior"}, r"growth_key='growth_prior': not in \.obs", id="growth-key"),
        pytest.param(None, {**SEC, "weight": -1.0}, r"weight: expected a finite float >= 0", id="weight-negative"),
        pytest.param(None, {**SEC, "weight": np.nan}, r"weight: expected a finite float >= 0", id="weight-nan"),
        pytest.param(None, {**SEC, "weight": np.inf}, r"weight: expected a finite float >= 0", id="weight-inf"),
        pytest.param(None, {**SEC, "weight": True}, r"weight: expected a finite float >= 0", id="weight-bool"),
        pytest.param(None, {"delta": -1.0}, r"delta: expected a positive finite float", id="delta-negative"),
        pytest.param(None, {"delta": np.nan}, r"delta: expected a positive finite float", id="delta-nan"),
        pytest.param(None, {"delta": np.inf}, r"delta: expected a positive finite float", id="delta-inf"),
        pytest.param(None, {"delta": 0.0}, r"delta: expected a positive finite float", id="delta-zero"),
        pytest.param(None, {"delta": "half"}, r"delta: expected a positive finite float, 'auto'", id="delta-text"),
        pytest.param(None, {**SEC, "epsilon": -1.0}, r"epsilon: expected a positive finite", id="epsilon-negative"),
        pytest.param(None, {**SEC, "epsilon": np.nan}, r"epsilon: expected a positive finite", id="epsilon-nan"),
        pytest.param(None, {**SEC, "epsilon": np.inf}, r"epsilon: expected a positive finite", id="epsilon-inf"),
        pytest.param(None, {**SEC, "epsilon": 0.0}, r"epsilon: expected a positive finite", id="epsilon-zero"),
        pytest.param(None, {**SEC, "secondary_delta": -2.0}, r"secondary_delta: expected a positive", id="sec-delta"),
        pytest.param(
            None,
            {**SEC, "coupling": "monge", "delta": None, "secondary_delta": 1.0},
            r"secondary_delta: .*set delta",
            id="sd",
        ),
        pytest.param(None, {"n_bins": 0}, r"n_bins: expected an integer >= 2", id="n_bins-0"),
        pytest.param(None, {"n_bins": 1}, r"n_bins: expected an integer >= 2", id="n_bins-1"),
        pytest.param(None, {"n_bins": 8.5}, r"n_bins: expected an integer >= 2", id="n_bins-float"),
        pytest.param(None, {"n_time": 0}, r"n_time: expected a positive integer", id="n_time-0"),
        pytest.param(None, {"bandwidth": -0.1}, r"bandwidth: expected a positive finite", id="bandwidth-negative"),
        pytest.param(None, {"bandwidth": np.nan}, r"bandwidth: expected a positive finite", id="bandwidth-nan"),
        pytest.param(None, {"tol": -1e-5}, r"tol: expected a positive finite float", id="tol-negative"),
        pytest.param(None, {"max_iter": 0}, r"max_iter: expected a positive integer", id="max_iter-0"),
        pytest.param(None, {**SEC, "n_support": 1}, r"n_support: expected an integer >= 2", id="n_support-1"),
        pytest.param(None, {"coupling": "optimal"}, r"coupling: expected one of", id="coupling"),
        pytest.param(None, {"time_warp": 3}, r"time_warp: expected 'auto', None or a callable", id="time_warp"),
        pytest.param(None, {"device": "tpu"}, r"device: expected 'auto', 'cpu'", id="device"),
    ],
)
def test_syncot_refuses_bad_input_and_writes_nothing(monkeypatch, mutate, kwargs, match):
    _forbid_fitting(monkeypatch)
    adata = course()
    if mutate is not None:
        mutate(adata)
    args = {"time_key": "time", "primary": "X_pca", **FIT, **kwargs}
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.syncot(adata, **args)


def test_syncot_refuses_an_empty_anndata():
    adata = course()[:0].copy()
    with unchanged(adata), pytest.raises(ValueError, match=r"data: expected cells, got an empty AnnData"):
        tl.syncot(adata, "time", "X_pca", **FIT)


def test_syncot_refuses_what_is_not_an_anndata():
    with pytest.raises(ValueError, match=r"data: expected an AnnData or a MuData, got ndarray"):
        tl.syncot(np.zeros((90, 2)), "time", "X_pca", **FIT)


@pytest.mark.parametrize(("n_bins", "n_time"), [(10**6, 2), (8, 10**9)], ids=["n_bins-huge", "n_time-huge"])
def test_a_huge_grid_is_refused_before_any_allocation(monkeypatch, n_bins, n_time):
    _forbid_fitting(monkeypatch)
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=r"n_bins, n_time: the grid .* needs about [\d.]+ GiB"):
        tl.syncot(adata, "time", "X_pca", **(FIT | {"n_bins": n_bins, "n_time": n_time}))


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")
def test_secondary_with_other_cells_in_a_mudata_is_refused():
    md = pytest.importorskip("mudata")
    rna, atac = course(), course()[: 2 * N].copy()
    atac.var_names = [f"peak{i}" for i in range(atac.n_vars)]
    mdata = md.MuData({"rna": rna, "atac": atac})
    with unchanged(mdata), pytest.raises(ValueError, match=r"secondary='atac:X_sec': 30 of the 90 cells .* no second"):
        tl.syncot(mdata, "time", "rna:X_pca", "atac:X_sec", **FIT, n_support=10)


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")
def test_a_mudata_basis_without_modality_is_refused():
    md = pytest.importorskip("mudata")
    mdata = md.MuData({"rna": course()})
    with unchanged(mdata), pytest.raises(ValueError, match=r"'X_pca': with MuData, name bases as 'modality:obsm_key'"):
        tl.syncot(mdata, "time", "X_pca", **FIT)


# --- tl.syncot: inputs that must work ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> ad.AnnData:
    adata = course()
    tl.syncot(adata, "time", "X_pca", **FIT)
    return adata


def _fit_and_check(adata, **kwargs) -> ad.AnnData:
    before = snapshot(adata)
    tl.syncot(adata, **({"time_key": "time", "primary": "X_pca"} | FIT | kwargs))
    assert_kept(adata, before)
    assert_finite_fit(adata)
    return adata


def _same_fit(adata, reference, order=None, rtol=1e-7) -> None:
    order = np.arange(adata.n_obs) if order is None else order
    ref_v = reference.obsm["syncot_velocity"]
    np.testing.assert_allclose(adata.obsm["syncot_velocity"], ref_v[order], rtol=rtol, atol=rtol * np.abs(ref_v).max())
    ref_g = reference.obs["syncot_growth"].to_numpy()
    np.testing.assert_allclose(adata.obs["syncot_growth"], ref_g[order], rtol=rtol, atol=rtol * np.abs(ref_g).max())


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x, names: x.astype(np.float32), id="float32"),
        pytest.param(lambda x, names: sp.csr_matrix(x), id="sparse"),
        pytest.param(lambda x, names: pd.DataFrame(x, index=names, columns=["pc1", "pc2"]), id="dataframe"),
    ],
)
def test_other_storage_of_the_primary_gives_the_same_fit(reference, convert):
    adata = course()
    adata.obsm["X_pca"] = convert(adata.obsm["X_pca"], adata.obs_names)
    _same_fit(_fit_and_check(adata), reference, rtol=1e-4)


def test_integer_bases_and_times_work():
    adata = course()
    adata.obsm["X_pca"] = np.round(adata.obsm["X_pca"] * 10).astype(np.int64)
    adata.obs["time"] = adata.obs["time"].astype(np.int64)
    _fit_and_check(adata)
    np.testing.assert_array_equal(adata.uns["syncot"]["time_points"], [0.0, 1.0, 2.0])


def test_unsorted_cells_give_the_same_fit(reference):
    order = np.random.default_rng(3).permutation(3 * N)
    adata = course()[order].copy()
    _same_fit(_fit_and_check(adata), reference, order)


def test_negative_times_work(reference):
    adata = course()
    adata.obs["time"] -= 5.0
    _same_fit(_fit_and_check(adata), reference)
    np.testing.assert_array_equal(adata.uns["syncot"]["time_points"], [-5.0, -4.0, -3.0])


@pytest.mark.parametrize("scale", [1e12, 1e-12], ids=["1e12", "1e-12"])
def test_coordinates_far_from_unit_scale_give_finite_results(reference, scale):
    adata = course()
    adata.obsm["X_pca"] *= scale
    adata.obsm["X_sec"] *= scale
    _fit_and_check(adata, secondary="X_sec", coupling="monge")
    assert np.all(np.isfinite(adata.obsm["syncot_velocity_secondary"]))
    bounds = reference.uns["syncot"]["grid"]["bounds"] * scale
    np.testing.assert_allclose(adata.uns["syncot"]["grid"]["bounds"], bounds, rtol=1e-12)


@pytest.mark.parametrize("secondary", [None, "X_sec"], ids=["primary-only", "kantorovich"])
def test_a_fit_does_not_depend_on_the_units_of_the_basis(secondary):
    # The solver works in a unit box (solvers.solve.unit_box), so a change of units changes nothing but rounding:
    # the same iterations, and velocities in the new units. Before, a 1e3 x basis did not converge in 1500
    # iterations where the 1 x one took 440, and its velocities were a third of the scaled ones.
    fits = {}
    for scale in (1.0, 1e3, 1e-3):
        adata = course()
        adata.obsm["X_pca"] *= scale
        adata.obsm["X_sec"] *= scale
        kwargs = {"coupling": "kantorovich"} if secondary else {}
        tl.syncot(adata, "time", "X_pca", secondary, **(FIT | kwargs | {"max_iter": 1500, "tol": 1e-6}))
        fits[scale] = adata
    base = fits[1.0]
    assert base.uns["syncot"]["convergence"]["converged"]
    for scale, adata in fits.items():
        assert adata.uns["syncot"]["convergence"]["n_iter"] == base.uns["syncot"]["convergence"]["n_iter"], scale
        velocity = adata.obsm["syncot_velocity"] / scale
        np.testing.assert_allclose(velocity, base.obsm["syncot_velocity"], rtol=0, atol=1e-3 * np.abs(velocity).max())
        np.testing.assert_allclose(adata.obs["syncot_growth"], base.obs["syncot_growth"], rtol=0, atol=1e-4)


def test_cells_identical_within_each_time_point_work():
    adata = course()
    adata.obsm["X_pca"] = np.repeat([[0.0, 0.0], [1.0, 0.5], [2.0, 1.0]], N, axis=0)
    _fit_and_check(adata)
    assert adata.obsm["syncot_velocity"][:, 0].mean() > 0  # the cloud moves right


@pytest.mark.filterwarnings("ignore:time_key='time'. ordered categories:UserWarning")
def test_a_time_point_without_cells_is_left_out_with_a_warning():
    adata = course()
    labels = np.repeat(["0h", "1h", "3h"], N)
    adata.obs["time"] = pd.Categorical(labels, categories=["0h", "1h", "2h", "3h"], ordered=True)
    with pytest.warns(UserWarning, match=r"time_key='time': categories \['2h'\] have no cells and are left out"):
        _fit_and_check(adata)
    np.testing.assert_array_equal(adata.uns["syncot"]["time_points"], [0.0, 1.0, 3.0])


@pytest.mark.parametrize(
    ("basis", "kwargs"),
    [
        pytest.param("X_1d", {"n_dims": 1}, id="1d-primary"),
        pytest.param("X_50", {"n_dims": 2}, id="50d-primary-first-2-columns"),
        pytest.param("X_pca", {"n_time": 1}, id="n_time-1"),
        pytest.param("X_pca", {**SEC, "weight": 0.0}, id="weight-0"),
    ],
)
def test_legitimate_edge_settings_work(basis, kwargs):
    adata = course()
    adata.obsm["X_1d"] = adata.obsm["X_pca"][:, :1].copy()
    adata.obsm["X_50"] = np.column_stack([adata.obsm["X_pca"], np.random.default_rng(2).normal(size=(3 * N, 48))])
    _fit_and_check(adata, primary=basis, **kwargs)


def test_copy_leaves_the_input_untouched(reference):
    adata = course()
    with unchanged(adata):
        out = tl.syncot(adata, "time", "X_pca", **FIT, copy=True)
    assert_finite_fit(out)
    _same_fit(out, reference)


def test_a_second_run_under_the_same_key_replaces_the_first(reference):
    adata = course()
    tl.syncot(adata, "time", "X_pca", "X_sec", coupling="monge", **FIT)
    assert "syncot_velocity_secondary" in adata.obsm
    tl.syncot(adata, "time", "X_pca", **FIT)
    assert_finite_fit(adata)
    _same_fit(adata, reference)
    assert "syncot_velocity_secondary" not in adata.obsm  # the first run's, which this one did not compute


# --- faults during a solve ------------------------------------------------------------------------------------------


def test_an_interrupted_solve_leaves_the_anndata_untouched(monkeypatch):
    module = importlib.import_module("sc_syncot.tl.syncot")  # the attribute tl.syncot is the function

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "solve", interrupted)
    threads = torch.get_num_threads()
    adata = course()
    with unchanged(adata), pytest.raises(KeyboardInterrupt):
        tl.syncot(adata, "time", "X_pca", **FIT)
    assert torch.get_num_threads() == threads


def _diverging(monkeypatch):
    def dual_prox(self, z, sigma):  # what overflowing iterates do
        return z * np.nan, z * np.nan

    monkeypatch.setattr(TransportOperators, "dual_prox", dual_prox)


def test_a_diverging_solve_stops_with_a_clear_error(monkeypatch):
    _diverging(monkeypatch)
    adata = course()
    with unchanged(adata), pytest.raises(FloatingPointError, match=r"iterates became non-finite at iteration"):
        tl.syncot(adata, "time", "X_pca", **FIT)


def test_non_finite_results_are_never_written(monkeypatch):
    module = importlib.import_module("sc_syncot.tl.syncot")  # the attribute tl.syncot is the function
    real = module.solve

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        result.velocity[..., 0] = np.nan
        return result

    monkeypatch.setattr(module, "solve", poisoned)
    adata = course()
    with unchanged(adata), pytest.raises(FloatingPointError, match=r"NaN or inf in 'velocity'.*nothing was written"):
        tl.syncot(adata, "time", "X_pca", **FIT)


# --- push, pull, trajectories, interpolate --------------------------------------------------------------------------


@pytest.fixture
def fitted(reference) -> ad.AnnData:
    return reference.copy()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda a: tl.push(a, "side", "up"), r"key='syncot': no sc_syncot result", id="push"),
        pytest.param(lambda a: tl.pull(a, "side", "up"), r"key='syncot': no sc_syncot result", id="pull"),
        pytest.param(lambda a: tl.trajectories(a), r"key='syncot': no sc_syncot result", id="trajectories"),
        pytest.param(lambda a: tl.interpolate(a, 0.5), r"key='syncot': no sc_syncot result", id="interpolate"),
    ],
)
def test_flow_tools_before_any_fit(call, match):
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=match):
        call(adata)


def _nan_basis_after_fit(a):
    a.obsm["X_pca"][0, 1] = np.nan


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda a: tl.push(a, "side", "left"),
            r"groups: \['left'\] not found in \.obs\['side'\] \(its labels: \[",
            id="p1",
        ),
        pytest.param(lambda a: tl.pull(a, "side", ["up", "x"]), r"groups: \['x'\] not found", id="pull-group"),
        pytest.param(lambda a: tl.push(a, "cluster", "up"), r"groupby='cluster': not in \.obs", id="push-groupby"),
        pytest.param(lambda a: tl.pull(a, "side", "up", time=1.5), r"time: expected one of the observed", id="time"),
        pytest.param(lambda a: tl.push(a, "side", "up", key="other"), r"key='other': no sc_syncot result", id="key"),
        pytest.param(
            lambda a: tl.trajectories(a, start_time=2.0),
            r"start_time: expected one of the observed time points before",
            id="t-last",
        ),
        pytest.param(lambda a: tl.trajectories(a, groupby="side", groups="left"), r"groups: \['left'\]", id="t-group"),
        pytest.param(lambda a: tl.trajectories(a, n_particles=0), r"n_particles: expected a positive", id="t-n"),
        pytest.param(
            lambda a: tl.trajectories(a, groups="left"), r"groups='left': given without groupby", id="t-nogroupby"
        ),
        pytest.param(lambda a: tl.interpolate(a, 2.5), r"time: expected a time within the observed range", id="interp"),
    ],
)
def test_flow_tools_refuse_bad_arguments(fitted, call, match):
    fitted.uns["other"] = {"what": "another tool's result"}
    with unchanged(fitted), pytest.raises(ValueError, match=match):
        call(fitted)


def test_flow_tools_refuse_a_basis_broken_after_the_fit(fitted):
    _nan_basis_after_fit(fitted)
    with unchanged(fitted), pytest.raises(ValueError, match=r"primary='X_pca': 1 cell has NaN or inf"):
        tl.push(fitted, "side", "up")


def test_push_and_pull_with_copy_leave_the_input_untouched(fitted):
    with unchanged(fitted):
        forward = tl.push(fitted, "side", "up", copy=True)
        backward = tl.pull(fitted, "side", "up", copy=True)
    for out, key in ((forward, "syncot_push_up"), (backward, "syncot_pull_up")):
        share = out.obs[key].to_numpy()
        assert np.all(np.isfinite(share)) and share.min() >= 0 and share.max() <= 1  # from the first / last time


# --- evaluate_heldout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heldout", "kwargs", "match"),
    [
        pytest.param(0.0, {}, r"heldout: expected one of the inner observed time points \[1\.0\]", id="first"),
        pytest.param(2.0, {}, r"heldout: expected one of the inner observed time points", id="last"),
        pytest.param(1.5, {}, r"heldout: expected one of the inner observed time points", id="nonexistent"),
        pytest.param(1.0, {"n_repeats": 0}, r"n_repeats: expected a positive integer", id="n_repeats"),
        pytest.param(1.0, {"n_repeats": float("nan")}, r"n_repeats: expected a positive integer", id="n_repeats-nan"),
        pytest.param(1.0, {"n_repeats": "2"}, r"n_repeats: expected a positive integer", id="n_repeats-text"),
        pytest.param(1.0, {"n_bin": 8}, r"syncot_kwargs: unknown parameter\(s\) \['n_bin'\]", id="unknown-kwarg"),
        pytest.param(1.0, {"n_bins": 1}, r"n_bins: expected an integer >= 2", id="bad-fit-setting"),
    ],
)
def test_evaluate_heldout_refuses_bad_input(heldout, kwargs, match):
    adata = course(times=(0.0, 1.0, 2.0, 3.0)) if heldout == 1.0 else course()
    args = {"n_time": 2, "max_iter": 20, "n_sample": 20, "n_repeats": 1, "n_bins": 8} | kwargs
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.evaluate_heldout(adata, "time", heldout, "X_pca", **args)


# --- gaussian_growth ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "kwargs", "match"),
    [
        pytest.param(None, {"groupby": "cluster"}, r"groupby='cluster': not in \.obs", id="missing-groupby"),
        pytest.param(None, {"basis": "X_umap"}, r"basis='X_umap': not in \.obsm", id="missing-basis"),
        pytest.param(_nan_primary, {}, r"basis='X_pca': 1 cell has NaN or inf", id="nan-basis"),
        pytest.param(_one_time_point, {}, r"time_key='time': expected at least two time points", id="one-time"),
        pytest.param(None, {"tau": -1.0}, r"tau: expected a positive float", id="tau-negative"),
        pytest.param(None, {"tau": np.nan}, r"tau: expected a positive float", id="tau-nan"),
        pytest.param(None, {"shrinkage": 1.0}, r"shrinkage: expected a number in \[0, 1\)", id="shrinkage"),
        pytest.param(None, {"min_cells": 1}, r"min_cells: expected an integer >= 2", id="min_cells"),
        pytest.param(None, {"masses": [1.0, -2.0, 1.0]}, r"masses: expected positive finite", id="masses"),
    ],
)
def test_gaussian_growth_refuses_bad_input(mutate, kwargs, match):
    adata = course()
    if mutate is not None:
        mutate(adata)
    args = {"time_key": "time", "groupby": "side", "basis": "X_pca"} | kwargs
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.gaussian_growth(adata, **args)


def test_gaussian_growth_with_a_single_cell_group_and_copy():
    adata = course()
    adata.obs.loc[adata.obs_names[0], "side"] = "alone"  # no covariance: left out of the default tau and the fit
    with unchanged(adata):
        out = tl.gaussian_growth(adata, "time", "side", "X_pca", copy=True)
    assert np.all(np.isfinite(out.obs["gaussian_growth"])) and np.isfinite(out.uns["gaussian_growth"]["tau"])


# --- pp -------------------------------------------------------------------------------------------------------------


def _nan_counts(a):
    a.X[0, 0] = np.nan


def _negative_layer(a):
    a.layers["counts"][1, 2] = -1.0


def _zero_counts(a):
    a.X[:] = 0.0


@pytest.mark.parametrize(
    ("mutate", "call", "match"),
    [
        pytest.param(_nan_counts, lambda a: pp.embed_rna(a, n_comps=3), r"X: expected finite counts", id="rna-nan"),
        pytest.param(
            _negative_layer, lambda a: pp.embed_rna(a, layer="counts"), r"counts: expected nonnegative", id="rna-neg"
        ),
        pytest.param(_zero_counts, lambda a: pp.embed_rna(a), r"X: expected counts, found only zeros", id="rna-zeros"),
        pytest.param(None, lambda a: pp.embed_rna(a, layer="raw"), r"layer: key 'raw' not in adata\.layers", id="l"),
        pytest.param(None, lambda a: pp.embed_rna(a, n_comps=0), r"n_comps: expected a positive integer", id="rna-0"),
        pytest.param(None, lambda a: pp.embed_atac(a, obsm="peaks"), r"obsm: key 'peaks' not in adata\.obsm", id="o"),
        pytest.param(None, lambda a: pp.embed_atac(a, n_comps=0), r"n_comps: expected a positive integer", id="lsi-0"),
        pytest.param(_zero_counts, lambda a: pp.embed_atac(a), r"X: expected counts, found only zeros", id="lsi-0s"),
        pytest.param(
            None, lambda a: pp.growth_prior(a, time_unit="day"), r"proliferation_genes: only 0 of \d+ genes", id="genes"
        ),
        pytest.param(
            None, lambda a: pp.growth_prior(a, organism="fly", time_unit="day"), r"organism: expected 'h", id="organism"
        ),
        pytest.param(None, lambda a: pp.growth_prior(a), r"time_unit: required", id="time-unit"),
    ],
)
def test_pp_tools_refuse_bad_input(mutate, call, match):
    adata = course()
    if mutate is not None:
        mutate(adata)
    with unchanged(adata), pytest.raises(ValueError, match=match):
        call(adata)


def test_embed_rna_refuses_an_empty_anndata():
    adata = course()[:0].copy()
    with unchanged(adata), pytest.raises(ValueError, match=r"X: expected at least 2 cells and 2 features"):
        pp.embed_rna(adata)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x: sp.csr_matrix(x.astype(np.int64)), id="sparse-int"),
        pytest.param(lambda x: x.astype(np.float32), id="float32"),
        pytest.param(lambda x: x.astype(np.int32), id="int"),
    ],
)
def test_embeddings_take_integer_float32_and_sparse_counts(convert):
    adata = course()
    adata.X = convert(adata.X)
    before = snapshot(adata)
    pp.embed_rna(adata, n_comps=3, key_added="X_rna")
    pp.embed_atac(adata, n_comps=3, key_added="X_lsi")
    assert_kept(adata, before)
    assert adata.obsm["X_rna"].shape == (3 * N, 3) and np.all(np.isfinite(adata.obsm["X_rna"]))
    assert adata.obsm["X_lsi"].shape == (3 * N, 3) and np.all(np.isfinite(adata.obsm["X_lsi"]))


def _views():
    first, second = course(seed=0), course(seed=1)
    second.obs_names = [f"other{i}" for i in range(second.n_obs)]
    return first, second


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"epsilon": 0.0}, r"epsilon: expected a positive float", id="epsilon"),
        pytest.param({"secondary_basis": "X_lsi"}, r"secondary_basis='X_lsi': not in \.obsm", id="missing-basis"),
        pytest.param({"max_cells": 10}, r"max_cells: 30 x 30 cells at time 0\.0 exceed 10", id="max_cells"),
    ],
)
def test_couple_views_refuses_bad_input(kwargs, match):
    first, second = _views()
    args = {"primary_basis": "X_pca", "secondary_basis": "X_sec", "time_key": "time"} | kwargs
    with unchanged(first), unchanged(second), pytest.raises(ValueError, match=match):
        pp.couple_views(first, second, **args)


def test_couple_views_reads_the_same_time_labels_once():
    first, second = _views()
    for view in (first, second):
        view.obs["day"] = [f"day{t:g}" for t in view.obs["time"]]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        pp.couple_views(first, second, "X_pca", "X_sec", "day")
    assert len([w for w in said if "read as times" in str(w.message)]) == 1  # it said so twice, once per view


def test_couple_views_refuses_unmatched_time_points_and_nan():
    first, second = _views()
    second.obs["time"] = second.obs["time"].replace(2.0, 4.0)
    with unchanged(first), unchanged(second), pytest.raises(ValueError, match=r"time point\(s\) \[2\.0, 4\.0\] are in"):
        pp.couple_views(first, second, "X_pca", "X_sec", "time")
    second = course(seed=1)
    _inf_secondary(second)
    with unchanged(first), pytest.raises(ValueError, match=r"secondary_basis='X_sec': 1 cell has NaN or inf"):
        pp.couple_views(first, second, "X_pca", "X_sec", "time")


_X = np.random.default_rng(5).normal(size=(40, 2))
_X_NAN = np.where(np.arange(80).reshape(40, 2) == 3, np.nan, _X)
_GRID = pp.primary_grid(_X, 8, 2)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: pp.fit_monge_map(_X_NAN, _X), r"x, y: expected finite coordinates", id="monge-nan"),
        pytest.param(lambda: pp.fit_monge_map(_X, _X[:30]), r"x, y: expected paired \(n, d\)", id="monge-pairs"),
        pytest.param(lambda: pp.secondary_support(_X_NAN, 5), r"y: expected finite secondary", id="support-nan"),
        pytest.param(lambda: pp.secondary_support(_X, 1), r"n_support: expected at least 2", id="support-1"),
        pytest.param(
            lambda: pp.kantorovich_kernel(_X_NAN, np.zeros(40, int), _GRID, n_support=2),
            r"x: expected finite coordinates",
            id="kernel-nan",
        ),
        pytest.param(
            lambda: pp.kantorovich_kernel(_X, np.zeros(30, int), _GRID), r"x, labels: expected \(n, 2\)", id="kernel-n"
        ),
        pytest.param(
            lambda: pp.interval_densities(_X_NAN, np.repeat([0.0, 1.0], 20), np.array([0.0, 1.0]), _GRID, np.ones(2)),
            r"coords: expected finite coordinates",
            id="densities-nan",
        ),
        pytest.param(lambda: pp.kde_density(_X_NAN, _GRID), r"coords: expected finite coordinates", id="kde-nan"),
        pytest.param(
            lambda: pp.secondary_predictability(_X, _X[:30]), r"x, y: expected \(n, d\) and \(n, dY\)", id="pred-n"
        ),
        pytest.param(lambda: pp.primary_grid(np.zeros((5, 4))), r"coords: expected an \(n_cells, d\) array", id="grid"),
        pytest.param(lambda: pp.primary_grid(np.ones((5, 2)), n_bins=1), r"shape: expected at least 2", id="bins"),
        pytest.param(
            lambda: pp.kde_density(np.ones((3, 2)), pp.primary_grid(np.eye(2)), bandwidth=-1.0),
            r"bandwidth: expected a positive finite number",
            id="kde-bandwidth",
        ),
        pytest.param(
            lambda: pp.kde_density(np.ones((0, 2)), pp.primary_grid(np.eye(2))), r"coords: expected at", id="k"
        ),
        pytest.param(lambda: pp.time_point_masses([0, 1], [5, 5], [1, np.inf]), r"masses: expected positive", id="m"),
    ],
)
def test_pp_adapters_refuse_bad_arrays(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- sc_syncot.gaussian ---------------------------------------------------------------------------------------------

EYE = np.eye(2)
NOT_PSD = np.array([[1.0, 2.0], [2.0, 1.0]])
SINGULAR = np.array([[1.0, 1.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: gaussian.uot(1, [0, 0], NOT_PSD, 1, [1, 0], EYE, 1.0), r"cov_a: not positive def", id="1"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], EYE, 1, [1, 0], SINGULAR, 1.0), r"cov_b: not positive", id="2"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], EYE, 1, [1, 0], np.eye(3), 1.0), r"cov_b: expected shape", id="3"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], EYE, 1, [1, 0, 0], EYE, 1.0), r"mean_b: dimension 3", id="4"),
        pytest.param(lambda: gaussian.uot(-1, [0, 0], EYE, 1, [1, 0], EYE, 1.0), r"mass_a: expected a finite", id="5"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], EYE, 0, [1, 0], EYE, 1.0), r"mass_b: expected a finite", id="6"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], EYE, 1, [1, 0], EYE, np.nan), r"tau: expected a finite", id="7"),
        pytest.param(
            lambda: gaussian.uot(1, [0, 0], [[1, 0.5], [0, 1]], 1, [1, 0], EYE, 1.0), r"cov_a: not symmetric", id="8"
        ),
        pytest.param(
            lambda: gaussian.entropic_uot(1, [0, 0], EYE, 1, [1, 0], EYE, 1.0, 0.0), r"eps: expected a finite", id="9"
        ),
        pytest.param(
            lambda: gaussian.group_growth(
                [1, -1], np.zeros((2, 2)), [EYE, EYE], [1, 1], np.ones((2, 2)), [EYE, EYE], 1
            ),
            r"masses0\[1\]: expected a finite number > 0",
            id="10",
        ),
        pytest.param(
            lambda: gaussian.group_growth([1, 1], np.zeros((2, 2)), [EYE], [1, 1], np.ones((2, 2)), [EYE, EYE], 1),
            r"means0, covs0: expected 2 groups",
            id="11",
        ),
        pytest.param(lambda: gaussian.GaussianMeasure(1.0, [0, np.nan], EYE), r"mean: contains non-finite", id="12"),
        pytest.param(lambda: gaussian.gaussian_kl([0, 0], EYE, [0, 0], SINGULAR), r"cov1: not positive def", id="13"),
        pytest.param(lambda: gaussian.gaussian_kl([0, 0], EYE, [0, 0, 0], EYE), r"mean1: dimension 3", id="14"),
        pytest.param(lambda: gaussian.optimal_mass(-1.0, 1.0, 0.1, 1.0), r"mass_a: expected a finite", id="15"),
        pytest.param(
            lambda: gaussian.udc(EYE, EYE, 3, [(1, [0, 0], EYE), (1, [0, 0, 0], np.eye(3))], tau=1.0),
            r"references\[1\]: dimension 3 does not match",
            id="16",
        ),
        pytest.param(
            lambda: gaussian.udc(EYE, EYE, 3, [(1, [0, 0], EYE), (-1, [0, 0], EYE)], tau=1.0),
            r"references\[1\] mass: expected a finite number > 0",
            id="17",
        ),
    ],
)
def test_gaussian_functions_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the sc-syncot command ------------------------------------------------------------------------------------------

RUN = ["--time-key", "time", "--primary", "X_pca", "--n-bins", "8", "--n-time", "2", "--max-iter", "20"]


@pytest.fixture
def h5ad(tmp_path):
    path = tmp_path / "cells.h5ad"
    course().write_h5ad(path)
    return path


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _no_solve(monkeypatch):
    def solve(*args, **kwargs):
        raise AssertionError("the fit ran although the command could not succeed")

    monkeypatch.setattr(tl, "syncot", solve)


def test_cli_missing_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.h5ad"), *RUN]) == 2
    assert "input: no such file" in capsys.readouterr().err


def test_cli_truncated_h5ad(h5ad, capsys):
    data = h5ad.read_bytes()
    h5ad.write_bytes(data[: len(data) // 3])
    assert main(["run", str(h5ad), *RUN]) == 2
    assert f"input: cannot read {str(h5ad)!r} as an AnnData .h5ad file" in capsys.readouterr().err
    assert not (h5ad.parent / "cells_syncot.h5ad").exists()


def test_cli_file_of_another_format(tmp_path, capsys):
    table = tmp_path / "cells.csv"
    table.write_text("cell,time\nc1,0\n")
    assert main(["run", str(table), *RUN]) == 2
    assert "input: cannot read" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv"]


def test_cli_missing_time_key_is_a_usage_error(h5ad, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", str(h5ad), "--primary", "X_pca"])
    assert stop.value.code == 2
    assert "the following arguments are required: --time-key" in capsys.readouterr().err


def test_cli_bad_keys_and_settings_write_nothing(h5ad, capsys):
    before = h5ad.read_bytes()
    assert main(["run", str(h5ad), *RUN, "--primary", "X_umap"]) == 2
    assert "primary='X_umap': not in .obsm" in capsys.readouterr().err
    assert main(["run", str(h5ad), *RUN, "--n-bins", "0"]) == 2
    assert "n_bins: expected an integer >= 2" in capsys.readouterr().err
    assert sorted(p.name for p in h5ad.parent.iterdir()) == ["cells.h5ad"] and h5ad.read_bytes() == before


def test_cli_output_directory_that_does_not_exist(h5ad, monkeypatch, capsys):
    _no_solve(monkeypatch)
    assert main(["run", str(h5ad), *RUN, "-o", str(h5ad.parent / "missing" / "out.h5ad")]) == 2
    assert "--output: the directory" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user whom permissions bind")
def test_cli_read_only_output_directory(h5ad, tmp_path, monkeypatch, capsys):
    _no_solve(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["run", str(h5ad), *RUN, "-o", str(locked / "out.h5ad")]) == 2
    finally:
        locked.chmod(0o755)
    assert "--output: cannot write in the directory" in capsys.readouterr().err


def test_cli_unwritable_output_directory_fails_before_the_fit(h5ad, monkeypatch, capsys):
    # the same refusal as a read-only folder, for runs as root (whom permissions do not bind)
    _no_solve(monkeypatch)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main(["run", str(h5ad), *RUN, "-o", str(h5ad.parent / "out.h5ad")]) == 2
    assert "--output: cannot write in the directory" in capsys.readouterr().err


def test_cli_output_onto_the_input(h5ad, capsys):
    before = h5ad.read_bytes()
    assert main(["run", str(h5ad), *RUN[:2], "--primary", "X_umap", "-o", str(h5ad)]) == 2  # a failed run
    assert h5ad.read_bytes() == before and _leftovers(h5ad.parent) == []
    capsys.readouterr()
    assert main(["run", str(h5ad), *RUN, "--no-progress", "-o", str(h5ad)]) == 0
    out = ad.read_h5ad(h5ad)
    assert np.all(np.isfinite(out.obsm["syncot_velocity"])) and out.uns["note"]["source"] == "synthetic"
    assert _leftovers(h5ad.parent) == []


def test_cli_failed_write_keeps_the_input(h5ad, monkeypatch, capsys):
    before = h5ad.read_bytes()

    def broken_write(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken_write)
    assert main(["run", str(h5ad), *RUN, "-o", str(h5ad)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert h5ad.read_bytes() == before and _leftovers(h5ad.parent) == []


def test_cli_diverging_solve_writes_nothing(h5ad, monkeypatch, capsys):
    _diverging(monkeypatch)
    assert main(["run", str(h5ad), *RUN]) == 1
    assert "non-finite" in capsys.readouterr().err
    assert sorted(p.name for p in h5ad.parent.iterdir()) == ["cells.h5ad"]


def test_cli_interrupted_run_leaves_no_file(h5ad, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tl, "syncot", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["run", str(h5ad), *RUN])
    assert sorted(p.name for p in h5ad.parent.iterdir()) == ["cells.h5ad"]
