import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sc_syncot.solvers.hellinger_kantorovich import entropic_hk2, hk_cost
from sc_syncot.solvers.kantorovich import KantorovichSecondary, hk_path_action

SUPPORT = np.random.default_rng(0).normal(size=(6, 10))  # a 10-dimensional secondary
KERNEL = np.full((12, 6), 1 / 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel": KERNEL * 1.1}, "kernel.*rows summing to 1"),
        ({"kernel": np.where(np.eye(12, 6) > 0, -0.1, KERNEL + 0.02)}, "kernel.*nonnegative"),
        ({"kernel": np.where(np.eye(12, 6) > 0, np.nan, KERNEL)}, "kernel.*finite"),
        ({"kernel": KERNEL[:, :5] * 6 / 5}, "kernel, support"),
        ({"kernel": np.ones(6) / 6}, "kernel.*2-D"),
        ({"support": np.where(np.eye(6, 10) > 0, np.inf, SUPPORT)}, "support.*finite"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"weight": -1.0}, "weight"),
        ({"delta": 0.0}, "delta"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, match):
    args = {"kernel": KERNEL, "support": SUPPORT, "delta": 2.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        KantorovichSecondary(**args)


def test_default_epsilon_is_reported_and_scales_with_the_cost():
    sec = KantorovichSecondary(KERNEL, SUPPORT, delta=2.0)
    small = KantorovichSecondary(KERNEL, SUPPORT / 10, delta=2.0)
    assert 0 < small.effective_epsilon < sec.effective_epsilon
    assert KantorovichSecondary(KERNEL, SUPPORT, delta=2.0, epsilon=0.3).effective_epsilon == 0.3


def test_default_epsilon_follows_the_time_step_down_to_the_support_spacing():
    # default_epsilon = max(0.01 c_med / Nt^2, c_nn / 4); on 60 points of [0, 1] with delta 0.3 the floor
    # (nearest-neighbour cost of spacing 1/60) takes over between Nt = 2 and Nt = 4.
    from sc_syncot.solvers import Grid, SyncOTProblem

    points = (np.arange(60) + 0.5)[:, None] / 60
    sec = KantorovichSecondary(np.eye(60), points, delta=0.3)

    def resolved(n_time):
        grid = Grid([(0, 1)], (60,), n_time)
        rho = np.ones(60)
        problem = SyncOTProblem(grid, rho, rho, delta=0.3, secondaries=[sec])
        return problem.secondaries[0].effective_epsilon

    floor = -np.log(np.cos(1 / 60 / (2 * 0.3)) ** 2) / 4
    assert sec.effective_epsilon == pytest.approx(resolved(1))  # unbound: n_time = 1
    assert resolved(2) == pytest.approx(resolved(1) / 4)
    assert resolved(4) == pytest.approx(floor) and resolved(16) == pytest.approx(floor)
    explicit = KantorovichSecondary(np.eye(60), points, delta=0.3, epsilon=0.05)
    grid = Grid([(0, 1)], (60,), 16)
    kept = SyncOTProblem(grid, np.ones(60), np.ones(60), delta=0.3, secondaries=[explicit]).secondaries[0]
    assert kept.effective_epsilon == 0.05


def test_time_consistent_epsilon_keeps_the_bias_of_four_steps():
    # the same 60 points: the closed-form floor c_nn / 4 at Nt <= 4 (as default_epsilon), then floor * (4 / Nt)^2,
    # so that Nt^2 epsilon, the bias per unit mass, stays at its value for Nt = 4
    from sc_syncot.solvers.kantorovich import default_epsilon, time_consistent_epsilon

    points = (np.arange(60) + 0.5)[:, None] / 60
    floor = -np.log(np.cos(1 / 60 / (2 * 0.3)) ** 2) / 4
    for n_time in (1, 2, 4):
        assert time_consistent_epsilon(points, 0.3, n_time) == pytest.approx(default_epsilon(points, 0.3, n_time))
    for n_time in (8, 16, 64):
        eps = time_consistent_epsilon(points, 0.3, n_time)
        assert eps == pytest.approx(floor * (4 / n_time) ** 2)
        assert n_time**2 * eps == pytest.approx(16 * floor)


def _path(batch=2, nodes=4, n=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, nodes, n, generator=gen, dtype=torch.float64) + 0.05


def test_identity_kernel_path_action_is_the_sum_of_static_problems():
    x = torch.linspace(0, 1, 12, dtype=torch.float64)[:, None]
    cost = hk_cost(x, x, 0.3)
    rho = _path()
    res = hk_path_action(rho, torch.eye(12, dtype=torch.float64), cost, 0.3, 0.05, cell_volume=0.5, tol=1e-12)
    dt = 1 / 3
    for bi in range(2):
        direct = (
            sum(
                float(
                    entropic_hk2(0.5 * rho[bi, k][None], 0.5 * rho[bi, k + 1][None], cost, 0.3, 0.05, tol=1e-12).value[
                        0
                    ]
                )
                for k in range(3)
            )
            / dt
        )
        assert float(res.value[bi]) == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_path_action_gradient_matches_finite_differences(sparse):
    rng = np.random.default_rng(2)
    k = rng.random((12, 6))
    k /= k.sum(1, keepdims=True)
    sec = KantorovichSecondary(sp.csr_matrix(k) if sparse else k, SUPPORT, delta=3.0, epsilon=0.05)
    kernel = sec.kernel_tensor(dtype=torch.float64, device="cpu")
    cost = hk_cost(*(2 * [torch.as_tensor(sec.support)]), 3.0)
    rho = _path()
    base = hk_path_action(rho, kernel, cost, 3.0, 0.05, 0.5, tol=1e-13)
    direction = rho * torch.randn(rho.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = 1e-6
    plus = hk_path_action(rho + h * direction, kernel, cost, 3.0, 0.05, 0.5, tol=1e-13, warm=base.warm)
    minus = hk_path_action(rho - h * direction, kernel, cost, 3.0, 0.05, 0.5, tol=1e-13, warm=base.warm)
    fd = (plus.value - minus.value) / (2 * h)
    analytic = (base.grad * direction).sum((1, 2))
    torch.testing.assert_close(analytic, fd, rtol=1e-5, atol=0)
