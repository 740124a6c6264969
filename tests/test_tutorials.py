"""The single-cell tutorials run in their fast setting and show what their text claims."""

import runpy
from pathlib import Path

import numpy as np
import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
