"""The Gaussian UOT/UDC tutorial runs in its fast setting and shows what its text claims."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "gaussian_uot.py"
UOT_FIGURES = ("uot_marginals.png", "uot_plans.png")
UDC_FIGURES = ("udc_evolution.png", "maxent_udc.png")


@pytest.fixture
def fast_tutorial_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SC_SYNCOT_TUTORIAL_FAST", "1")
    monkeypatch.setenv("SC_SYNCOT_TUTORIAL_OUT", str(tmp_path))
    return tmp_path


def _check_uot_part(ns_or_none, out):
    for name in UOT_FIGURES:
        assert (out / name).stat().st_size > 0, name
    if ns_or_none is None:
        return
    for name, masses in ns_or_none["uot_masses"].items():
        alpha, beta = ns_or_none["CASES"][name]
        assert np.all(np.diff(masses) > 0) and masses[-1] < np.sqrt(alpha.mass * beta.mass)
        assert np.all(np.diff(ns_or_none["marginal_gaps"][name]) < 0)
    assert np.all(np.diff(ns_or_none["entropic_spread"]) > 0)


def test_uot_part_runs_and_udc_part_asks_for_cvxpy_when_it_is_missing(fast_tutorial_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # as if cvxpy were not installed
    with pytest.raises(ImportError, match=r'pip install "sc-syncot\[control\]"'):
        runpy.run_path(str(TUTORIAL), run_name="__main__")
    _check_uot_part(None, fast_tutorial_env)
    assert not any((fast_tutorial_env / name).exists() for name in UDC_FIGURES)


def test_full_tutorial(fast_tutorial_env):
    pytest.importorskip("cvxpy", reason='the tutorial\'s UDC parts need cvxpy: pip install "sc-syncot[control]"')
    ns = runpy.run_path(str(TUTORIAL), run_name="__main__")
    _check_uot_part(ns, fast_tutorial_env)
    for name in UDC_FIGURES:
        assert (fast_tutorial_env / name).stat().st_size > 0, name
    alpha, beta = ns["udc_refs"]
    weak, strong = (ns["udc_results"][tau] for tau in ns["UDC_TAUS"])
    # The endpoints move toward each other, less for a larger tau, and the policy is deterministic.
    for res in (weak, strong):
        assert alpha.mean[0] < res.means[0, 0] < res.means[-1, 0] < beta.mean[0]
        assert res.lifting_gap.max() < 1e-7
    assert strong.means[0, 0] < weak.means[0, 0] and strong.means[-1, 0] > weak.means[-1, 0]
    assert strong.mass > weak.mass
    variances = [ns["maxent_results"][lam].control_covs[:, 0, 0].mean() for lam in ns["WEIGHTS"]]
    assert np.all(np.diff(variances) > 0)
    assert max(ns["maxent_results"][lam].lifting_gap.max() for lam in ns["WEIGHTS"]) < 1e-6
