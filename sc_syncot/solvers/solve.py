"""``solve``: the front end that turns a :class:`SyncOTProblem` into a :class:`SyncOTResult`.

It resolves the device and dtype, measures lengths in units of the box's largest extent and scales each problem
of the batch to unit mean density (both exact: the action is quadratic in lengths and 1-homogeneous in the
unknowns), folds the secondaries into the metric ``G(x)`` and ``alpha``, and runs
Chambolle-Pock on ``min_U F(I U) + i_C(U)`` (Mathematics page, section 3): ``F`` the action summed over centred cells,
``I`` the interpolation, ``C`` the balance equation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

import numpy as np
import torch

from .._options import changed
from .._settings import warn
from . import fused
from .chambolle_pock import PrimalDualState, chambolle_pock, primal_dual_step
from .endpoints import EndBlock, SoftEndpointOperators, operator_norm
from .grid import Grid
from .problem import MongeSecondary, SyncOTProblem
from .projection import BalanceProjector
from .prox import action_density, prox_action
from .result import SyncOTResult
from .staggered import Staggered, interpolate, interpolate_adjoint

logger = logging.getLogger("sc_syncot")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA was requested but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device: {device} was requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


PROX_RTOL = 1e-12  # Newton's tolerance in the proximal map (see prox_action)


class TransportOperators:
    """``K = I``, the projection onto ``C`` and the proximal maps of the action, for :func:`chambolle_pock`.

    With ``compiled=True`` each iteration runs as two ``torch.compile`` graphs (primal step with the projection;
    dual step with the proximal map at a fixed number of Newton steps), which fuses the element-wise passes
    that dominate the eager iteration. The Newton count starts at 4 (what a warm start needs on the oracles)
    and grows when the test of :func:`prox_action` fails; after 8 the eager map finishes the step.

    A ``growth_prior`` ``g_0`` (``(B|1, *S)``, see :class:`.SyncOTProblem`) turns the source term into
    ``(z - h rho)^2 / rho = z^2 / rho - 2 h z + h^2 rho`` with ``z = s zeta``, ``h = s g_0`` (``s = sqrt(alpha)``):
    the action plus a linear term ``<c, v>``, still 1-homogeneous, whose proximal map is the action's at ``z - c``
    (as on a graph, :class:`.GraphTransportOperators`).
    """

    MAX_FIXED_NEWTON = 8

    def __init__(
        self,
        projector: BalanceProjector,
        ndim: int,
        weights,
        rotation,
        cell_weight: torch.Tensor,
        growth_prior: torch.Tensor | None = None,
        compiled: bool = False,
    ):
        self.projector = projector
        self.ndim = ndim
        self.weights = weights
        self.rotation = rotation
        self.cell_weight = cell_weight  # dt * cell volume * density scale, per problem, shape (B,)
        self._rho_guess = None  # last prox's density: a warm start for Newton
        self.compiled = compiled
        self._ran: set = set()
        self._failed_key = None
        self._n_newton, self._accepted = 4, 0
        self._steps = None  # ((tau, sigma), the same as a tensor) of the compiled step
        self.shift, self.prior_slope = self._prior_shift(growth_prior)

    def _prior_shift(self, growth_prior) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A growth prior's linear term ``c`` ``(C, B|1, 1, *S)`` and ``h = s g_0`` ``(B|1, 1, *S)``; or ``None``s.

        The source channel (the last) holds ``z = s zeta`` with weight 1, so ``(z - h rho)^2 / rho`` is
        ``alpha (zeta - g_0 rho)^2 / rho``.
        """
        if growth_prior is None:
            return None, None
        zeta_scale = self.projector.zeta_scale
        if zeta_scale is None:
            raise ValueError("growth_prior: a growth prior needs an unbalanced problem (set delta)")
        h = growth_prior.unsqueeze(1) * zeta_scale  # (B|1, 1, *S)
        shift = h.new_zeros(self.ndim + 2, *h.shape)
        shift[0] = h.square()
        shift[-1] = -2.0 * h
        return shift, h

    def apply(self, x):
        """``I x``."""
        return interpolate(Staggered.from_tensors(x, self.ndim))

    def adjoint(self, y):
        """``I* y``."""
        return interpolate_adjoint(y, self.ndim).tensors()

    def primal_prox_(self, x):
        """Projection onto the balance equation, in place."""
        self.projector.project_(Staggered.from_tensors(x, self.ndim))

    def dual_prox(self, z, sigma):
        """``(z - prox_F(z), prox_F(z) / sigma)``."""
        # F* is an indicator (F is 1-homogeneous), so prox_{sigma F*}(z) = z - prox_F(z) for every sigma; with a
        # prior's linear term c, F + <c, .> has prox_F(z - c), and its conjugate the set shifted by c.
        shifted = z if self.shift is None else z - self.shift
        p = prox_action(shifted, 1.0, self.weights, self.rotation, start=self._rho_guess)
        self._rho_guess = p[0]
        return z - p, p / sigma

    def step(self, x, y, tau, sigma):
        """One Chambolle-Pock step, compiled when ``compiled`` (see the class docstring)."""
        out = self._try_compiled(x, y, tau, sigma, 1.0) if self.compiled else None
        return primal_dual_step(self, x, y, tau, sigma) if out is None else out

    def relaxed_step(self, x, y, tau, sigma, relaxation: float):
        """One step over-relaxed by ``r``: ``(x + r (x+ - x), y + r (y+ - y), v)``.

        Compiled, the relaxation happens in the graphs' own loops (the relaxed points are what they write instead
        of ``x+`` and ``y+``), which saves the separate passes of ``torch.lerp`` over both iterates. Otherwise it is
        :meth:`step` (a subclass's own, such as the synchronized operators' relinearizing one) and the lerps.
        """
        out = self._try_compiled(x, y, tau, sigma, relaxation) if self.compiled else None
        if out is not None:
            return out
        x_new, y_new, v = self.step(x, y, tau, sigma)
        return torch._foreach_lerp(x, x_new, relaxation), torch.lerp(y, y_new, relaxation), v

    def _try_compiled(self, x, y, tau, sigma, relaxation):
        """:meth:`_compiled_step`, or ``None`` (with a warning, and ``compiled`` off) where it did not compile."""
        try:
            return self._compiled_step(x, y, tau, sigma, relaxation)
        except fused.FellBackToEager:
            # the step's graphs ran eagerly; redo it eagerly, where the dual step's Newton count is not fixed
            warn(
                "torch.compile ran this problem's shapes eagerly (torch._dynamo.config.recompile_limit "
                f"reached, {torch._dynamo.config.recompile_limit}); continuing eagerly, res.compiled is False. "
                "Raise the limit, or solve(compile=False)",
                RuntimeWarning,
            )
            self.compiled = False
        except Exception as err:  # noqa: BLE001 (only a graph's first call, where it compiles, falls back)
            if self._failed_key in self._ran:
                raise
            warn(
                f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); continuing without it "
                "(solve(compile=False) skips the attempt)",
                RuntimeWarning,
            )
            self.compiled = False
        return None

    def _compiled_step(self, x, y, tau, sigma, relaxation):
        # steps as a tensor, so that the graphs do not recompile as they adapt; rebuilt only when they change (at
        # residual checks), since building it is a blocking host-to-device copy on CUDA
        key = (tau, sigma, relaxation)
        if self._steps is None or self._steps[0] != key:
            self._steps = (key, torch.tensor(key, dtype=y.dtype, device=y.device))
        t = self._steps[1]
        pr = self.projector
        static = {"ndim": self.ndim, "dt": pr.dt, "spacing": pr.spacing, "zeta_scale": pr.zeta_scale}
        x_relaxed, x_bar = self._run(("primal", static), x, y, t, *pr.parts())
        if self._rho_guess is None:
            self._rho_guess = torch.zeros_like(y[0])
        threshold = math.sqrt(PROX_RTOL)
        while self._n_newton <= self.MAX_FIXED_NEWTON:
            static = {"ndim": self.ndim, "n_newton": self._n_newton}
            y_relaxed, v, residual, scale = self._run(
                ("dual", static), y, x_bar, t, self._rho_guess, self.weights, self.rotation, self.shift
            )
            if float(residual / scale) <= threshold:  # one host read
                self._rho_guess = v[0] * sigma
                self._accepted += 1
                if self._accepted % 50 == 0 and self._n_newton > 2:  # try fewer steps now and then
                    self._n_newton -= 1
                return x_relaxed, y_relaxed, v
            self._n_newton += 1
        self._n_newton = self.MAX_FIXED_NEWTON
        y_new, v = self.dual_prox(torch.add(y, self.apply(x_bar), alpha=sigma), sigma)
        return x_relaxed, y_new if relaxation == 1.0 else torch.lerp(y, y_new, relaxation), v

    def _run(self, key, *args):
        """Call the graph ``key = (kind, static arguments)``, remembering which ones have compiled and run."""
        kind, static = key
        name = (kind, *sorted(static.items()))
        self._failed_key = name
        try:
            out = fused.call(key, *args)
        except fused.FellBackToEager:
            self._ran.add(name)  # it ran (eagerly): a later failure is not a first compile's
            raise
        self._ran.add(name)
        return out

    def objective_per_problem(self, v) -> torch.Tensor:
        """The action of the centred point ``v``, per problem, in the problems' own units."""
        value = action_density(v, self.weights, self.rotation).flatten(1).sum(1)
        if self.shift is not None:  # the growth prior's linear term
            value = value + (self.shift * v).transpose(0, 1).flatten(1).sum(1)
        return value * self.cell_weight

    def objective(self, v) -> float:
        """Total action over the batch."""
        return float(self.objective_per_problem(v).sum())


