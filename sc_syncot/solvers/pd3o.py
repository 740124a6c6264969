"""Yan's PD3O and Condat-Vu for ``min_x f(x) + g(x) + h(A x)`` with ``f`` smooth (Mathematics page, section 3).

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

from .chambolle_pock import ConvergenceMonitor, PrimalDualOperators, PrimalDualState, _norm, run_loop


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
    gamma, delta = state.tau, state.sigma
    it_state = {"z": state.x, "s": state.y, "x": None, "v": None}

    def step(it: int, check: bool, monitor: ConvergenceMonitor) -> bool:
        z, s = it_state["z"], it_state["s"]
        x = [t.clone() for t in z]
        ops.primal_prox_(x)
        smooth_value, grad = ops.smooth(x)
        forward = torch._foreach_add(x, grad, alpha=-gamma)  # x - gamma grad f(x)
        lifted = torch._foreach_sub(torch._foreach_add(forward, x), z)  # 2x - z - gamma grad f(x)
        w = s - (gamma * delta) * ops.apply(ops.adjoint(s)) + delta * ops.apply(lifted)
        s, v = ops.dual_prox(w, delta)
        z_new = torch._foreach_add(forward, ops.adjoint(s), alpha=-gamma)
        stop = check and _check_smooth(monitor, ops, it, z, z_new, s, v, smooth_value, gamma, delta)
        it_state.update(z=z_new, s=s, x=x, v=v)
        return stop

    run_loop(state, step, tol=tol, max_iter=max_iter, check_every=check_every, progress=progress, name="PD3O")
    # report the projected point x (it satisfies the balance equation), not z
    state.x, state.y, state.v = it_state["x"], it_state["s"], it_state["v"]
    return state


def _check_smooth(monitor, ops, it, x, x_new, s, v, smooth_value, step, dual_step) -> bool:
    """The smooth splittings' check: the change per unit step relative to the dual term, as both residuals.

    Relative to the dual term so that a tiny step does not look converged.
    """
    residual = _norm(torch._foreach_sub(x_new, x)) / step / max(_norm(ops.adjoint(s)), 1e-300)
    objective = ops.objective(v) + smooth_value
    return monitor.check(it, residual, residual, objective, tau=step, sigma=dual_step, smooth=smooth_value)


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
    tau, sigma = state.tau, state.sigma
    it_state = {"x": state.x, "s": state.y, "v": None}

    def step(it: int, check: bool, monitor: ConvergenceMonitor) -> bool:
        x, s = it_state["x"], it_state["s"]
        smooth_value, grad = ops.smooth(x)
        x_new = torch._foreach_sub(x, torch._foreach_add(grad, ops.adjoint(s)), alpha=tau)
        ops.primal_prox_(x_new)
        x_bar = torch._foreach_lerp(x, x_new, 2.0)  # 2 x+ - x
        s, v = ops.dual_prox(s + sigma * ops.apply(x_bar), sigma)
        stop = check and _check_smooth(monitor, ops, it, x, x_new, s, v, smooth_value, tau, sigma)
        it_state.update(x=x_new, s=s, v=v)
        return stop

    run_loop(state, step, tol=tol, max_iter=max_iter, check_every=check_every, progress=progress, name="Condat-Vu")
    state.x, state.y, state.v = it_state["x"], it_state["s"], it_state["v"]
    return state
