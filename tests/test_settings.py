"""Verbosity, log lines, warnings and progress bars, as scanpy users expect them."""

from __future__ import annotations

import importlib
import logging
import warnings
from contextlib import contextmanager

import numpy as np
import pytest

import sc_syncot
from sc_syncot import _settings, tl
from sc_syncot.solvers import SyncOTProblem, solve

from .test_bad_input_entry_points import FIT, course


@pytest.fixture
def verbosity():
    """Restores the setting after the test."""
    before = sc_syncot.settings._verbosity
    yield sc_syncot.settings
    sc_syncot.settings.verbosity = before


@contextmanager
def bare_root():
    """The root logger as an application without logging set-up has it (pytest adds its capture handler to every
    test phase; with it, our handler stays silent so that no line is printed twice)."""
    root = logging.getLogger()
    handlers, root.handlers = root.handlers[:], []
    try:
        yield
    finally:
        root.handlers = handlers


def test_verbosity_follows_scanpy_unless_set(verbosity):
    import scanpy as sc

    old = sc.settings.verbosity
    try:
        verbosity.verbosity = None
        sc.settings.verbosity = 3
        assert verbosity.verbosity == 3
        verbosity.verbosity = 0
        assert verbosity.verbosity == 0
    finally:
        sc.settings.verbosity = old
    for bad in (4, -1, "info", True, 1.5):
        with pytest.raises(ValueError, match="verbosity: expected 0, 1, 2, 3 or None"):
            verbosity.verbosity = bad


def test_info_lines_say_what_the_fit_chose_at_verbosity_2_only(verbosity, capsys):
    adata = course()
    with bare_root():
        verbosity.verbosity = 2
        tl.syncot(adata, "time", "X_pca", **FIT)
        err = capsys.readouterr().err
        assert "sc_syncot: fitting on the grid" in err and "sc_syncot: grid of 8 x 8 cells" in err and "delta" in err
        verbosity.verbosity = 1
        tl.syncot(adata, "time", "X_pca", **FIT)
        assert "sc_syncot:" not in capsys.readouterr().err


def test_an_application_that_configures_logging_gets_each_line_once(verbosity, capsys):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    root = logging.getLogger()
    with bare_root():
        root.addHandler(Keep(level=logging.INFO))
        root_level, root.level = root.level, logging.INFO
        try:
            verbosity.verbosity = 2
            tl.syncot(course(), "time", "X_pca", **FIT)
        finally:
            root.level = root_level
    assert any("fitting on the grid" in r for r in records)
    assert "sc_syncot:" not in capsys.readouterr().err  # not printed a second time by our handler


def test_warnings_point_at_the_users_call():
    adata = course()
    with pytest.warns(RuntimeWarning, match="the solver stopped after 2 iterations without converging") as said:
        tl.syncot(adata, "time", "X_pca", **FIT | {"max_iter": 2})
    assert {w.filename for w in said if "stopped" in str(w.message)} == {__file__}
    adata.obs["day"] = [f"day{t:g}" for t in adata.obs["time"]]
    with pytest.warns(UserWarning, match="text labels") as said:
        tl.syncot(adata, "day", "X_pca", **FIT)
    assert {w.filename for w in said if "text labels" in str(w.message)} == {__file__}


class _Bar:
    """Stands in for tqdm: records what the bar would show."""

    made: list[_Bar] = []

    def __init__(self, total, disable, **kwargs):
        self.total, self.disable, self.n, self.postfix, self.closed = total, disable, 0, {}, False
        _Bar.made.append(self)

    def update(self, k):
        self.n += k

    def set_postfix(self, **kwargs):
        self.postfix = kwargs

    def close(self):
        self.closed = True


def _problem():
    x = np.linspace(0, 1, 40)
    rho0, rho1 = np.exp(-((x - 0.3) ** 2) / 0.01), np.exp(-((x - 0.6) ** 2) / 0.01)
    from sc_syncot.solvers import Grid

    return SyncOTProblem(Grid([(0, 1)], 40, 8), rho0 / rho0.sum() * 40, rho1 / rho1.sum() * 40)


def test_the_progress_bar_ends_where_the_fit_converged(monkeypatch):
    module = importlib.import_module("sc_syncot.solvers.chambolle_pock")  # the package exports a function by its name
    monkeypatch.setattr(module, "tqdm", _Bar)
    _Bar.made.clear()
    res = solve(_problem(), progress=True, max_iter=5000, tol=1e-5)
    bar = _Bar.made[-1]
    assert res.converged and res.n_iter < 5000
    assert bar.closed and bar.n == bar.total == res.n_iter  # 100% at the converged iteration, not n_iter / 5000
    assert "residual" in bar.postfix


def test_progress_is_off_when_not_asked_or_at_verbosity_0(verbosity):
    verbosity.verbosity = 1
    assert _settings.show_progress(False) is True
    assert _settings.show_progress(True) in (None, False)  # shown on terminals and in notebooks
    verbosity.verbosity = 0
    assert _settings.show_progress(True) is True


def test_a_bar_not_drawn_is_replaced_by_log_lines(verbosity, monkeypatch, caplog):
    # pytest's captured output is no terminal, so tqdm draws no bar there: a fit that asked for progress logs its
    # iteration instead (every LOG_SECONDS, here every check); one that did not ask logs nothing
    import logging

    module = importlib.import_module("sc_syncot.solvers.chambolle_pock")
    monkeypatch.setattr(module, "LOG_SECONDS", 0.0)
    verbosity.verbosity = 2
    with caplog.at_level(logging.INFO, logger="sc_syncot"):
        solve(_problem(), progress=False, max_iter=60)
        assert not [r for r in caplog.records if "(at most" in r.getMessage()]
        # the closing line is said either way (an info line, like what the fit chose)
        assert any("stopped unconverged after 60 iterations" in r.getMessage() for r in caplog.records)
        solve(_problem(), progress=True, max_iter=60)
    lines = [r.getMessage() for r in caplog.records if "(at most" in r.getMessage()]
    assert lines and "iteration 20 (at most 60), residual" in lines[0], lines


def test_warn_names_the_first_frame_outside_the_package():
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _settings.warn("here")
    assert said[0].filename == __file__