def _metric_factors(problem: SyncOTProblem, opts: dict):
    """Weights ``(C-1, B|1, 1, *S)`` and rotation ``(d, d, B|1, 1, *S)`` of the folded metric (None when trivial)."""
    d = problem.grid.ndim
    g = problem.metric_field()
    if np.allclose(g, np.eye(d), rtol=0, atol=1e-14):
        return None, None
    off = g - np.einsum("...ii->...i", g)[..., None] * np.eye(d)
    if np.abs(off).max() <= 1e-14 * np.abs(g).max():
        evals, evecs = np.einsum("...ii->...i", g), None
    else:
        evals, evecs = np.linalg.eigh(g)
    extra = [np.ones_like(evals[..., :1])] if problem.delta is not None else []
    w = np.moveaxis(np.concatenate([evals, *extra], axis=-1), -1, 0)[:, :, None]
    # Contiguous: strided (moved-axis) operands keep the compiled loops from vectorizing.
    weights = torch.as_tensor(np.ascontiguousarray(w), **opts)
    rotation = None
    if evecs is not None:
        rotation = torch.as_tensor(np.ascontiguousarray(np.moveaxis(evecs, (-2, -1), (0, 1))[:, :, :, None]), **opts)
    return weights, rotation


def default_step_ratio(problem: SyncOTProblem) -> float:
    """Initial ``tau / sigma``: ``3 L^2``, ``L`` the largest extent of the box (3 in the unit box :func:`solve` uses).

    With densities scaled to unit mean, the dual potentials scale like squared distances in the box. The factor
    3 was chosen on the oracles of the Mathematics page (benchmarks/solver.py); residual balancing then adapts the
    ratio. Problems dominated by growth rather than transport converge faster from ``3 alpha`` (``alpha = delta^2``
    without secondaries): about 200 instead of 500 iterations on the pure-growth oracle, while problems that
    transport mass need the larger ratio (two bumps: 1,000 iterations from ``3 L^2``, 2,100 from ``3 alpha``).
    """
    return 3.0 * box_length(problem.geometry) ** 2


