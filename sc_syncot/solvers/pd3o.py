"""Yan's PD3O and Condat-Vu for ``min_x f(x) + g(x) + h(A x)`` with ``f`` smooth (math.md section 3).

    x   = prox_{gamma g}(z)
    s+  = prox_{delta h*}((I - gamma delta A A^T) s + delta A (2 x - z - gamma grad f(x)))
    z+  = x - gamma grad f(x) - gamma A^T s+

converges for ``gamma < 2 / L`` (``L`` the Lipschitz constant of ``grad f``) and ``gamma delta ||A||^2 <= 1``;
with ``f = 0`` it is the Chambolle-Pock iteration. Condat-Vu,

    x+  = prox_{tau g}(x - tau grad f(x) - tau A^T s)
    s+  = prox_{sigma h*}(s + sigma A (2 x+ - x)),

converges for ``1 / tau - sigma ||A||^2 > L / 2``. For Kantorovich secondaries ``g`` is the projection onto the
balance equation, ``h`` the primary action after interpolation and ``f`` the secondaries' action
(:mod:`.kantorovich_solver`, ``solve(..., method="pd3o" | "condat_vu")``).

Stopping follows :func:`~sc_syncot.solvers.chambolle_pock`: the relative objective change per iteration below
``tol`` and the fixed-point residual per unit step, ``||z+ - z|| / (gamma ||A^T s+||)``, below ``sqrt(tol)``, on two
checks in a row.

References
----------
L. Condat, "A primal-dual splitting method for convex optimization involving Lipschitzian, proximable and linear
composite terms", J. Optim. Theory Appl. 158 (2013); B. C. Vu, "A splitting algorithm for dual monotone
inclusions involving cocoercive operators", Adv. Comput. Math. 38 (2013); M. Yan, "A new primal-dual algorithm for
minimizing the sum of three functions with a linear operator", J. Sci. Comput. 76 (2018).
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm.auto import tqdm

from .chambolle_pock import ConvergenceMonitor, PrimalDualOperators, PrimalDualState, _norm


class SmoothOperators(PrimalDualOperators, Protocol):
    """The operators of :class:`PrimalDualOperators` plus a smooth term."""

    def smooth(self, x: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
        """``(f(x), grad f(x))``."""


def pd3o(
    ops: SmoothOperators,
    state: PrimalDualState,
    *,
    tol: float = 1e-6,
    max_iter: int = 5000,
    check_every: int = 20,
    progress: bool = False,
) -> PrimalDualState:
    """Run PD3O from ``state`` (``x`` is the point ``z``, ``tau`` is ``gamma``, ``sigma`` the dual step)."""
    z, s = state.x, state.y
    gamma, delta = state.tau, state.sigma
    bar = tqdm(total=max_iter, disable=not progress, desc="sc_syncot (PD3O)", leave=False)
    monitor = ConvergenceMonitor(state, tol, bar, name="PD3O")
    x = v = None
    try:
        for it in range(state.n_iter + 1, state.n_iter + max_iter + 1):
            x = [t.clone() for t in z]
            ops.primal_prox_(x)
            smooth_value, grad = ops.smooth(x)
            step = torch._foreach_add(x, grad, alpha=-gamma)  # x - gamma grad f(x)
            lifted = torch._foreach_sub(torch._foreach_add(step, x), z)  # 2x - z - gamma grad f(x)
            w = s - (gamma * delta) * ops.apply(ops.adjoint(s)) + delta * ops.apply(lifted)
            s, v = ops.dual_prox(w, delta)
            z_new = torch._foreach_add(step, ops.adjoint(s), alpha=-gamma)
            stop = False
            if it % check_every == 0 or it == state.n_iter + max_iter:
                # the change per unit step, relative to the dual term: a tiny step does not look converged
                residual = _norm(torch._foreach_sub(z_new, z)) / gamma / max(_norm(ops.adjoint(s)), 1e-300)
                objective = ops.objective(v) + smooth_value
                stop = monitor.check(it, residual, residual, objective, tau=gamma, sigma=delta, smooth=smooth_value)
            z = z_new
            state.n_iter = it
            if stop:
                state.converged = True
                break
    finally:
        bar.close()
    # report the projected point x (it satisfies the balance equation), not z
    state.x, state.y, state.v = x, s, v
    return state


def condat_vu(
    ops: SmoothOperators,
    state: PrimalDualState,
    *,
    tol: float = 1e-6,
    max_iter: int = 5000,
    check_every: int = 20,
    progress: bool = False,
) -> PrimalDualState:
    """Run Condat-Vu from ``state`` (``x`` the primal point, ``tau`` and ``sigma`` the steps); stops as :func:`pd3o`."""
    x, s = state.x, state.y
    tau, sigma = state.tau, state.sigma
    bar = tqdm(total=max_iter, disable=not progress, desc="sc_syncot (Condat-Vu)", leave=False)
    monitor = ConvergenceMonitor(state, tol, bar, name="Condat-Vu")
    v = None
    try:
        for it in range(state.n_iter + 1, state.n_iter + max_iter + 1):
            smooth_value, grad = ops.smooth(x)
            x_new = torch._foreach_sub(x, torch._foreach_add(grad, ops.adjoint(s)), alpha=tau)
            ops.primal_prox_(x_new)
            x_bar = torch._foreach_lerp(x, x_new, 2.0)  # 2 x+ - x
            s, v = ops.dual_prox(s + sigma * ops.apply(x_bar), sigma)
            stop = False
            if it % check_every == 0 or it == state.n_iter + max_iter:
                residual = _norm(torch._foreach_sub(x_new, x)) / tau / max(_norm(ops.adjoint(s)), 1e-300)
                objective = ops.objective(v) + smooth_value
                stop = monitor.check(it, residual, residual, objective, tau=tau, sigma=sigma, smooth=smooth_value)
            x = x_new
            state.n_iter = it
            if stop:
                state.converged = True
                break
    finally:
        bar.close()
    state.x, state.y, state.v = x, s, v
    return state
