import torch

from sc_syncot.solvers import PrimalDualState
from sc_syncot.solvers.pd3o import pd3o

C = torch.tensor([1.5, -0.3, 0.2, 0.9, -2.0, 0.55], dtype=torch.float64)
LAM = 0.5


class NonnegativeLasso:
    """min 1/2 |x - c|^2 (smooth) + i(x >= 0) (prox) + lam |x|_1 (h, with A = I): x* = max(c - lam, 0)."""

    def apply(self, x):
        return x[0].clone()

    def adjoint(self, y):
        return [y.clone()]

    def primal_prox_(self, x):
        x[0].clamp_(min=0.0)

    def dual_prox(self, w, delta):
        s = w.clamp(-LAM, LAM)  # prox of the conjugate of lam |.|_1: projection on the box
        return s, (w - s) / delta

    def objective(self, v):
        return LAM * float(v.abs().sum())

    def smooth(self, x):
        return 0.5 * float((x[0] - C).square().sum()), [x[0] - C]


def test_pd3o_solves_a_problem_with_known_solution():
    state = PrimalDualState(x=[torch.zeros_like(C)], y=torch.zeros_like(C), tau=1.0, sigma=0.99)
    state = pd3o(NonnegativeLasso(), state, tol=1e-12, max_iter=2000, check_every=5)
    assert state.converged
    torch.testing.assert_close(state.x[0], (C - LAM).clamp(min=0), rtol=0, atol=1e-6)
    expected = 0.5 * float(((C - LAM).clamp(min=0) - C).square().sum()) + LAM * float((C - LAM).clamp(min=0).sum())
    assert abs(state.history["objective"][-1] - expected) < 1e-6
