"""Names that would overwrite data or make a file unreadable, signals, and inputs that could be read the wrong way.

Each refusal must name the argument or key and leave the AnnData / MuData / files as they were; each input that is
accepted must be read as the user meant it (checked on the result, not only on the absence of an error). The fits
are the tiny ones of ``test_bad_input_entry_points`` (8 x 8 grids, a few dozen iterations).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from sc_syncot import gaussian, pp, tl
from sc_syncot.cli import main

from .test_bad_input_entry_points import FIT, RUN, N, course, snapshot, unchanged

BAD_NAMES = [
    pytest.param("a/b", r"key_added='a/b': '/' cannot be in a key of an .h5ad", id="slash"),
    pytest.param("", r"key_added: expected a non-empty string", id="empty"),
    pytest.param(None, r"key_added: expected a non-empty string", id="none"),
    pytest.param(3, r"key_added: expected a non-empty string", id="number"),
]


@pytest.fixture(scope="module")
def fitted_course() -> ad.AnnData:
    adata = course()
    tl.syncot(adata, "time", "X_pca", **FIT)
    return adata


@pytest.fixture
def fitted(fitted_course) -> ad.AnnData:
    return fitted_course.copy()


# --- key_added: names an .h5ad file cannot hold ----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "match"), BAD_NAMES)
def test_syncot_refuses_key_added_that_h5ad_cannot_hold(key, match):
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.syncot(adata, "time", "X_pca", key_added=key, **FIT)


@pytest.mark.parametrize(("key", "match"), BAD_NAMES)
@pytest.mark.parametrize(
    ("call", "default"),
    [
        pytest.param(lambda a, k: tl.push(a, "side", "up", key_added=k), True, id="push"),
        pytest.param(lambda a, k: tl.pull(a, "side", "up", key_added=k), True, id="pull"),
        pytest.param(lambda a, k: tl.trajectories(a, n_particles=3, key_added=k), True, id="trajectories"),
        pytest.param(lambda a, k: tl.gaussian_growth(a, "time", "side", "X_pca", key_added=k), False, id="gauss"),
        pytest.param(lambda a, k: pp.embed_rna(a, n_comps=2, key_added=k), False, id="embed_rna"),
        pytest.param(lambda a, k: pp.embed_atac(a, n_comps=2, key_added=k), False, id="embed_atac"),
    ],
)
def test_every_writer_refuses_key_added_that_h5ad_cannot_hold(fitted, call, default, key, match):
    if key is None and default:  # None names the default column; it must then be written
        before = set(fitted.obs) | set(fitted.uns)
        call(fitted, key)
        assert len(set(fitted.obs) | set(fitted.uns)) == len(before) + 1
        return
    with unchanged(fitted), pytest.raises(ValueError, match=match):
        call(fitted, key)


def test_evaluate_heldout_and_couple_views_refuse_bad_names():
    adata = course(times=(0.0, 1.0, 2.0, 3.0))
    with unchanged(adata), pytest.raises(ValueError, match=r"key_added='x/y': '/'"):
        tl.evaluate_heldout(adata, "time", 1.0, "X_pca", n_bins=8, n_time=2, max_iter=20, key_added="x/y")
    other = course(seed=1)
    with unchanged(adata), pytest.raises(ValueError, match=r"key_added: expected a non-empty string"):
        pp.couple_views(adata, other, "X_pca", "X_sec", "time", key_added="")


def test_cli_refuses_key_added_that_h5ad_cannot_hold(tmp_path, capsys):
    path = tmp_path / "cells.h5ad"
    course().write_h5ad(path)
    before = path.read_bytes()
    assert main(["run", str(path), *RUN, "--key-added", "fit/1"]) == 2
    assert "key_added='fit/1': '/' cannot be in a key" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"] and path.read_bytes() == before


def test_default_names_from_group_labels_stay_valid_in_h5ad(fitted, tmp_path):
    fitted.obs["kind"] = np.where(fitted.obs["side"] == "up", "CD4/CD8", "other")
    tl.push(fitted, "kind", "CD4/CD8", 0.0)
    assert "syncot_push_CD4_CD8" in fitted.obs
    fitted.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(back.obs["syncot_push_CD4_CD8"], fitted.obs["syncot_push_CD4_CD8"])


# --- key_added: names that would replace the user's data -------------------------------------------------------------


def _own_velocity_basis(a):
    a.obsm["X_velocity"] = a.obsm["X_pca"] + 1.0


@pytest.mark.parametrize(
    ("prepare", "args", "kwargs", "match"),
    [
        pytest.param(
            _own_velocity_basis,
            ("time", "X_velocity"),
            {"key_added": "X"},
            r"key_added='X': would overwrite .obsm\['X_velocity'\], the primary basis primary='X_velocity'",
            id="primary",
        ),
        pytest.param(
            lambda a: a.obsm.__setitem__("fit_velocity_secondary", a.obsm["X_sec"]),
            ("time", "X_pca", "fit_velocity_secondary"),
            {"key_added": "fit", "coupling": "monge"},
            r"would overwrite .obsm\['fit_velocity_secondary'\], the secondary basis",
            id="secondary",
        ),
        pytest.param(
            lambda a: a.obs.__setitem__("s_growth", a.obs["time"].copy()),
            ("s_growth", "X_pca"),
            {"key_added": "s"},
            r"key_added='s': would overwrite .obs\['s_growth'\], time_key='s_growth'",
            id="time-column",
        ),
        pytest.param(
            lambda a: a.obs.__setitem__("g_growth", 0.1),
            ("time", "X_pca"),
            {"key_added": "g", "growth_key": "g_growth", "masses": "growth_prior"},
            r"would overwrite .obs\['g_growth'\], the growth rates growth_key='g_growth'",
            id="growth-column",
        ),
        pytest.param(
            lambda a: a.uns.__setitem__("neighbors", {"params": {"n_neighbors": 15}}),
            ("time", "X_pca"),
            {"key_added": "neighbors"},
            r"key_added='neighbors': would overwrite .uns\['neighbors'\], which holds data of another origin",
            id="uns-of-another-tool",
        ),
        pytest.param(
            lambda a: a.obs.__setitem__("velo_growth", 1.0),
            ("time", "X_pca"),
            {"key_added": "velo"},
            r"would overwrite .obs\['velo_growth'\], which holds data of another origin",
            id="obs-of-another-tool",
        ),
    ],
)
def test_syncot_refuses_key_added_that_would_replace_data(prepare, args, kwargs, match):
    adata = course()
    prepare(adata)
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.syncot(adata, *args, **FIT | kwargs)


def test_syncot_in_a_mudata_refuses_a_key_held_by_other_data():
    md = pytest.importorskip("mudata")
    rna = course()
    mdata = md.MuData({"rna": rna})
    mdata.uns["fit"] = {"user": "notes"}
    with unchanged(mdata), pytest.raises(ValueError, match=r"would overwrite .uns\['fit'\], which holds data"):
        tl.syncot(mdata, "rna:time", "rna:X_pca", key_added="fit", **FIT)


def test_a_repeated_fit_replaces_only_its_own_results(fitted):
    before = snapshot(fitted)
    tl.syncot(fitted, "time", "X_pca", **FIT | {"n_time": 3})
    assert fitted.uns["syncot"]["params"]["n_time"] == 3
    assert set(fitted.obsm) == set(before["obsm"]) and set(fitted.uns) == set(before["uns"])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda a: tl.push(a, "side", "up", key_added="side"),
            r"key_added='side': would overwrite .obs\['side'\], the groups groupby='side'",
            id="push-groupby",
        ),
        pytest.param(
            lambda a: tl.pull(a, "side", "up", key_added="time"),
            r"key_added='time': would overwrite .obs\['time'\], the fit's time_key='time'",
            id="pull-time",
        ),
        pytest.param(
            lambda a: tl.push(a, "side", "up", key_added="syncot_growth"),
            r"would overwrite .obs\['syncot_growth'\], the growth rates of the fit 'syncot'",
            id="push-fit-column",
        ),
        pytest.param(
            lambda a: tl.trajectories(a, n_particles=3, key_added="syncot"),
            r"key_added='syncot': would overwrite .uns\['syncot'\], an sc_syncot result",
            id="trajectories-onto-the-fit",
        ),
        pytest.param(
            lambda a: tl.gaussian_growth(a, "time", "side", "X_pca", key_added="side"),
            r"key_added='side': would overwrite .obs\['side'\], the groups groupby='side'",
            id="gaussian-growth-groupby",
        ),
        pytest.param(
            lambda a: tl.gaussian_growth(a, "time", "side", "X_pca", key_added="syncot"),
            r"would overwrite .uns\['syncot'\], an sc_syncot result",
            id="gaussian-growth-onto-the-fit",
        ),
        pytest.param(
            lambda a: tl.evaluate_heldout(a, "time", 1.0, "X_pca", n_bins=8, n_time=2, key_added="syncot"),
            r"would overwrite .uns\['syncot'\], an sc_syncot result",
            id="evaluate-onto-the-fit",
        ),
    ],
)
def test_tools_refuse_key_added_that_would_replace_their_inputs_or_a_fit(fitted, call, match):
    with unchanged(fitted), pytest.raises(ValueError, match=match):
        call(fitted)


def test_embed_atac_refuses_to_replace_its_counts():
    adata = course()
    adata.obsm["peaks"] = np.random.default_rng(0).poisson(1.0, (adata.n_obs, 20))
    with unchanged(adata), pytest.raises(ValueError, match=r"would overwrite .obsm\['peaks'\], the counts"):
        pp.embed_atac(adata, obsm="peaks", n_comps=2, key_added="peaks")


def test_couple_views_refuses_to_replace_the_primary_basis():
    adata, other = course(), course(seed=1)
    with unchanged(adata), pytest.raises(ValueError, match=r"would overwrite .obsm\['X_pca'\], the primary view's"):
        pp.couple_views(adata, other, "X_pca", "X_sec", "time", key_added="X_pca")


# --- inputs are not modified in place --------------------------------------------------------------------------------


def _same_arrays(after, before) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))


def test_gaussian_functions_leave_their_arrays_as_given():
    rng = np.random.default_rng(0)
    root = rng.normal(size=(2, 3, 3))
    covs = root @ root.transpose(0, 2, 1) + np.eye(3)
    covs[0, 0, 1] += 1e-12  # asymmetric by rounding: accepted, and symmetrized on a copy only
    means, masses = rng.normal(size=(2, 3)), np.array([1.0, 2.0])
    given = [covs, means, masses, covs[0], means[0]]
    kept = [v.copy() for v in given]
    gaussian.group_growth(masses, means, covs, masses[::-1].copy(), means + 1, covs[::-1].copy(), 1.0)
    gaussian.uot(1.0, means[0], covs[0], 2.0, means[1], covs[1], 1.0)
    gaussian.entropic_uot(1.0, means[0], covs[0], 2.0, means[1], covs[1], 1.0, 0.5)
    gaussian.gaussian_kl(means[0], covs[0], means[1], covs[1])
    gaussian.GaussianMeasure(1.0, means[0], covs[0]).density(means)
    assert _same_arrays(given, kept)


def test_adapters_and_solver_leave_their_arrays_as_given():
    from sc_syncot.solvers import SyncOTProblem, solve

    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(60, 2)), np.repeat([0.0, 1.0], 30)
    grid = pp.primary_grid(x, 8, 2)
    dens = pp.interval_densities(x, t, np.array([0.0, 1.0]), grid, np.ones(2))
    given = [x, t, dens]
    kept = [v.copy() for v in given]
    pp.kde_density(x, grid)
    pp.fit_monge_map(x, x**2)
    pp.secondary_predictability(x, x**2)
    pp.time_point_masses(np.array([0.0, 1.0]), np.array([30, 30]), "counts")
    problem = SyncOTProblem(grid, dens[0][None], dens[1][None], delta=1.0)
    solve(problem, max_iter=20, progress=False)
    assert _same_arrays(given, kept)


# --- signals: no partial file, whatever ends the run -----------------------------------------------------------------


def test_cli_sigterm_in_process_leaves_no_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cells.h5ad"
    course().write_h5ad(path)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(tl, "syncot", terminated)
    assert main(["run", str(path), *RUN]) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM; no output was written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the caller's again


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_cli_sigterm_from_outside_leaves_no_file(tmp_path):
    """As a batch scheduler ends a job at its time limit: SIGTERM to a run that is fitting."""
    path = tmp_path / "cells.h5ad"
    course().write_h5ad(path)
    script = (  # a stand-in tl that sleeps as a long fit would (and spares the import of torch and scanpy)
        "import sys, time, types\n"
        "tl = types.ModuleType('sc_syncot.tl')\n"
        "tl.syncot = lambda *a, **k: time.sleep(60)\n"
        "sys.modules['sc_syncot.tl'] = tl\n"
        "from sc_syncot.cli import main\n"
        f"sys.exit(main(['run', {str(path)!r}, '--time-key', 'time', '--primary', 'X_pca']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".")] and time.time() < deadline:
        time.sleep(0.1)  # the temporary output appears once the run has started
    assert time.time() < deadline, "the run never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"]


# --- files that are HDF5 but not AnnData ------------------------------------------------------------------------------


def _plain_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(5)


def _empty_hdf5(path: Path) -> None:
    with h5py.File(path, "w"):
        pass


def _anndata_tag_without_groups(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f["obs"] = np.arange(3)


@pytest.mark.parametrize("write", [_plain_hdf5, _empty_hdf5, _anndata_tag_without_groups])
def test_cli_hdf5_that_is_not_an_anndata(tmp_path, capsys, write):
    path = tmp_path / "cells.h5ad"
    write(path)
    before = path.read_bytes()
    assert main(["run", str(path), *RUN]) == 2
    assert f"input: cannot read {str(path)!r} as an AnnData .h5ad file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"] and path.read_bytes() == before


# --- times: float noise and labels -----------------------------------------------------------------------------------


def _float32_noise(a):
    t = a.obs["time"].to_numpy().copy()
    t[N : N + N // 2] = 0.9999999  # half of time point 1, as float32 arithmetic leaves it
    a.obs["time"] = t


def test_times_that_differ_by_float_noise_are_one_time_point():
    adata = course()
    _float32_noise(adata)
    with pytest.warns(UserWarning, match=r"time_key='time': times that differ by less than 1e-06.*0\.9999999"):
        tl.syncot(adata, "time", "X_pca", **FIT)
    np.testing.assert_array_equal(adata.uns["syncot"]["time_points"], [0.0, 1.0, 2.0])
    assert np.all(np.isfinite(adata.obs["syncot_growth"]))


@pytest.mark.filterwarnings("ignore:time_key='time'. times that differ:UserWarning")
def test_heldout_with_float_noise_holds_out_the_whole_time_point():
    adata = course(times=(0.0, 1.0, 2.0, 3.0))
    _float32_noise(adata)
    tl.evaluate_heldout(adata, "time", 1.0, "X_pca", n_bins=8, n_time=2, max_iter=20, n_sample=20, n_repeats=1)
    res = adata.uns["syncot_heldout"]
    # held in: 0, 2 and 3 (not the other half of time point 1), so 1.0 sits half-way through [0, 2]
    assert res["heldout"] == 1.0 and res["fractions"]["physical"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(lambda t: pd.Categorical([f"day{t:g}" for t in t]), id="unordered-categorical"),
        pytest.param(lambda t: np.array([f"day{t:g}" for t in t], dtype=object), id="text"),
        pytest.param(lambda t: pd.Categorical([f"{t:g}h" for t in t]), id="hours"),
    ],
)
def test_labels_holding_numbers_are_read_as_those_numbers(labels):
    adata = course(times=(0.0, 2.0, 3.0))
    adata.obs["day"] = labels(adata.obs["time"].to_numpy())
    with pytest.warns(UserWarning, match=r"time_key='day': text labels .* read as times \[0\.0, 2\.0, 3\.0\]"):
        tl.syncot(adata, "day", "X_pca", **FIT)
    np.testing.assert_array_equal(adata.uns["syncot"]["time_points"], [0.0, 2.0, 3.0])


@pytest.mark.parametrize("ordered", [False, True], ids=["text", "ordered"])
def test_labels_in_several_units_are_read_in_one(ordered):
    """ "8h" beside "1d": read as 8 and 1, the 8 h cells came last (they had only a warning)."""
    from sc_syncot.pp.growth import infer_time_unit

    adata = course(times=(0.0, 1 / 3, 1.0, 3.0))
    names = {0.0: "0", 1 / 3: "8h", 1.0: "1d", 3.0: "3 days"}
    labels = adata.obs["time"].map(names)
    adata.obs["t"] = pd.Categorical(labels, categories=list(names.values()), ordered=True) if ordered else labels
    with pytest.warns(UserWarning, match=r"read as times \[0\.0, 0\.3333, 1\.0, 3\.0\], .* in days \(its labels"):
        tl.syncot(adata, "t", "X_pca", **FIT)
    np.testing.assert_allclose(adata.uns["syncot"]["time_points"], [0.0, 1 / 3, 1.0, 3.0], rtol=1e-12)
    assert infer_time_unit(adata, "t")[0] == "day"


def test_labels_in_one_unit_or_none_keep_their_numbers():
    """Only labels naming different units are converted: words that read as units in every label change nothing."""
    from sc_syncot.pp._time_labels import label_times

    assert label_times(["hESC_d0", "hESC_d2", "hESC_d7"], "t") == ([0.0, 2.0, 7.0], None)  # 'h' + 'd' in each
    assert label_times(["Day1_12h", "Day2_0h", "Day3_12h"], "t") == ([1.0, 2.0, 3.0], None)
    assert label_times(["E8.5", "E9.5", "P0"], "t") == ([8.5, 9.5, 0.0], None)
    # converted in whole minutes per unit: exact, so 60 min and 1 h are the same time (refused as such by times)
    assert label_times(["0 min", "30 min", "1 h"], "t") == ([0.0, 30.0, 60.0], "minute")
    assert label_times(["0", "60 min", "2 h"], "t") == ([0.0, 1.0, 2.0], "hour")
    assert label_times(["12h", "1d"], "time_h") == ([12.0, 24.0], "hour")  # the column's name sets the unit


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ({0.0: "2", 1.0: "8h", 2.0: "1d"}, r"its labels name several units \(\['day', 'hour'\]\), and \['2'\] name no"),
        ({0.0: "0h", 1.0: "24h", 2.0: "1d"}, r"different labels hold the same number"),
    ],
    ids=["no-unit", "same-time"],
)
def test_labels_in_several_units_that_cannot_be_read_are_refused(names, match):
    adata = course()
    adata.obs["t"] = adata.obs["time"].map(names)
    with unchanged(adata), pytest.raises(ValueError, match=r"time_key='t': .*" + match):
        tl.syncot(adata, "t", "X_pca", **FIT)


def test_day_labels_through_the_command_line(tmp_path, capsys):
    adata = course()
    adata.obs["day"] = [f"day{t:g}" for t in adata.obs["time"]]  # written as text, read back unordered
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    args = ["--time-key", "day", "--primary", "X_pca", "--n-bins", "8", "--n-time", "2", "--max-iter", "20"]
    with pytest.warns(UserWarning, match=r"text labels \['day0', 'day1', 'day2'\] read as times"):
        assert main(["run", str(path), *args, "--no-progress"]) == 0
    out = ad.read_h5ad(tmp_path / "cells_syncot.h5ad")
    np.testing.assert_array_equal(out.uns["syncot"]["time_points"], [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        pytest.param(["early", "mid", "late"], r"labels \['early', 'late', 'mid'\] hold no number", id="no-number"),
        pytest.param(["d1a", "d1b", "d2"], r"different labels hold the same number", id="same-number"),
    ],
)
def test_labels_that_name_no_times_are_refused(labels, match):
    adata = course()
    adata.obs["stage"] = pd.Categorical(np.repeat(labels, N))
    with unchanged(adata), pytest.raises(ValueError, match=r"time_key='stage': text labels .*" + match[:20]):
        tl.syncot(adata, "stage", "X_pca", **FIT)


# --- arguments given as numpy scalars, text or in the wrong shape -----------------------------------------------------


def test_numpy_scalars_as_groups_and_times(fitted):
    label = fitted.obs["side"].unique()[0]  # a numpy str_ or a plain str, as pandas gives it
    tl.push(fitted, "side", np.str_(label), np.float32(0.0), key_added="a")
    tl.pull(fitted, "side", np.array([label])[0], np.float64(2.0), key_added="b")
    fitted.obs["code"] = (fitted.obs["side"] == "up").astype(np.int64)
    tl.push(fitted, "code", np.int64(1), key_added="c")
    tl.trajectories(fitted, start_time=np.float32(1.0), groupby="code", groups=np.int64(1), n_particles=4)
    assert fitted.obs["a"].notna().any() and fitted.obs["b"].notna().any() and fitted.obs["c"].notna().any()
    np.testing.assert_array_equal(fitted.obs["c"], fitted.obs["a"])  # the same cells, named two ways


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda a: tl.trajectories(a, groupby="side"), r"groupby='side': given without groups", id="groupby-alone"
        ),
        pytest.param(lambda a: tl.push(a, "side", None), r"groups: expected a label", id="groups-none"),
        pytest.param(lambda a: tl.push(a, "side", []), r"groups: expected at least one label", id="groups-empty"),
        pytest.param(lambda a: tl.push(a, "side", "up", time="0"), r"time: expected a number", id="time-text"),
        pytest.param(lambda a: tl.push(a, "side", "up", time=0.5), r"time: expected one of the observed", id="t"),
    ],
)
def test_flow_tools_name_the_argument(fitted, call, match):
    with unchanged(fitted), pytest.raises(ValueError, match=match):
        call(fitted)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: gaussian.uot("1", [0, 0], np.eye(2), 1, [1, 0], np.eye(2), 1.0), r"mass_a: expected n"),
        pytest.param(lambda: gaussian.uot(1, ["0", "0"], np.eye(2), 1, [1, 0], np.eye(2), 1.0), r"mean_a: expected"),
        pytest.param(lambda: gaussian.uot(True, [0, 0], np.eye(2), 1, [1, 0], np.eye(2), 1.0), r"mass_a: expected"),
        pytest.param(lambda: gaussian.uot(1, [0, 0], np.eye(2), 1, [1, 0], np.eye(2), "2"), r"tau: expected numbers"),
        pytest.param(lambda: gaussian.gaussian_kl([0, 0], [["1", 0], [0, 1]], [0, 0], np.eye(2)), r"cov0: expected"),
        pytest.param(
            lambda: gaussian.group_growth(["1"], [[0.0]], [[[1.0]]], [1], [[0.0]], [[[1.0]]], 1.0),
            r"masses0: expected numbers",
        ),
    ],
)
def test_gaussian_refuses_text_where_numbers_are_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"tau": "1"}, r"tau: expected a number, got '1'", id="tau"),
        pytest.param({"shrinkage": "0.1"}, r"shrinkage: expected a number, got '0.1'", id="shrinkage"),
    ],
)
def test_gaussian_growth_refuses_text_where_numbers_are_expected(kwargs, match):
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.gaussian_growth(adata, "time", "side", "X_pca", **kwargs)


def test_n_bins_of_the_wrong_length_names_n_bins():
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=r"n_bins: expected one count or 2 \(one per axis"):
        tl.syncot(adata, "time", "X_pca", **FIT | {"n_bins": (8, 8, 8)})


# --- every argument acts or is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        pytest.param((), {"weight": 5.0}, r"weight=5.0: act on a secondary basis, and secondary=None", id="weight"),
        pytest.param((), {"epsilon": 0.5, "n_support": 20}, r"n_support=20, epsilon=0.5: act on a secondary", id="e"),
        pytest.param((), {"secondary_delta": 0.7}, r"secondary_delta=0.7: act on a secondary", id="sec-delta"),
        pytest.param((), {"coupling": "monge"}, r"coupling='monge': act on a secondary", id="coupling"),
        pytest.param(
            ("X_sec",),
            {"coupling": "monge", "epsilon": 0.1, "sinkhorn_sweeps": 0},
            r"sinkhorn_sweeps=0, epsilon=0.1: act on coupling='kantorovich' only",
            id="monge-kantorovich-options",
        ),
        pytest.param(
            (),
            {"n_nodes": 300, "geometry": "grid"},
            r"n_nodes=300: graph options, and this fit is on the grid "
            r"\(geometry='grid'\)",
            id="n_nodes",
        ),  # fmt: skip
        pytest.param(
            (),
            {"n_neighbors": 5},
            r"n_neighbors=5 \(the graph's\) and n_bins=8 \(the grid's\) given together",
            id="n_neighbors",
        ),  # fmt: skip
        pytest.param((), {"growth_key": "nope"}, r"growth_key='nope': read with masses='growth_prior' or", id="gk"),
    ],
)
def test_syncot_refuses_options_this_fit_would_not_use(args, kwargs, match):
    adata = course()
    with unchanged(adata), pytest.raises(ValueError, match=match):
        tl.syncot(adata, "time", "X_pca", *args, **FIT | kwargs)


def test_a_fit_stores_copies_of_the_arrays_it_was_given():
    adata, bandwidth, n_bins = course(), np.array([0.3, 0.4]), [8, 8]
    tl.syncot(adata, "time", "X_pca", **FIT | {"bandwidth": bandwidth, "n_bins": n_bins})
    bandwidth[0], n_bins[0] = 9.0, 99
    params = adata.uns["syncot"]["params"]
    np.testing.assert_array_equal(params["bandwidth"], [0.3, 0.4])
    np.testing.assert_array_equal(params["n_bins"], [8, 8])


def test_pp_refuses_arguments_that_would_not_act():
    with pytest.raises(ValueError, match=r"growth_rates, cell_times: read with masses='growth_prior' only"):
        pp.time_point_masses(np.array([0.0, 1.0]), np.array([5, 5]), "counts", np.zeros(10), np.repeat([0.0, 1.0], 5))
    adata = course()
    adata.obsm["peaks"] = np.random.default_rng(0).poisson(1.0, (adata.n_obs, 20))
    with unchanged(adata), pytest.raises(ValueError, match=r"layer='counts', obsm='peaks': the counts come from one"):
        pp.embed_atac(adata, layer="counts", obsm="peaks", n_comps=2)
    with unchanged(adata), pytest.raises(ValueError, match=r"organism='mouse': picks bundled gene sets"):
        pp.growth_prior(adata, "mouse", proliferation_genes=["gene0"], apoptosis_genes=["gene1"], time_unit="day")
    with unchanged(adata), pytest.raises(ValueError, match=r"proliferation_genes: only 0 of 0 genes"):
        pp.growth_prior(adata, proliferation_genes=[], time_unit="day")  # an empty set is the user's, not the bundled


def test_more_components_than_the_matrix_has_is_said():
    adata = course(n=5)  # 15 cells x 12 genes
    with pytest.warns(UserWarning, match=r"embed_rna: n_comps asks for 20 components, the matrix has at most 11"):
        pp.embed_rna(adata, n_comps=20, normalized=False)
    assert adata.obsm["X_pca"].shape[1] == 11


def test_solver_refuses_options_that_cannot_act():
    from sc_syncot.solvers import KantorovichSecondary, SyncOTProblem, solve
    from sc_syncot.solvers.graph import Graph

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    grid = pp.primary_grid(x, 8, 2)
    dens = pp.interval_densities(x, np.repeat([0.0, 1.0], 20), np.array([0.0, 1.0]), grid, np.ones(2))
    plain = SyncOTProblem(grid, dens[0][None], dens[1][None], delta=1.0)
    for option, match in (
        ({"method": "pd3o"}, r"method='pd3o': options of Kantorovich secondaries, and this problem has none"),
        ({"sinkhorn_tol": -1.0}, r"sinkhorn_tol=-1.0: options of Kantorovich"),
        ({"sinkhorn_sweeps": "x"}, r"sinkhorn_sweeps='x': options of Kantorovich"),
    ):
        with pytest.raises(ValueError, match=match):
            solve(plain, max_iter=5, **option)
    graph = Graph(x, 2, n_neighbors=4)
    masses = np.full(40, 1 / 40)
    with pytest.raises(ValueError, match=r"compile: expected True, False or 'auto', got 'bogus'"):
        solve(SyncOTProblem(graph, masses, masses, delta=1.0), compile="bogus", max_iter=5)
    kernel = np.full((64, 3), 1 / 3)
    kant = SyncOTProblem(grid, dens[0], dens[1], delta=1.0, secondaries=[KantorovichSecondary(kernel, x[:3])])
    with pytest.raises(ValueError, match=r"relaxation=1.5: Chambolle-Pock's options, and method='pd3o'"):
        solve(kant, method="pd3o", relaxation=1.5, max_iter=5)
    with pytest.warns(UserWarning, match=r"compile=True: fits with Kantorovich secondaries run eagerly"):
        assert not solve(kant, compile=True, max_iter=5).compiled


def test_a_sparse_kernel_is_not_shared_with_the_caller():
    import scipy.sparse as sparse

    from sc_syncot.solvers import KantorovichSecondary

    kernel = sparse.csr_matrix(np.eye(3))
    sec = KantorovichSecondary(kernel, np.eye(3))
    kernel.data[:] = 7.0
    np.testing.assert_array_equal(sparse.csr_matrix(sec.kernel).toarray(), np.eye(3))


def test_plots_refuse_options_their_figure_does_not_use(fitted):
    from sc_syncot import pl

    with pytest.raises(ValueError, match=r"size=3.0: sizes the cells of per_cell=True"):
        pl.growth(fitted, size=3.0, show=False)
    with pytest.raises(ValueError, match=r"min_density=0.1: masks the growth map"):
        pl.growth(fitted, per_cell=True, min_density=0.1, show=False)
    monge = course()
    tl.syncot(monge, "time", "X_pca", "X_sec", coupling="monge", **FIT)
    with pytest.raises(ValueError, match=r"times=\[1.0\]: not used by this result's secondary path"):
        pl.secondary_path(monge, times=[1.0], show=False)


def test_demo_refuses_graph_nodes_with_a_grid(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n-bins", "16", "--n-nodes", "300"]) == 2
    assert "n_nodes=300: a graph option, and n_bins=16 asks for the grid" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_cost_table_and_scicar_refuse_options_that_would_not_act():
    from sc_syncot import datasets, pl

    stored = {"costs": {"primary_transport": np.ones(1)}}
    with pytest.raises(ValueError, match=r"key='fit': names the .uns entry of AnnData results"):
        pl.cost_table([stored], key="fit")
    with pytest.raises(ValueError, match=r"paired=False, as_mudata=True"):
        datasets.sciCAR_A549(paired=False, as_mudata=True)