def box_length(geometry) -> float:
    """The length unit of the solve: a grid's largest extent, or the largest side of a graph's bounding box."""
    if isinstance(geometry, Grid):
        return max(hi - lo for lo, hi in geometry.bounds)
    return geometry.extent


def _initial_point(grid, rho0, rho1, zeta_scale) -> Staggered:
    """Linear interpolation in time, no flow; the source accounts for the mass change."""
    t = torch.linspace(0, 1, grid.n_time + 1, dtype=rho0.dtype, device=rho0.device)
    t = t.reshape(1, -1, *([1] * grid.ndim))
    rho = (1 - t) * rho0.unsqueeze(1) + t * rho1.unsqueeze(1)
    batch = rho0.shape[0]
    m = []
    for i, n in enumerate(grid.shape):
        shape = [batch, grid.n_time, *grid.shape]
        shape[2 + i] = n + 1
        m.append(rho0.new_zeros(shape))
    zeta = None
    if zeta_scale is not None:
        zeta = (zeta_scale * (rho1 - rho0)).unsqueeze(1).expand(-1, grid.n_time, *grid.shape).contiguous()
    return Staggered(rho, m, zeta)


def solve(
    problem: SyncOTProblem,
    *,
    tol: float = 1e-6,
    max_iter: int = 5000,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    progress: bool = False,
    check_every: int = 20,
    step_ratio: float | None = None,
    adaptive: bool = True,
    relaxation: float = 1.8,
    support_threshold: float = 1e-4,
    method: str = "chambolle_pock",
    sinkhorn_sweeps: int | str = 1,
    sinkhorn_tol: float = 1e-4,
    sinkhorn_max_iter: int = 5000,
    compile: bool | str = "auto",
    projection: str = "auto",
) -> SyncOTResult:
    r"""Solve a (batch of) synchronized unbalanced dynamic transport problem(s) with Chambolle-Pock.

    .. math::

        \min_{\rho, m, \zeta} \int_0^1 \int_\Omega \frac{m^\top G(x) m + \alpha \zeta^2}{\rho} \, dx\, dt
        \quad \text{s.t.} \quad \partial_t \rho + \nabla\cdot m = \zeta,\ \rho(0) = \rho_0,\ \rho(1) = \rho_1,

    on the staggered grid of Papadakis, Peyre & Oudet (Mathematics page, section 3), or on a graph of states in any
    dimension (Mathematics page, section 7: node masses, edge momenta, node sources; the same iteration, stopping rule
    and unit box). Kantorovich secondaries add :math:`\lambda \sum_k HK^2(K^\top\rho_k, K^\top\rho_{k+1}) / \Delta t`
    (Mathematics page, section 2) as debiased Sinkhorn divergences; see
    :mod:`~sc_syncot.solvers.kantorovich_solver` for how they enter the iteration.
    With ``problem.tau`` set, an end is soft: ``rho(e)`` is an unknown paying ``tau KL(rho(e) | rho_e)`` (Mathematics
    page, section 4; :mod:`~sc_syncot.solvers.endpoints`), reported as ``costs["start_penalty"]`` /
    ``costs["end_penalty"]`` and included in the total; the fitted ends are ``res.rho`` at the first and last face.

    Parameters
    ----------
    problem
        What to solve.
    tol
        Stop when the relative objective change per iteration is below ``tol`` and the relative primal and dual
        residuals below ``sqrt(tol)`` (see :func:`~sc_syncot.solvers.chambolle_pock`).
    max_iter
        Iteration cap.
    device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype
        Floating type of the iterates; ``torch.float64`` by default (and the only one Kantorovich secondaries take).
    progress
        Show a progress bar (tqdm.auto: a widget in notebooks, a bar on terminals; in log files, which a bar would
        flood, an info line every 30 s instead; nothing at ``sc_syncot.settings.verbosity`` 0). It ends at the
        iteration where the solve converged, with the current residual in its postfix.
    check_every
        Iterations between residual checks.
    step_ratio
        Initial ``tau / sigma`` in the problem's units (default: :func:`default_step_ratio`), then adapted unless
        ``adaptive=False``. The solve runs in a unit box (:func:`unit_box`), where it is ``step_ratio / L^2``.
    adaptive
        Adapt ``tau / sigma`` to balance the residuals.
    relaxation
        Over-relaxation of the primal-dual step, in ``[1, 2)``.
    support_threshold
        Velocity and growth are set to zero where the density is below this fraction of its maximum.
    method
        Splitting used when there are Kantorovich secondaries: ``"chambolle_pock"`` (their proximal maps, the
        default), ``"pd3o"`` or ``"condat_vu"`` (their gradients, for comparison). Problems without Kantorovich
        secondaries always use Chambolle-Pock.
    sinkhorn_sweeps
        Warm-started Sinkhorn sweeps per iteration for each Kantorovich secondary's proximal map: a number, or
        ``"auto"`` (from 1, doubled up to 64 while the Sinkhorn state lags behind the iteration, a relative gap
        above 1e-2 at a residual check, and halved below 1e-3). One sweep suffices at moderate epsilon (gap 5e-3
        at 64^2 x 32 with 1000 points, where ``"auto"`` spends more sweeps for no gain and did not meet the stopping
        rule in 5000 iterations); at small epsilon it falls behind, the proximal maps, hence the path, are inexact,
        and the solve warns: ``"auto"`` then follows (at epsilon 1e-5 on 60 points the secondary cost went from
        1.48 with one sweep to 0.476, the value of 16 sweeps). A fixed number that leaves the state lagging when
        the stopping rule is met (relative gap above 0.05) is followed by more iterations with ``"auto"`` sweeps
        from where it stopped, within ``max_iter`` (``history["sinkhorn_follow_from"]``: the iteration it began).
    sinkhorn_tol, sinkhorn_max_iter
        Tolerance and sweep cap of the Sinkhorn solves that give the reported secondary costs: the relative duality gap
        of the static HK problems of each path (which bounds the relative error of their entropic value), or the
        relative marginal violation of the W2 ones (default ``1e-4``, below the outer residual's effect on the costs).
        Chambolle-Pock reads the HK costs at its prox point (the marginals of the last proximal map), as it does for the
        primary costs; they reach the converged value within about the outer residual (1e-3 relative at ``tol=1e-6``). A
        solve that stops at the cap is reported in ``history["final_sinkhorn_error"]`` and by a ``RuntimeWarning``; so
        is an iteration that stopped while the Sinkhorn state of its proximal maps was far from optimal
        (``history["sinkhorn_lag"]``).
    compile
        Run each iteration as ``torch.compile`` graphs (fused element-wise loops; needs a C++ compiler on CPU,
        Triton on CUDA): ``True``, ``False``, or ``"auto"`` (from ``2^20`` density unknowns, where the saving
        exceeds the compile time). Results agree with the eager iteration to rounding; when compilation fails, or
        torch runs new shapes eagerly past its recompile limit (raised to 64 here, see :mod:`.fused`), the solve
        warns and continues eagerly, and ``res.compiled`` is ``True`` only when every iteration ran compiled.
        Problems with Kantorovich secondaries run eagerly; so do graphs
        (where ``compile=True`` warns).
    projection
        On a :class:`~sc_syncot.solvers.Graph`, how the balance projection solves its graph Laplacian: ``"eigh"`` (the
        dense eigenbasis, computed once), ``"sparse"`` (one sparse LU per time frequency, on the host) or ``"auto"``
        (``"eigh"`` up to 6,000 nodes). A grid's projection is a DCT in every axis: there only ``"auto"`` is taken.

    Returns
    -------
    SyncOTResult
        ``converged`` is ``False`` (and a ``RuntimeWarning`` says so) when ``max_iter`` was reached first.
    """
    caller_grid = problem.geometry
    problem, length = unit_box(problem)  # solved in a unit box, answered in the caller's units (in_units)
    if step_ratio is not None:
        step_ratio = step_ratio / length**2  # tau / sigma goes like the square of the potentials' lengths
    dev = resolve_device(device)
    dtype = torch.float64 if dtype is None else dtype
    opts = {"dtype": dtype, "device": dev}
    if problem.kantorovich_secondaries and dtype != torch.float64:
        # the log-domain Sinkhorn floors masses at 1e-280 of the reference and shifts sums by up to e^-745
        raise ValueError(f"dtype: Kantorovich secondaries need torch.float64, got {dtype}")
    if method not in ("chambolle_pock", "pd3o", "condat_vu"):
        raise ValueError(f"method: expected 'chambolle_pock', 'pd3o' or 'condat_vu', got {method!r}")
    started = time.monotonic()
    cp_options = {
        "tol": tol, "max_iter": max_iter, "check_every": check_every, "adaptive": adaptive,
        "relaxation": relaxation, "progress": progress,
    }  # fmt: skip
    kantorovich_options = {
        "method": method, "sinkhorn_sweeps": sinkhorn_sweeps, "sinkhorn_tol": sinkhorn_tol,
        "sinkhorn_max_iter": sinkhorn_max_iter,
    }  # fmt: skip
    if step_ratio is None:
        step_ratio = default_step_ratio(problem)
    _check_geometry_options(problem, compile, projection)
    _check_method_options(problem, kantorovich_options, adaptive, relaxation, compile)
    if problem.on_graph:
        from .graph_solve import solve_on_graph  # noqa: PLC0415 (it builds on this module)

        result = solve_on_graph(
            problem, opts, cp_options, kantorovich_options, step_ratio, support_threshold, projection
        )
        return finished(in_units(result, caller_grid, length), tol, started)
    grid = problem.grid
    d = grid.ndim
    box = float(np.prod([hi - lo for lo, hi in grid.bounds]))
    m0, m1 = problem.masses()
    scale = 0.5 * (m0 + m1) / box  # unit mean density per problem
    expand = (-1, *([1] * d))
    rho0 = torch.as_tensor(problem.rho0 / scale.reshape(expand), **opts)
    rho1 = torch.as_tensor(problem.rho1 / scale.reshape(expand), **opts)
    alpha = problem.alpha
    zeta_scale = None if alpha is None else math.sqrt(alpha)
    weights, rotation = _metric_factors(problem, opts)
    free = problem.soft_ends
    projector = BalanceProjector(grid.n_time, grid.spacing, grid.shape, rho0, rho1, zeta_scale, free=free)
    cell_weight = torch.as_tensor(scale * grid.dt * grid.cell_volume, **opts)
    prior = None if problem.growth_prior is None else torch.as_tensor(problem.growth_prior, **opts)

    x0 = _initial_point(grid, rho0, rho1, zeta_scale)
    compiled = _use_compile(compile, x0) and not any(free)  # soft ends run eagerly (see _check_geometry_options)
    projector.project_(x0)
    if problem.kantorovich_secondaries:
        from .kantorovich_solver import run_kantorovich  # noqa: PLC0415 (it builds on this module)

        y_primary = torch.zeros_like(interpolate(x0))
        primary_args = (projector, d, weights, rotation, cell_weight, prior)
        ops, state, v, reports = run_kantorovich(
            problem, primary_args, x0.tensors(), y_primary, scale, opts, cp_options, step_ratio=step_ratio,
            **kantorovich_options,
        )  # fmt: skip
        state.v = v
        penalties = getattr(ops, "final_penalties", (None, None))
        result = _result(problem, ops, state, scale, zeta_scale, support_threshold, dev, reports, penalties)
        return finished(in_units(result, caller_grid, length), tol, started)
    ops = TransportOperators(projector, d, weights, rotation, cell_weight, prior, compiled=compiled)
    if any(free):
        ops = soft_operators(ops, problem, (rho0, rho1), x0.tensors())
    state = run_primal_dual(ops, x0.tensors(), step_ratio, cp_options)
    base, state.v, penalties = unwrap(ops, state.v)
    result = _result(problem, base, state, scale, zeta_scale, support_threshold, dev, penalties=penalties)
    return finished(in_units(result, caller_grid, length), tol, started)


