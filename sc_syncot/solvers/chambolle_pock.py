"""Chambolle-Pock primal-dual iterations for ``min_x F(K x) + G(x)`` (Mathematics page, section 3).

The iteration (primal step first, then the dual step at the extrapolated point) is

    x+ = prox_{tau G}(x - tau K* y),    y+ = prox_{sigma F*}(y + sigma K (2 x+ - x)),

which converges for ``sigma tau ||K||^2 < 1``. Residuals follow Goldstein, Li & Yuan (2015):

    P = (x - x+)/tau - K*(y - y+),      D = (y - y+)/sigma - K(x - x+),

measured relative to ``||K* y+||`` and ``||K x+||``; with ``adaptive=True`` the ratio ``tau / sigma`` is moved to
balance them (their residual-balancing rule with decaying adaptivity, which keeps convergence).

Stopping: the residuals decay as O(1/k) while the objective error decays about quadratically in them (on the
transport problems here, residuals of 1e-3 go with objective errors near 1e-4). So ``tol`` bounds the relative
objective change per iteration, and the residuals must be below ``sqrt(tol)``; both on two checks in a row.

References
----------
A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with applications to imaging",
J. Math. Imaging Vis. 40 (2011). T. Goldstein, M. Li, X. Yuan, "Adaptive primal-dual splitting methods for
statistical learning and image processing", NeurIPS (2015).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .._settings import show_progress

logger = logging.getLogger("sc_syncot")
# Where a progress bar was asked for but tqdm draws none (output to a log file, not a terminal), an info line on
# the iteration this often instead: a minutes-long fit then still says where it is, without flooding the log.
LOG_SECONDS = 30.0


class PrimalDualOperators(Protocol):
    """What the iteration needs to know of a problem; primal points are lists of tensors."""

    def apply(self, x: list[torch.Tensor]) -> torch.Tensor:
        """``K x``."""

    def adjoint(self, y: torch.Tensor) -> list[torch.Tensor]:
        """``K* y``."""

    def primal_prox_(self, x: list[torch.Tensor]) -> None:
        """``prox_{tau G}`` in place (here a projection, independent of ``tau``)."""

    def dual_prox(self, z: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prox_{sigma F*}(z), prox_{F / sigma}(z / sigma))``: the new dual point and the primal point behind it."""

    def objective(self, v: torch.Tensor) -> float:
        """``F(v)`` for a point ``v`` in the domain of ``F``."""

    # Optional: ``step(x, y, tau, sigma) -> (x+, y+, v)`` replaces :func:`primal_dual_step` (e.g. a compiled one),
    # and ``relaxed_step(x, y, tau, sigma, r) -> (x + r (x+ - x), y + r (y+ - y), v)`` the over-relaxed step between
    # residual checks (a compiled one relaxes inside its own loops).


@dataclass
class PrimalDualState:
    """Iterates, steps and history of a primal-dual run."""

    x: list[torch.Tensor]
    y: torch.Tensor
    v: torch.Tensor | None = None
    tau: float = 1.0
    sigma: float = 0.99
    n_iter: int = 0
    converged: bool = False
    history: dict[str, list[float]] = field(
        default_factory=lambda: {
            k: []
            for k in ("iteration", "primal_residual", "dual_residual", "objective", "relative_change", "tau", "sigma")
        }
    )


def _norm(tensors) -> float:
    """Euclidean norm of a tensor or of a list of them, read back from the device once."""
    if isinstance(tensors, torch.Tensor):
        return float(torch.linalg.vector_norm(tensors))
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))))


