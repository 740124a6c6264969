import os
import sys

# Figures are drawn to files, never to a window (plt.show() would wait on an interactive backend): set before
# anything imports matplotlib. The tutorials the tests run choose no backend themselves.
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# The test problems are small: torch's intra-op threads cost more than they save there, and on a shared machine
# (a CI runner with neighbours) they can slow a solve tenfold. Timings live in benchmarks/, not here.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    if "matplotlib.pyplot" in sys.modules:  # the figures a test (or a tutorial it ran) left open
        sys.modules["matplotlib.pyplot"].close("all")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the checks marked slow (minutes each)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (or the matching benchmark in benchmarks/)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