# An unconverged solve whose last objective exceeds this many times the smallest one of its residual checks, with
# a last primal residual above ten times its smallest, diverged: more iterations would not help (the warning says so)
DIVERGED = 100.0
# residual checks per half of an unconverged run below which a stall is not called (too few to tell a cycle)
STALL_CHECKS = 10


def finished(result: SyncOTResult, tol: float, started: float | None = None) -> SyncOTResult:
    """``result``, with a warning when the iteration stopped at ``max_iter`` before the stopping rule held.

    Logs (info) how the solve ended: its iterations, and its seconds since ``started`` (``time.monotonic()``).

    The warning tells a divergence (the objective and the primal residual ended far above their lowest values,
    :data:`DIVERGED`) from a slow convergence: a Kantorovich secondary at weight 0.01 once drove a graph fit's
    objective from 9 to 2e10 and its residual from 1.4e-3 to 0.04, and raising ``max_iter`` would only have
    returned the same wrong path later. It also tells a cycle (no new low of the primal residual in the second
    half of the run, :func:`_stall`) from a slow convergence: sci-CAR's 30 LSI components as a Kantorovich secondary
    kept the residual between 0.02 and 0.07 from iteration 200 to 5,000 while the objective swung between 270 and
    510, and 15,000 iterations ended at an objective of 1e23.
    """
    how = "converged" if result.converged else "stopped unconverged"
    seconds = "" if started is None else f", {time.monotonic() - started:.1f} s"
    logger.info("sc_syncot: solve %s after %d iterations%s", how, result.n_iter, seconds)
    if result.converged:
        return result
    rise = _divergence(result.history)
    if rise is not None:
        warn(
            f"the solver diverged: its objective rose from {rise[0]:.3g} to {rise[1]:.3g} and it stopped after "
            f"{result.n_iter} iterations; the result is not a solution. Check the inputs' scales (weight, delta, "
            "epsilon), or report it with the data",
            RuntimeWarning,
        )
        return result
    stall = _stall(result.history)
    if stall is not None:
        warn(
            f"the solver stopped after {result.n_iter} iterations without converging (tol={tol:g}), and its primal "
            f"residual made no progress over the second half of them (lowest {stall[0]:.3g} at iteration "
            f"{stall[1]:.0f}, at best {stall[2]:.3g} since): it is cycling, and raising max_iter will not help; the "
            "result is not a solution. Check the inputs' scales (weight, delta, epsilon). A Kantorovich secondary "
            "of many near-isotropic components (e.g. 30 LSI components of sparse ATAC) is one known cause: give "
            "it fewer components",
            RuntimeWarning,
        )
        return result
    warn(
        f"the solver stopped after {result.n_iter} iterations without converging (tol={tol:g}); raise max_iter "
        "or tol, or coarsen the grid / graph",
        RuntimeWarning,
    )
    return result


