import subprocess
import sys

import pytest

from sc_syncot.cli import main


@pytest.mark.parametrize("geometry", [["--n-bins", "16"], ["--n-nodes", "200"]], ids=["grid", "graph"])
def test_demo_writes_results_figures_and_summary(tmp_path, capsys, geometry):
    import anndata as ad

    from sc_syncot.demo import FIGURES

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--n-cells", "600", *geometry, "--n-time", "4", "--no-progress"]
    assert main(argv) == 0
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 10_000
    summary = capsys.readouterr().out
    assert "velocity median cosine" in summary and str(out / "demo.h5ad") in summary
    adata = ad.read_h5ad(out / "demo.h5ad")
    assert "syncot_velocity" in adata.obsm  # the default Kantorovich coupling: the induced secondary masses
    assert (
        adata.uns["syncot"]["coupling"]["secondary_density"].shape[-1] == adata.uns["syncot"]["coupling"]["n_support"]
    )
    assert "syncot_trajectories" in adata.uns


def test_demo_bad_grid_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-bins", "1", "--no-progress"]) == 2
    assert "n_bins" in capsys.readouterr().err


def test_console_script_help_shows_examples():
    done = subprocess.run([sys.executable, "-m", "sc_syncot.cli", "demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "examples:" in done.stdout


def _time_course(path):
    import anndata as ad
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, (150, 2))
    x = np.concatenate([base, base + [1.0, 0.0]])
    adata = ad.AnnData(np.zeros((300, 1), np.float32))
    adata.obs["day"] = np.repeat([0.0, 1.0], 150)
    adata.obsm["X_pca"] = x
    adata.obsm["X_sec"] = np.column_stack([x, np.sin(x[:, 0])])
    adata.write_h5ad(path)


def test_run_writes_results(tmp_path, capsys):
    import anndata as ad
    import numpy as np

    src, dst = tmp_path / "cells.h5ad", tmp_path / "out.h5ad"
    _time_course(src)
    argv = ["run", str(src), "--time-key", "day", "--primary", "X_pca", "--secondary", "X_sec"]
    argv += ["--coupling", "monge", "--delta", "none", "--n-bins", "24", "--n-time", "6", "-o", str(dst)]
    assert main(argv) == 0
    assert "1 interval(s) converged" in capsys.readouterr().out
    out = ad.read_h5ad(dst)
    assert np.allclose(out.obsm["syncot_velocity"].mean(0), [1.0, 0.0], atol=0.02)
    assert "syncot_velocity_secondary" in out.obsm


def test_run_bad_key_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "cells.h5ad"
    _time_course(src)
    assert main(["run", str(src), "--time-key", "hour", "--primary", "X_pca"]) == 2
    assert "time_key='hour'" in capsys.readouterr().err
    assert not (tmp_path / "cells_syncot.h5ad").exists()


def test_run_passes_solver_options_and_reports_no_convergence(tmp_path, capsys):
    import anndata as ad

    src, dst = tmp_path / "cells.h5ad", tmp_path / "out.h5ad"
    _time_course(src)
    argv = ["run", str(src), "--time-key", "day", "--primary", "X_pca", "--secondary", "X_sec", "-o", str(dst)]
    argv += ["--n-bins", "12", "--n-time", "2", "--max-iter", "20", "--tol", "1e-9", "--n-support", "30"]
    argv += ["--sinkhorn-sweeps", "auto", "--seed", "3", "--no-progress", "--time-warp", "none"]
    assert main(argv) == 0
    assert "NOT converged (the warning above says whether --max-iter helps)" in capsys.readouterr().out
    params = ad.read_h5ad(dst).uns["syncot"]["params"]
    assert (params["max_iter"], params["n_support"], params["seed"], params["sinkhorn_sweeps"]) == (20, 30, 3, "auto")
    assert params["time_warp"] == "none"


def test_run_bad_number_is_a_usage_error(tmp_path, capsys):
    src = tmp_path / "cells.h5ad"
    _time_course(src)
    with pytest.raises(SystemExit) as stop:
        main(["run", str(src), "--time-key", "day", "--primary", "X_pca", "--delta", "0.5x"])
    assert stop.value.code == 2
    assert "expected a number, 'auto' or 'none', got '0.5x'" in capsys.readouterr().err


def test_help_does_not_load_the_solvers():
    code = "import sys; from sc_syncot.cli import _parser; _parser().format_help(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"sc-syncot {version('sc-syncot')}"


def test_run_verbose_prints_what_the_fit_chose_to_a_log(tmp_path):
    # a fresh process (pytest's own log handlers would take the records here): with -v the info lines reach
    # standard error, a file as in `sc-syncot run ... 2> fit.log`; without, only the summary line is printed
    import subprocess
    import sys

    src = tmp_path / "cells.h5ad"
    _time_course(src)
    argv = ["run", str(src), "--time-key", "day", "--primary", "X_pca", "--delta", "none", "--n-bins", "16"]
    code = "import sys; from sc_syncot.cli import main; sys.exit(main(sys.argv[1:]))"
    for extra, expected in (([], False), (["-v"], True)):
        done = subprocess.run([sys.executable, "-c", code, *argv, *extra], capture_output=True, text=True, check=True)
        assert ("sc_syncot: grid" in done.stderr) is expected, done.stderr


def test_run_writes_cellranks_matrix_on_the_graph_and_refuses_the_grid_first(tmp_path, capsys):
    import anndata as ad
    import numpy as np

    src, dst = tmp_path / "cells.h5ad", tmp_path / "out.h5ad"
    _time_course(src)
    argv = ["run", str(src), "--time-key", "day", "--primary", "X_pca", "-o", str(dst), "--no-progress"]
    # two columns: "auto" fits on the grid, which has no cells to connect; refused before any fit
    assert main([*argv, "--transitions"]) == 2
    assert "--transitions: a cell-to-cell matrix needs a graph fit" in capsys.readouterr().err
    assert not dst.exists()
    assert main([*argv, "--transitions", "--geometry", "graph", "--n-nodes", "200", "--delta", "none"]) == 0
    matrix = ad.read_h5ad(dst).obsp["syncot_transitions"]
    assert matrix.shape == (300, 300)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    day = ad.read_h5ad(src).obs["day"].to_numpy()
    # the cloud moves by (1, 0): each day-0 cell's descendants are on average one unit to the right
    x = ad.read_h5ad(src).obsm["X_pca"]
    ahead = matrix[np.flatnonzero(day == 0)][:, np.flatnonzero(day == 1)] @ x[day == 1] - x[day == 0]
    np.testing.assert_allclose(ahead.mean(0), [1.0, 0.0], atol=0.01)  # measured 1e-4


def test_run_refuses_dense_transitions_before_the_fit_and_takes_a_threshold(tmp_path, capsys, monkeypatch):
    """At 30,000 cells the dense matrix was refused after the fit, which was lost; the CLI had no threshold option."""
    import importlib

    import anndata as ad
    import numpy as np

    src, dst = tmp_path / "cells.h5ad", tmp_path / "out.h5ad"
    _time_course(src)
    monkeypatch.setattr(importlib.import_module("sc_syncot.tl._transitions"), "MAX_TRANSPORT_ENTRIES", 1000)
    fits = []
    tl_module = importlib.import_module("sc_syncot.tl.syncot")
    monkeypatch.setattr(tl_module, "fit", lambda *a, **k: fits.append(1) or pytest.fail("fitted"))
    argv = ["run", str(src), "--time-key", "day", "--primary", "X_pca", "-o", str(dst), "--no-progress"]
    graph = ["--geometry", "graph", "--n-nodes", "200", "--delta", "none"]
    assert main([*argv, *graph, "--transitions"]) == 2
    err = capsys.readouterr().err
    assert "more than 1,000; pass --transitions auto" in err and not fits and not dst.exists()
    # a bad value, or the input path taken as the value, is named as argparse reads it, before any file is read
    for bad in (["--transitions", "often"], ["--transitions", "150"]):
        with pytest.raises(SystemExit) as stop:
            main([*argv, *graph, *bad])
        assert stop.value.code == 2 and "argument --transitions:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--transitions", str(src), "--time-key", "day", "--primary", "X_pca"])
    assert "got '" + str(src) + "' (a path? put --transitions after INPUT" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(importlib.import_module("sc_syncot.tl._transitions"), "MAX_TRANSPORT_ENTRIES", 1000)
    assert main([*argv, *graph, "--transitions", "auto"]) == 0
    matrix = ad.read_h5ad(dst).obsp["syncot_transitions"]
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert matrix.nnz < 0.5 * 200 * 100  # thinned: the dense blocks and the last one would hold more
