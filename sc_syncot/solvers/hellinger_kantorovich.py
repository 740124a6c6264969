"""Static Hellinger-Kantorovich distance between measures on a point cloud (Mathematics page, section 2).

    HK_delta^2(mu, nu) = 4 delta^2 min_{gamma >= 0} <c, gamma> + KL(gamma_1 | mu) + KL(gamma_2 | nu),
    c(x, y) = -log cos^2(min(|x - y| / (2 delta), pi / 2)),

smoothed by ``eps KL(gamma | mu (x) nu)`` and solved by Sinkhorn iterations in the log domain, batched over pairs
of measures (the time nodes of a path) that share one support. Building block of the Kantorovich-type secondary
(:mod:`.kantorovich_solver`), whose action sums ``HK^2(K^T rho_k, K^T rho_{k+1}) / dt`` over time steps.

Why not POT here: POT's unbalanced Sinkhorn (``ot.unbalanced.sinkhorn_unbalanced``, every ``method``) works with
the scaled kernel ``exp(-c / eps) mu (x) nu`` and underflows for ``eps`` below about 1e-2 of the cost scale (at
``eps = 1e-3`` on a unit segment it returns a plan of mass 3e-8 or NaN), and it has no batch axis. The updates
below are the same fixed point written with log-sum-exp, so any ``eps`` is safe, and batched. POT's exact
majorization-minimization solver ``ot.unbalanced.mm_unbalanced`` is the reference in the tests.

References
----------
L. Chizat, G. Peyre, B. Schmitzer, F.-X. Vialard, "Scaling algorithms for unbalanced optimal transport problems",
Math. Comp. 87 (2018); M. Liero, A. Mielke, G. Savare, "Optimal entropy-transport problems and a new
Hellinger-Kantorovich distance between positive measures", Invent. Math. 211 (2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# exp(-COST_CAP) ~ 1e-22: pairs farther apart than pi delta cannot exchange mass, as with c = +inf, while the
# log-domain arithmetic stays finite.
COST_CAP = 50.0


def hk_cost(x: torch.Tensor, y: torch.Tensor, delta: float) -> torch.Tensor:
    """``c(x, y) = -log cos^2(min(|x - y| / (2 delta), pi/2))``, capped at ``COST_CAP``; ``(n, m)``."""
    angle = torch.cdist(x, y) / (2.0 * delta)
    cos2 = torch.cos(angle.clamp(max=math.pi / 2)).square()
    return (-torch.log(cos2.clamp(min=math.exp(-COST_CAP)))).clamp(max=COST_CAP)


@dataclass
class HKResult:
    """Values and gradients of a batch of entropic HK^2 problems."""

    value: torch.Tensor  # (T,)
    grad_a: torch.Tensor  # (T, n): d value / d a
    grad_b: torch.Tensor  # (T, m)
    f: torch.Tensor  # (T, n) dual potentials (warm start)
    g: torch.Tensor  # (T, m)
    n_iter: int
    converged: bool
    error: float


# Rows (problems) per chunk: no (T, n, m) array for all rows at once, only (chunk, n, m) with chunk * n * m
# at most this many entries.
CHUNK_ELEMENTS = 2**22


def _chunks(rows: int, n: int, m: int):
    step = max(1, CHUNK_ELEMENTS // max(n * m, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def _softmin(cost: torch.Tensor, log_w: torch.Tensor, pot: torch.Tensor, eps: float, dim: int) -> torch.Tensor:
    """``-eps LSE_j(log w_j + (pot_j - c_ij) / eps)`` over ``dim`` of the ``(T, n, m)`` array, by chunks of rows."""
    out = []
    for rows in _chunks(pot.shape[0], *cost.shape):
        if dim == 2:  # reduce over the second measure's points
            z = (pot[rows].unsqueeze(1) - cost.unsqueeze(0)) / eps + log_w[rows].unsqueeze(1)
        else:
            z = (pot[rows].unsqueeze(2) - cost.unsqueeze(0)) / eps + log_w[rows].unsqueeze(2)
        out.append(-eps * torch.logsumexp(z, dim=dim))
    return torch.cat(out)


def entropic_hk2(
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    delta: float,
    epsilon: float,
    *,
    warm: tuple[torch.Tensor, torch.Tensor] | None = None,
    tol: float = 1e-9,
    max_iter: int = 5000,
) -> HKResult:
    r"""Entropic ``HK^2`` between the rows of ``a`` ``(T, n)`` and of ``b`` ``(T, m)``, and its gradients.

    Solves, for every row pair,

    .. math::
        J = \min_{\gamma \ge 0} \langle c, \gamma\rangle + \varepsilon\,\mathrm{KL}(\gamma | a \otimes b)
            + \mathrm{KL}(\gamma_1 | a) + \mathrm{KL}(\gamma_2 | b),\qquad HK^2 \approx 4\delta^2 J,

    by the log-domain Sinkhorn updates ``f <- -(eps / (1 + eps)) LSE_j(log b_j + (g_j - c_ij) / eps)`` (and the same
    for ``g``), with ``gamma_ij = a_i b_j exp((f_i + g_j - c_ij) / eps)``. At the fixed point ``gamma_1 / a =
    exp(-f)``, so by the envelope theorem ``dJ/da_i = 1 + eps |b| - (1 + eps) exp(-f_i)`` (and symmetrically),
    which holds where ``a_i = 0`` too.

    Parameters
    ----------
    a, b
        Nonnegative masses on the rows and columns of ``cost``, one problem per row.
    cost
        ``(n, m)`` cost from :func:`hk_cost`.
    delta
        Length scale of HK.
    epsilon
        Entropic smoothing, in units of the cost (which is dimensionless).
    warm
        Potentials ``(f, g)`` of a previous solve.
    tol
        Stop when the potentials move by less than ``tol`` (sup norm) in one sweep.
    max_iter
        Iteration cap; ``converged`` tells whether ``tol`` was reached.
    """
    eps = float(epsilon)
    log_a, log_b = torch.log(a), torch.log(b)  # -inf where a mass is 0: those points drop out of the sums
    if warm is None:
        # epsilon scaling: a cold start at small eps needs thousands of sweeps; halving eps from 1 with a few
        # sweeps each lands near the fixed point first.
        f, g = torch.zeros_like(a), torch.zeros_like(b)
        eps_k = 1.0
        while eps_k > eps:
            f, g, _, _ = _sweeps(cost, log_a, log_b, f, g, eps_k, 1e-3, 20)
            eps_k *= 0.5
    else:
        f, g = warm[0].clone(), warm[1].clone()
    f, g, n_iter, error = _sweeps(cost, log_a, log_b, f, g, eps, tol, max_iter)
    value = torch.cat(
        [_chunk_value(cost, log_a[r], log_b[r], f[r], g[r], a[r], b[r], eps) for r in _chunks(*_plan_shape(a, b))]
    )
    mass_a, mass_b = a.sum(1, keepdim=True), b.sum(1, keepdim=True)
    grad_a = 1.0 + eps * mass_b - (1.0 + eps) * torch.exp(-f)
    grad_b = 1.0 + eps * mass_a - (1.0 + eps) * torch.exp(-g)
    four = 4.0 * delta**2
    return HKResult(four * value, four * grad_a, four * grad_b, f, g, n_iter, error < tol, error)


def _plan_shape(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int]:
    """``(T, n, m)``: the shape of a batch of plans."""
    return a.shape[0], a.shape[1], b.shape[1]


def _chunk_value(cost, log_a, log_b, f, g, a, b, eps) -> torch.Tensor:
    """Primal objective of a chunk of rows, from the potentials."""
    log_plan = (f.unsqueeze(2) + g.unsqueeze(1) - cost.unsqueeze(0)) / eps + log_a.unsqueeze(2) + log_b.unsqueeze(1)
    return _primal(torch.exp(log_plan), cost, a, b, eps)


def _sweeps(cost, log_a, log_b, f, g, eps, tol, max_iter):
    """Log-domain Sinkhorn sweeps until the potentials move by less than ``tol``."""
    scale = 1.0 / (1.0 + eps)  # the KL marginal weight is 1: lambda / (lambda + eps)
    error, n_iter = math.inf, 0
    while n_iter < max_iter:
        n_iter += 1
        f_new = scale * _softmin(cost, log_b, g, eps, dim=2)
        g_new = scale * _softmin(cost, log_a, f_new, eps, dim=1)
        error = float(torch.maximum((f_new - f).abs().amax(), (g_new - g).abs().amax()))
        f, g = f_new, g_new
        if error < tol:
            break
    return f, g, n_iter, error


def _kl(p: torch.Tensor, q: torch.Tensor, dims) -> torch.Tensor:
    """``sum p log(p / q) - p + q`` with ``0 log 0 = 0``."""
    ratio = torch.where(p > 0, p / torch.where(q > 0, q, 1.0), 1.0)
    return (torch.where(p > 0, p * torch.log(ratio), 0.0) - p + q).sum(dims)


def _primal(plan, cost, a, b, eps) -> torch.Tensor:
    """Primal objective of the entropic problem at ``plan`` ``(T, n, m)``."""
    outer = a.unsqueeze(2) * b.unsqueeze(1)
    return (
        (plan * cost.unsqueeze(0)).sum((1, 2))
        + eps * _kl(plan, outer, (1, 2))
        + _kl(plan.sum(2), a, 1)
        + _kl(plan.sum(1), b, 1)
    )