class ConvergenceMonitor:
    """The stopping rule and history shared by the primal-dual loops (see the module docstring)."""

    def __init__(self, state: PrimalDualState, tol: float, bar, name: str = "primal-dual", log_seconds=None):
        self.state, self.tol, self.bar, self.name = state, tol, bar, name
        self.last_objective, self.last_it, self.passed = None, state.n_iter, 0
        self.first = state.n_iter  # the bar counts this loop's iterations
        self.cap = state.n_iter + (bar.total or 0)  # the last iteration this loop may run (a continuation counts on)
        self.log_seconds, self.last_log = log_seconds, time.monotonic()  # log lines in place of a bar not drawn

    def check(self, it: int, primal: float, dual: float, objective: float, **extra: float) -> bool:
        """Record one check; ``True`` once the criteria held on two checks in a row."""
        if not all(math.isfinite(val) for val in (primal, dual, objective)):
            raise FloatingPointError(
                f"the {self.name} iterates became non-finite at iteration {it}; "
                "check the inputs' scale or try dtype=torch.float64"
            )
        change = (
            math.inf
            if self.last_objective is None
            else abs(objective - self.last_objective) / max(abs(objective), 1e-300) / (it - self.last_it)
        )
        self.last_objective, self.last_it = objective, it
        record = {
            "iteration": it,
            "primal_residual": primal,
            "dual_residual": dual,
            "objective": objective,
            "relative_change": change,
            **extra,
        }
        for key, val in record.items():
            self.state.history.setdefault(key, []).append(float(val))
        self.bar.update(it - self.first - self.bar.n)
        residual = max(primal, dual)  # what the stopping rule compares with sqrt(tol)
        self.bar.set_postfix(residual=f"{residual:.1e}", change=f"{change:.1e}", objective=f"{objective:.5g}")
        if self.log_seconds is not None and time.monotonic() - self.last_log >= self.log_seconds:
            self.last_log = time.monotonic()
            logger.info(
                "sc_syncot (%s): iteration %d (at most %d), residual %.1e, change %.1e (stops below %.1e and %.1e)",
                self.name, it, self.cap, residual, change, math.sqrt(self.tol), self.tol,
            )  # fmt: skip
        self.passed = self.passed + 1 if (max(primal, dual) < math.sqrt(self.tol) and change < self.tol) else 0
        return self.passed >= 2


def run_loop(state: PrimalDualState, step, *, tol: float, max_iter: int, check_every: int, progress: bool, name: str):
    """Drive ``step(it, check, monitor) -> stop`` for up to ``max_iter`` iterations from ``state.n_iter``.

    ``check`` is true every ``check_every`` iterations and on the last one; the loop keeps ``state.n_iter`` and
    ``state.converged`` and closes the progress bar however it ends.
    """
    # tqdm.auto: a widget in notebooks, a bar on terminals, info lines in log files, nothing at verbosity 0
    disable = show_progress(progress)
    bar = tqdm(total=max_iter, disable=disable, desc=f"sc_syncot ({name})", leave=False)
    not_drawn = disable is None and bar.disable  # asked for, left to tqdm, which found no terminal
    monitor = ConvergenceMonitor(state, tol, bar, name=name, log_seconds=LOG_SECONDS if not_drawn else None)
    first, last = state.n_iter, state.n_iter + max_iter
    try:
        for it in range(first + 1, last + 1):
            stop = step(it, it % check_every == 0 or it == last, monitor)
            state.n_iter = it
            if stop:
                state.converged = True
                break
    finally:
        if state.converged:  # end the bar where the fit converged, not at a max_iter it never reached
            bar.total = state.n_iter - first
        bar.update(state.n_iter - first - bar.n)
        bar.close()


def primal_dual_step(ops: PrimalDualOperators, x: list[torch.Tensor], y: torch.Tensor, tau: float, sigma: float):
    """One plain Chambolle-Pock step: ``(x+, y+, v)`` with ``v`` the primal point behind ``y+``."""
    x_new = torch._foreach_add(x, ops.adjoint(y), alpha=-tau)
    ops.primal_prox_(x_new)
    x_bar = torch._foreach_lerp(x, x_new, 2.0)  # 2 x+ - x
    y_new, v = ops.dual_prox(torch.add(y, ops.apply(x_bar), alpha=sigma), sigma)
    return x_new, y_new, v


