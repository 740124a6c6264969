import pytest
import torch

# The test problems are small: torch's intra-op threads cost more than they save there, and on a shared machine
# (a CI runner with neighbours) they can slow a solve tenfold. Timings live in benchmarks/, not here.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
