import pytest
import torch

# The test problems are small: torch's intra-op threads cost more than they save there, and on a shared machine
# (a CI runner with neighbours) they can slow a solve tenfold. Timings live in benchmarks/, not here.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the checks marked slow (minutes each)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (or the matching benchmark in benchmarks/)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
