import numpy as np
import pytest
import torch

from sc_syncot.solvers import (
    Grid,
    MongeSecondary,
    PrimalDualState,
    SyncOTProblem,
    chambolle_pock,
    resolve_device,
    solve,
)
from sc_syncot.solvers.kantorovich import KantorovichSecondary

G = Grid([(0, 1), (0, 1)], (8, 8), 4)
RHO = np.ones((8, 8))
SUPPORT = np.random.default_rng(0).normal(size=(5, 10))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho0": np.ones((8, 7))}, "rho0"),
        ({"rho1": np.ones((3, 8, 7))}, "rho1"),
        ({"rho0": -RHO}, "rho0.*nonnegative"),
        ({"rho1": np.where(np.eye(8) > 0, np.nan, 1.0)}, "rho1.*finite"),
        ({"rho1": np.where(np.eye(8) > 0, np.inf, 1.0)}, "rho1.*finite"),
        ({"rho1": 2 * RHO}, "equal masses"),
        ({"rho0": np.zeros((8, 8)), "delta": 0.5}, "positive mass"),
        ({"delta": -1.0}, "delta"),
        ({"delta": float("nan")}, "delta"),
        ({"rho1": np.ones((2, 8, 8))}, "batch"),
        ({"secondaries": [MongeSecondary(np.ones((8, 8, 3, 3)))]}, "jacobian.*shape"),
        ({"secondaries": [MongeSecondary(np.ones((8, 8, 3)))]}, "jacobian.*shape"),
        ({"secondaries": [MongeSecondary(np.ones((5, 8, 8, 3, 2)))]}, "jacobian.*batch"),
        ({"secondaries": [MongeSecondary(lambda x: x[:, 0])]}, "jacobian"),
        ({"secondaries": [MongeSecondary(np.ones((8, 8, 3, 2)), delta=0.3)]}, "unbalanced"),
        ({"secondaries": ["not a secondary"]}, "secondaries"),
        ({"secondaries": [KantorovichSecondary(np.full((63, 5), 0.2), SUPPORT)]}, "kernel.*64 rows"),
        ({"secondaries": [KantorovichSecondary(np.full((8, 5), 0.2), SUPPORT)]}, "kernel.*grid"),
        ({"metric": np.broadcast_to(np.diag([1.0, -1.0]), (8, 8, 2, 2))}, "metric.*positive definite"),
        ({"metric": np.broadcast_to([[1.0, 2.0], [0.0, 1.0]], (8, 8, 2, 2))}, "metric.*symmetric"),
        ({"metric": np.full((8, 8, 2, 2), np.nan)}, "metric.*finite"),
        ({"metric": np.ones((8, 8, 3, 3))}, "metric.*shape"),
    ],
)
def test_problem_rejects_bad_input(kwargs, match):
    args = {"grid": G, "rho0": RHO, "rho1": RHO, **kwargs}
    with pytest.raises(ValueError, match=match):
        SyncOTProblem(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"jacobian": np.full((8, 8, 2, 2), np.nan)}, "jacobian.*finite"),
        ({"jacobian": np.ones((8, 8, 2, 2)), "weight": -1}, "weight"),
    ],
)
def test_secondary_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MongeSecondary(**kwargs)


def test_non_finite_map_jacobian_is_rejected():
    with pytest.raises(ValueError, match="jacobian.*finite"):
        with np.errstate(invalid="ignore", divide="ignore"):
            SyncOTProblem(G, RHO, RHO, secondaries=[MongeSecondary(lambda x: np.log(x - 0.5))])


def test_inputs_are_not_modified():
    rho0, rho1 = RHO.copy(), RHO.copy()
    solve(SyncOTProblem(G, rho0, rho1), max_iter=20)
    np.testing.assert_array_equal(rho0, RHO)
    np.testing.assert_array_equal(rho1, RHO)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_request_without_cuda_is_a_clear_error():
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda")


class _ExplodingOperators:
    """K = identity; the dual prox returns NaN, as overflowing iterates would."""

    def apply(self, x):
        return x[0].clone()

    def adjoint(self, y):
        return [y.clone()]

    def primal_prox_(self, x):
        pass

    def dual_prox(self, z, sigma):
        return z * np.nan, z * np.nan

    def objective(self, v):
        return float(v.sum())


def test_non_finite_iterates_stop_with_an_error():
    state = PrimalDualState(x=[torch.ones(3)], y=torch.zeros(3))
    with pytest.raises(FloatingPointError, match="non-finite"):
        chambolle_pock(_ExplodingOperators(), state, check_every=1)
