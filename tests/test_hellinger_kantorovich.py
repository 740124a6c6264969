import math

import numpy as np
import ot
import pytest
import torch

from sc_syncot.solvers.hellinger_kantorovich import entropic_hk2, hk_cost

DELTA = 0.2


def _bumps(n=120):
    x = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    a = torch.exp(-(((x[:, 0] - 0.3) / 0.05) ** 2))
    b = torch.exp(-(((x[:, 0] - 0.5) / 0.07) ** 2))
    return x, a / a.sum(), 1.5 * b / b.sum()


def _kl(p, q):
    m = p > 0
    return float((p[m] * np.log(p[m] / q[m])).sum() - p.sum() + q.sum())


def test_diracs_match_the_closed_form():
    # math.md oracle 4 for Diracs: 4 delta^2 (m0 + m1 - 2 sqrt(m0 m1) cos(d / 2 delta)), d < pi delta
    x = torch.tensor([[0.0], [0.3]], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.6]], dtype=torch.float64)
    res = entropic_hk2(a, b, hk_cost(x, x, DELTA), DELTA, 1e-4, max_iter=100_000)
    exact = 4 * DELTA**2 * (1.6 - 2 * math.sqrt(0.6) * math.cos(0.3 / (2 * DELTA)))
    assert res.converged
    assert float(res.value[0]) == pytest.approx(exact, rel=1e-4)


def test_converges_to_pot_exact_unbalanced_solver_as_epsilon_falls():
    x, a, b = _bumps()
    cost = hk_cost(x, x, DELTA)
    plan = ot.unbalanced.mm_unbalanced(
        a.numpy(), b.numpy(), cost.numpy(), reg_m=1.0, div="kl", numItermax=50_000, stopThr=1e-15
    )
    exact = (
        4 * DELTA**2 * (float((plan * cost.numpy()).sum()) + _kl(plan.sum(1), a.numpy()) + _kl(plan.sum(0), b.numpy()))
    )
    errors = []
    for eps in (1e-2, 1e-3):
        res = entropic_hk2(a[None], b[None], cost, DELTA, eps, max_iter=20_000)
        assert res.converged
        errors.append(abs(float(res.value[0]) - exact) / exact)
    assert errors[1] < errors[0]
    assert errors[1] < 1e-2  # the entropic bias at eps = 1e-3 (measured 0.7%)


def test_gradient_matches_finite_differences():
    x, a, b = _bumps(60)
    cost = hk_cost(x, x, DELTA)
    eps = 0.05
    base = entropic_hk2(a[None], b[None], cost, DELTA, eps, tol=1e-13)
    gen = torch.Generator().manual_seed(0)
    # relative directions keep every mass positive on both sides of the difference
    da = a * torch.randn(60, generator=gen, dtype=torch.float64)
    db = b * torch.randn(60, generator=gen, dtype=torch.float64)
    h = 1e-6
    plus = entropic_hk2((a + h * da)[None], (b + h * db)[None], cost, DELTA, eps, tol=1e-13, warm=(base.f, base.g))
    minus = entropic_hk2((a - h * da)[None], (b - h * db)[None], cost, DELTA, eps, tol=1e-13, warm=(base.f, base.g))
    fd = (float(plus.value[0]) - float(minus.value[0])) / (2 * h)
    analytic = float((base.grad_a[0] * da).sum() + (base.grad_b[0] * db).sum())
    assert analytic == pytest.approx(fd, rel=1e-5)


def test_batch_matches_single_problems_and_zero_masses_are_fine():
    x, a, b = _bumps(80)
    a0 = torch.where(x[:, 0] < 0.5, a, 0.0)  # half of the support carries no mass
    cost = hk_cost(x, x, DELTA)
    batch = entropic_hk2(torch.stack([a, a0]), torch.stack([b, b]), cost, DELTA, 0.02, tol=1e-11)
    for k, ak in enumerate((a, a0)):
        single = entropic_hk2(ak[None], b[None], cost, DELTA, 0.02, tol=1e-11)
        torch.testing.assert_close(batch.value[k], single.value[0], rtol=1e-9, atol=0)
    assert torch.isfinite(batch.grad_a).all() and torch.isfinite(batch.grad_b).all()


def test_far_apart_masses_only_grow_and_shrink():
    # Beyond pi delta no mass is transported: HK^2 = 4 delta^2 (m0 + m1), the Hellinger part alone, plus the
    # entropic term eps KL(0 | a (x) b) = eps m0 m1 of the smoothed problem.
    x = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    res = entropic_hk2(
        torch.tensor([[1.0, 0.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.5]], dtype=torch.float64),
        hk_cost(x, x, DELTA),
        DELTA,
        1e-3,
    )
    assert float(res.value[0]) == pytest.approx(4 * DELTA**2 * (1.5 + 1e-3 * 0.5), rel=1e-6)