def chambolle_pock(
    ops: PrimalDualOperators,
    state: PrimalDualState,
    *,
    tol: float = 1e-6,
    max_iter: int = 5000,
    check_every: int = 20,
    adaptive: bool = True,
    relaxation: float = 1.0,
    progress: bool = False,
) -> PrimalDualState:
    """Run Chambolle-Pock iterations from ``state`` until the residuals and the objective change fall below ``tol``.

    Parameters
    ----------
    ops
        The problem's operators.
    state
        Starting iterates and steps (``tau * sigma`` must be below ``1 / ||K||^2``); updated and returned.
    tol
        Stop when, on two consecutive checks, the relative objective change per iteration is below ``tol`` and
        the relative primal and dual residuals are below ``sqrt(tol)``.
    max_iter
        Iteration cap; ``state.converged`` stays ``False`` when it is reached.
    check_every
        Residuals, objective and step adaptation are evaluated every ``check_every`` iterations.
    adaptive
        Balance the residuals by adapting ``tau / sigma`` (Goldstein et al.).
    relaxation
        Over-relaxation ``r`` in ``[1, 2)``: ``(x, y) <- (x, y) + r ((x+, y+) - (x, y))`` (Condat 2013 / He-Yuan);
        1 is the plain iteration.
    progress
        Show a progress bar (tqdm.auto: a widget in notebooks, a bar on terminals; in log files, which a bar would
        flood, an info line every 30 s instead; nothing at ``sc_syncot.settings.verbosity`` 0). It ends at the
        iteration where the solve converged, with the current residual in its postfix.
    """
    it_state = {"x": state.x, "y": state.y, "v": None, "tau": state.tau, "sigma": state.sigma, "adapt": 0.5}
    decay, band = 0.95, 1.5
    step_fn = getattr(ops, "step", None)

    # looked up on the class: wrappers that pass other attributes on to a base (soft ends) have a step of their own
    relaxed_fn = ops.relaxed_step if hasattr(type(ops), "relaxed_step") else None

    def step(it: int, check: bool, monitor: ConvergenceMonitor) -> bool:
        x, y, tau, sigma = it_state["x"], it_state["y"], it_state["tau"], it_state["sigma"]
        if relaxed_fn is not None and relaxation != 1.0 and not check:  # relaxed in the step's own passes
            it_state["x"], it_state["y"], it_state["v"] = relaxed_fn(x, y, tau, sigma, relaxation)
            return False
        x_new, y_new, it_state["v"] = step_fn(x, y, tau, sigma) if step_fn else primal_dual_step(ops, x, y, tau, sigma)
        stop = False
        if check:
            dx = torch._foreach_sub(x, x_new)
            dy = y - y_new
            primal = torch._foreach_sub(torch._foreach_div(dx, tau), ops.adjoint(dy))
            dual = dy.div_(sigma).sub_(ops.apply(dx))
            rp = _norm(primal) / max(_norm(ops.adjoint(y_new)), 1e-300)
            rd = _norm(dual) / max(_norm(ops.apply(x_new)), 1e-300)
            stop = monitor.check(it, rp, rd, ops.objective(it_state["v"]), tau=tau, sigma=sigma)
            if adaptive and not stop:
                _adapt_steps(it_state, rp, rd, band, decay)
        if relaxation != 1.0:  # after the residuals, which are those of the plain step
            x_new = torch._foreach_lerp(x, x_new, relaxation)
            y_new = torch.lerp(y, y_new, relaxation)
        it_state["x"], it_state["y"] = x_new, y_new
        return stop

    run_loop(state, step, tol=tol, max_iter=max_iter, check_every=check_every, progress=progress, name="primal-dual")
    state.x, state.y, state.v = it_state["x"], it_state["y"], it_state["v"]
    state.tau, state.sigma = it_state["tau"], it_state["sigma"]
    return state


def _adapt_steps(it_state: dict, rp: float, rd: float, band: float, decay: float) -> None:
    """Residual balancing (Goldstein et al.): a larger primal residual asks for a larger ``tau``, and conversely."""
    tau, sigma, adapt = it_state["tau"], it_state["sigma"], it_state["adapt"]
    if rp > band * rd:
        it_state.update(tau=tau / (1 - adapt), sigma=sigma * (1 - adapt), adapt=adapt * decay)
    elif rd > band * rp:
        it_state.update(tau=tau * (1 - adapt), sigma=sigma / (1 - adapt), adapt=adapt * decay)