def _divergence(history: dict) -> tuple[float, float] | None:
    """The objective's ``(lowest, last)`` where the iteration diverged, else ``None``.

    Diverged: the last residual check's objective is not finite, or it and the primal residual are far above their
    lowest (see DIVERGED).
    """
    objective, residual = (np.asarray(history.get(k, []), dtype=float) for k in ("objective", "primal_residual"))
    if len(objective) == 0:
        return None
    seen = objective[~np.isnan(objective)]
    rise = (float(seen.min()) if len(seen) else float("nan"), float(objective[-1]))
    if not np.isfinite(rise[1]):
        return rise
    if len(objective) < 2 or len(residual) < 2:
        return None
    far = rise[0] > 0 and rise[1] > DIVERGED * rise[0] and residual[-1] > 10 * np.nanmin(residual)
    return rise if far else None


def _stall(history: dict) -> tuple[float, float, float] | None:
    """``(lowest residual, its iteration, lowest since)`` where the iteration stalled, else ``None``.

    Stalled: the primal residual made no new low in the second half of the residual checks (at least
    :data:`STALL_CHECKS` of them per half).

    A slow iteration keeps making new lows (a residual falling as ``1 / k`` halves over the second half); a cycling
    one does not, and more iterations only move it around its cycle.
    """
    residual = np.asarray(history.get("primal_residual", []), dtype=float)
    iteration = np.asarray(history.get("iteration", np.arange(len(residual))), dtype=float)
    half = len(residual) // 2
    if half < STALL_CHECKS or not np.all(np.isfinite(residual)):
        return None
    first, second = residual[:half], residual[half:]
    if second.min() < first.min():
        return None
    return float(first.min()), float(iteration[int(np.argmin(first))]), float(second.min())


