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


def test_default_epsilon_is_twice_the_nearest_neighbour_cost_and_ignores_the_time_step():
    # 60 points of [0, 1], spacing 1/60: the nearest-neighbour HK cost is -log cos^2(h / 2 delta) in closed form;
    # the debiased secondary needs no epsilon that follows the time step, so every n_time resolves the same value
    from sc_syncot.solvers import Grid, SyncOTProblem

    points = (np.arange(60) + 0.5)[:, None] / 60
    sec = KantorovichSecondary(np.eye(60), points, delta=0.3)
    nearest = -np.log(np.cos(1 / 60 / (2 * 0.3)) ** 2)
    assert sec.effective_epsilon == pytest.approx(2 * nearest)
    for n_time in (1, 4, 32):
        grid = Grid([(0, 1)], (60,), n_time)
        problem = SyncOTProblem(grid, np.ones(60), np.ones(60), delta=0.3, secondaries=[sec])
        assert problem.secondaries[0].effective_epsilon == pytest.approx(2 * nearest)
    # balanced W2: |x - y|^2, and pairs at any distance count (no HK cut-off at pi delta)
    far = KantorovichSecondary(np.eye(60), points * 100)
    assert far.effective_epsilon == pytest.approx(2 * (100 / 60) ** 2)


def test_default_epsilon_is_capped_where_distances_concentrate():
    # 200 points of a 30-D standard Gaussian: every pair is nearly as far as the median one, so twice the
    # nearest-neighbour cost exceeds EPSILON_CAP times the median cost, and the cap is the default (sci-CAR's 30 LSI
    # components cycled at 0.75 times the median); costs recomputed here with SciPy, balanced W2 and HK alike
    from scipy.spatial.distance import cdist

    from sc_syncot.solvers.kantorovich import EPSILON_CAP

    def median(v):  # the lower of the two middle values for an even count, as torch.median takes it
        return np.sort(v)[(len(v) - 1) // 2]

    points = np.random.default_rng(0).standard_normal((200, 30))
    for delta in (None, 10.0):
        dist = cdist(points, points)
        cost = dist**2 if delta is None else -np.log(np.cos(np.minimum(dist / (2 * delta), np.pi / 2)) ** 2)
        off = cost[~np.eye(200, dtype=bool)]
        c_med = median(off[np.isfinite(off)])
        c_nn = median(np.where(np.eye(200, dtype=bool), np.inf, cost).min(1))
        assert 2 * c_nn > EPSILON_CAP * c_med
        sec = KantorovichSecondary(np.eye(200), points, delta=delta)
        assert sec.effective_epsilon == pytest.approx(EPSILON_CAP * c_med, rel=1e-9)


def test_secondary_support_merges_repeated_points_and_never_has_empty_clusters():
    # 300 cells on 40 distinct points (a detection limit repeats values): asking for 200 support points gives the
    # 40 points; asking for 10 gives 10 k-means centroids, each with cells; no warning either way
    import warnings

    from sc_syncot.pp import secondary_support

    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(40, 3))
    y = distinct[rng.integers(0, 40, 300)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        support, labels = secondary_support(y, n_support=200)
        assert len(support) == len(np.unique(y, axis=0)) <= 40
        np.testing.assert_array_equal(support[labels], y)
        support, labels = secondary_support(y, n_support=10)
    assert support.shape == (10, 3) and set(labels) == set(range(10))
    with pytest.raises(ValueError, match="same secondary coordinates"):
        secondary_support(np.ones((20, 2)), n_support=5)


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