def run_primal_dual(ops, x0: list[torch.Tensor], step_ratio: float, cp_options: dict) -> PrimalDualState:
    """Chambolle-Pock from ``x0`` and a zero dual point: ``tau / sigma = step_ratio``, ``tau sigma ||K||^2 = 0.99``."""
    y0 = torch.zeros_like(ops.apply(x0))
    tau = math.sqrt(0.99 * step_ratio)
    sigma = 0.99 / tau / getattr(ops, "norm", 1.0) ** 2
    return chambolle_pock(ops, PrimalDualState(x=x0, y=y0, tau=tau, sigma=sigma), **cp_options)


def end_block(problem: SyncOTProblem, observed) -> EndBlock:
    """The problem's soft ends: KL weights ``tau / dt`` per problem (the action weighs 1 per cell)."""
    opts = {"dtype": observed[0].dtype, "device": observed[0].device}
    penalty = [None if t is None else torch.as_tensor(t / problem.geometry.dt, **opts) for t in problem.tau]
    return EndBlock(observed, penalty)


def soft_operators(base, problem: SyncOTProblem, observed, x0) -> SoftEndpointOperators:
    """``base`` with the problem's soft ends, and ``||K||`` measured for the step sizes."""
    ops = SoftEndpointOperators(base, end_block(problem, observed))
    ops.norm = operator_norm(ops, x0)
    return ops


def unwrap(ops, v) -> tuple:
    """The base operators, the base's part of the prox point ``v`` and the ends' penalties (``(B,)`` or ``None``)."""
    if not isinstance(ops, SoftEndpointOperators):
        return ops, v, (None, None)
    v_base, pens = ops.split(v)
    penalties = [None if p is None else p * ops.base.cell_weight for p in pens]
    return ops.base, v_base, penalties


def _check_method_options(problem: SyncOTProblem, kantorovich_options: dict, adaptive, relaxation, compile) -> None:
    """Options that cannot act on this problem are refused (or, for ``compile``, said to do nothing)."""
    if not problem.kantorovich_secondaries:
        given = changed(solve, **kantorovich_options)
        if given:
            raise ValueError(f"{', '.join(given)}: options of Kantorovich secondaries, and this problem has none")
        return
    method = kantorovich_options["method"]
    if method != "chambolle_pock":
        sweeps = kantorovich_options["sinkhorn_sweeps"]
        given = changed(solve, adaptive=adaptive, relaxation=relaxation, sinkhorn_sweeps=sweeps)
        if given:
            raise ValueError(f"{', '.join(given)}: Chambolle-Pock's options, and method={method!r}")
    if compile is True and not problem.on_graph:
        message = "compile=True: fits with Kantorovich secondaries run eagerly (res.compiled is False)"
        warn(message, UserWarning)


def _check_geometry_options(problem: SyncOTProblem, compile, projection) -> None:
    """Options of one geometry given for the other are refused or said to do nothing, not silently ignored."""
    if projection not in ("auto", "eigh", "sparse"):
        raise ValueError(f"projection: expected 'auto', 'eigh' or 'sparse', got {projection!r}")
    if not problem.on_graph and projection != "auto":
        raise ValueError(f"projection={projection!r}: a graph's option; a grid's projection is a DCT in every axis")
    if not (isinstance(compile, bool) or (isinstance(compile, str) and compile == "auto")):
        raise ValueError(f"compile: expected True, False or 'auto', got {compile!r}")
    if problem.on_graph and compile is True:
        message = "compile=True: the graph geometry runs eagerly (res.compiled is False)"
        warn(message, UserWarning)
    elif any(problem.soft_ends) and compile is True:
        warn("compile=True: soft endpoints (tau) run eagerly (res.compiled is False)", UserWarning)


def unit_box(problem: SyncOTProblem) -> tuple[SyncOTProblem, float]:
    """The same problem with every length divided by ``L``, the box's largest extent; and ``L``.

    Why: Chambolle-Pock takes one step for densities (unit mean, see :func:`solve`) and momenta (density times a
    length per unit time) alike, so how fast it converges, and whether it does in ``max_iter``, would otherwise
    depend on the units of the embedding (on a 32^2 x 8 grid: 660 iterations in a unit box, none of 5000
    converged in a box of 1e3 or 1e-3). Exact: the primary and secondary actions are quadratic in lengths, so
    lengths ``/ L`` (bounds, ``delta``, Kantorovich supports and secondary ``delta``; the balanced W2 secondary's
    epsilon and the soft endpoints' ``tau`` ``/ L^2``; the HK cost is dimensionless)
    divide every cost by ``L^2`` and every velocity by ``L``,
    which :func:`in_units` undoes. Jacobians of Monge maps are unchanged (both spaces are rescaled), as are masses.
    """
    grid = problem.geometry
    length = box_length(grid)
    if length == 1.0:
        return problem, 1.0
    if isinstance(grid, Grid):
        unit_grid = Grid([(lo / length, hi / length) for lo, hi in grid.bounds], grid.shape, grid.n_time)
        per_volume = length**grid.ndim  # densities per unit volume: masses stay as they are
    else:  # node masses and edge weights are unchanged; Monge coordinates shrink with the nodes (below)
        unit_grid, per_volume = grid.scaled(1.0 / length), 1.0
    shrink_map = 1.0 / length if problem.on_graph else 1.0  # a Jacobian is unchanged, node coordinates shrink

    def shrink(delta):
        return None if delta is None else delta / length

    jacobians = iter(problem.jacobians())
    secondaries = []
    for s in problem.secondaries:
        if isinstance(s, MongeSecondary):
            secondaries.append(replace(s, jacobian=next(jacobians) * shrink_map, delta=shrink(s.delta)))
        else:
            eps = s.effective_epsilon if s.delta is not None else s.effective_epsilon / length**2
            secondaries.append(replace(s, support=s.support / length, delta=shrink(s.delta), epsilon=eps))
    tau = tuple(None if t is None else t / length**2 for t in problem.tau)  # a KL weight in units of the cost
    unit = SyncOTProblem(
        unit_grid, problem.rho0 * per_volume, problem.rho1 * per_volume, delta=shrink(problem.delta),
        secondaries=secondaries, metric=problem.metric, growth_prior=problem.growth_prior, tau=tau,
    )  # fmt: skip
    return unit, length


# history entries in units of the cost; the others (residuals, steps, Sinkhorn gaps) are relative
COST_HISTORY = ("objective", "secondary_objective")


def in_units(result: SyncOTResult, grid: Grid, length: float) -> SyncOTResult:
    """A result of the :func:`unit_box` problem in the units of ``grid`` (the original problem's)."""
    if length == 1.0:
        return result
    volume = length**grid.ndim if isinstance(grid, Grid) else 1.0  # densities and sources are per unit volume
    per_momentum = volume / length  # momentum = density x velocity
    cost = length**2

    def costs(values: dict) -> dict:
        return {k: v * cost for k, v in values.items()}

    history = {k: ([v * cost for v in vals] if k in COST_HISTORY else vals) for k, vals in result.history.items()}
    return replace(
        result, geometry=grid, rho=result.rho / volume, momentum=result.momentum / per_momentum,
        source=result.source / volume, velocity=result.velocity * length, cost=result.cost * cost,
        costs=costs(result.costs), entropic_costs=costs(result.entropic_costs), history=history,
        secondary_actions=costs(result.secondary_actions),
        secondary_velocity=[w * length for w in result.secondary_velocity],
        momentum_staggered=[m / per_momentum for m in result.momentum_staggered],
    )  # fmt: skip


def _use_compile(request: bool | str, x0: Staggered) -> bool:
    """Whether to compile the iteration: ``True``/``False`` as asked; ``"auto"``: large enough to pay."""
    if request not in (True, False, "auto"):
        raise ValueError(f"compile: expected True, False or 'auto', got {request!r}")
    if request != "auto":
        return bool(request)
    return x0.rho.numel() >= COMPILE_MIN_UNKNOWNS


# "auto" compiles from 2^20 density unknowns (e.g. 128^2 x 64): a cold compile costs about 20 s (5 s from the
# on-disk cache) and cuts the time per iteration to 0.6-0.8x on CPU at 128^2 x 32, which pays off there
# (benchmarks/solver.py).
COMPILE_MIN_UNKNOWNS = 2**20


def _result(
    problem, ops, state, scale, zeta_scale, support_threshold, dev, reports=(), penalties=(None, None)
) -> SyncOTResult:
    grid = problem.grid
    d = grid.ndim
    x = Staggered.from_tensors(state.x, d)
    s = torch.as_tensor(scale, dtype=x.rho.dtype, device=x.rho.device).reshape(-1, *([1] * (d + 1)))
    xc = interpolate(x)
    v = state.v
    rho_v = v[0]
    peak = rho_v.flatten(1).amax(1).reshape(-1, *([1] * (d + 1)))
    support = rho_v > support_threshold * peak
    safe = torch.where(support, rho_v, 1.0)
    velocity = torch.where(support, v[1 : d + 1] / safe, 0.0)
    momentum = xc[1 : d + 1] * s
    source = torch.zeros_like(x.rho[:, 1:]) if x.zeta is None else x.zeta * s / zeta_scale
    growth = torch.zeros_like(rho_v) if x.zeta is None else torch.where(support, v[d + 1] / safe / zeta_scale, 0.0)

    costs, actions = _costs(problem, ops, v, zeta_scale, reports)
    costs = with_penalties(costs, penalties)
    secondary_velocity = []
    for jac in problem.jacobians():
        jt = torch.as_tensor(jac, dtype=v.dtype, device=v.device).unsqueeze(1)  # (B|1, 1, *S, dY, d)
        secondary_velocity.append(torch.einsum("...ki,i...->...k", jt, velocity))

    def host(t, batched=True):
        arr = t.detach().cpu().numpy()
        return arr if problem.batch_size > 1 or not batched else arr[0]

    def last(t):  # channels-first -> channels-last
        return torch.movedim(t, 0, -1)

    fields = {
        "geometry": grid, "rho": host(x.rho * s), "momentum": host(last(momentum)), "source": host(source),
        "velocity": host(last(velocity)), "growth": host(growth), "support": host(support),
        "secondary_velocity": [host(w) for w in secondary_velocity],
        "momentum_staggered": [host(mi * s) for mi in x.m],
    }  # fmt: skip
    settings = {
        "support_threshold": support_threshold, "device": str(dev), "compiled": bool(getattr(ops, "compiled", False))
    }  # fmt: skip
    return SyncOTResult.from_solve(fields, costs, state, reports, host, actions=actions, **settings)


def with_penalties(costs: dict[str, np.ndarray], penalties) -> dict[str, np.ndarray]:
    """``costs`` with the soft ends' ``tau KL`` terms (``start_penalty``, ``end_penalty``) added to the total."""
    if all(pen is None for pen in penalties):
        return costs
    out = {k: v for k, v in costs.items() if k != "total"}
    for name, pen in zip(("start_penalty", "end_penalty"), penalties, strict=True):
        if pen is not None:
            out[name] = pen.detach().cpu().numpy()
    out["total"] = sum(out.values())
    return out


def with_secondaries(out: dict, terms: dict, reports) -> tuple[dict, dict]:
    """The primary terms ``out`` with the secondaries' and the total, and each secondary's unweighted action.

    ``terms[k] = (name, weighted cost, action)`` for the Monge secondaries; the Kantorovich ones come from their
    ``reports``. Host arrays, per problem; shared by both geometries.
    """
    for k, name, rep in reports:
        terms[k] = (name, rep["cost"], rep["action"])
    out.update({terms[k][0]: terms[k][1] for k in sorted(terms)})
    out["total"] = sum(out.values())
    actions = {name: action for name, _, action in terms.values() if action is not None}
    host = {k: val.detach().cpu().numpy() for k, val in out.items()}
    return host, {k: val.detach().cpu().numpy() for k, val in actions.items()}


def _costs(problem, ops, v, zeta_scale, reports=()) -> tuple[dict, dict]:
    """Split the action at the prox point ``v`` into the primary and secondary terms, per problem.

    ``reports`` are the Kantorovich secondaries' ``(index, name, report)`` (see :mod:`.kantorovich_solver`).
    """
    d = problem.grid.ndim
    rho = v[0]
    inv = torch.where(rho > 0, 1.0 / torch.where(rho > 0, rho, 1.0), 0.0)
    m = v[1 : d + 1]
    cw = ops.cell_weight

    def total(field):
        return (field * inv).flatten(1).sum(1) * cw

    opts = {"dtype": v.dtype, "device": v.device}
    if problem.metric is None:
        transport = m.square().sum(0)
    else:
        metric = torch.as_tensor(problem.metric, **opts)  # (*S, d, d)
        transport = torch.einsum("i...,...ij,j...->...", m, metric, m)
    out = {"primary_transport": total(transport)}
    zeta2 = None
    if zeta_scale is not None:
        z = v[d + 1] if ops.prior_slope is None else v[d + 1] - ops.prior_slope * rho  # departure from the prior
        zeta2 = z.square() / zeta_scale**2
        out["primary_growth"] = total(problem.delta**2 * zeta2)
    else:
        out["primary_growth"] = torch.zeros_like(out["primary_transport"])
    terms = {}
    for (k, sec), jac in zip(problem.monge_secondaries, problem.jacobians(), strict=True):
        jt = torch.as_tensor(jac, **opts).unsqueeze(1)  # (B|1, 1, *S, dY, d)
        jm = torch.einsum("...ki,i...->...k", jt, m).square().sum(-1)
        term = jm
        if zeta2 is not None:
            delta_y = problem.delta if sec.delta is None else sec.delta
            term = term + delta_y**2 * zeta2
        terms[k] = (sec.name or f"secondary_{k}", sec.weight * total(term), total(term))
    return with_secondaries(out, terms, reports)
