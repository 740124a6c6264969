"""Kantorovich secondaries inside the primal-dual iteration (Mathematics page, sections 2-3).

In the solver's units (densities scaled to unit mean, objective divided by ``scale dt |cell|``, see
:mod:`.solve`) the problem with Kantorovich secondaries is

    min_U  sum_cells f(I U) + i_C(U) + sum_s w_s sum_k D_s(a_k, b_k),   (a_k, b_k) = mu (K_s^T rho_k, K_s^T rho_{k+1}),

with ``mu = scale |cell|`` (so that ``a_k`` are the induced masses), ``w_s = lambda_s / (mu dt^2)`` and ``D_s``
the debiased divergence of the entropic ``HK^2`` (or ``W2^2``) problem ``J`` of :mod:`.scaling` (Feydy et al.
2019; Sejourne et al. 2019 for the unbalanced case),

    D(a, b) = J(a, b) - J(a, a) / 2 - J(b, b) / 2.

Why debiased: ``J(a, a) > 0`` is a bias of about ``eps`` per unit mass, paid at each of the ``Nt`` steps and
divided by ``dt``, so the plain ``J`` adds ``Nt^2 eps`` to the action (60% of it on the Mathematics page's oracle 5 at
32^2 x 16) unless ``eps`` falls like ``dt^2``, where Sinkhorn slows down. ``D`` vanishes at ``a = b``, is nonnegative,
and is exact for translations under the quadratic cost at any ``eps``; with ``eps`` fixed at twice the support's
nearest-neighbour cost the oracle is within 0.3% at ``Nt`` 4 to 32 on 60 cells, and within 1.2% on a 32^2 grid.
With the fixed reference ``R = r (x) r`` the total mass needs no extra term: ``|R|`` is the same in all three.
``D`` is convex minus convex; the iteration linearizes the self-terms at the current path's node masses (the
convex-concave procedure, :meth:`SecondaryBlock.relinearize`), so that the proximal map stays that of ``J`` plus a
linear term, one shift of its targets.

Three splittings are available (``solve(..., method=...)``):

- ``"chambolle_pock"`` (default): each secondary is one more dual block, ``B_s U = (a_k, b_k)_k / beta_s``, so that
  ``D_s`` enters only through its proximal map in the marginals (Moreau's identity gives the dual step). That map
  is one generalized Sinkhorn problem (:meth:`.EntropicSupport.prox_update`), warm-started from the previous
  iteration and run for a few sweeps per iteration. No step restriction comes from the curvature of ``D_s``.
- ``"pd3o"`` (Yan) and ``"condat_vu"``: ``D_s`` as the smooth term, with its gradient from the dual potentials
  (envelope theorem). Their step must stay below ``2 / L`` (PD3O) or ``2 / L`` minus the dual part (Condat-Vu),
  where ``L`` is the Lipschitz constant of the gradient. The time-discretized HK action is stiff: its curvature in
  ``rho_k`` grows like ``lambda delta^2 / (dt^2 mu a)`` where the induced mass ``a`` is small, so these steps are
  far smaller than the Chambolle-Pock steps and the iterations far more numerous; they are kept for comparison.

``beta_s = mu sqrt(2) ||K_s|| / n_s`` with ``n_s = (||K_s|| min(lambda_s, 1))^(1/2)`` scales each block (an
interior ``rho_k`` enters two pairs), so that ``||B_s|| <= n_s`` and ``||[I; B_1; ...]||^2 <= 1 + sum_s n_s^2``
gives the step condition ``sigma tau (1 + sum_s n_s^2) < 1``. Any scale converges; this one sets how the step
budget is shared between the primary's dual and the secondary's (:func:`block_norm`).

References
----------
J. Feydy, T. Sejourne, F.-X. Vialard, S. Amari, A. Trouve, G. Peyre, "Interpolating between optimal transport and
MMD using Sinkhorn divergences", AISTATS (2019); T. Sejourne, J. Feydy, F.-X. Vialard, A. Trouve, G. Peyre,
"Sinkhorn divergences for unbalanced optimal transport", arXiv:1910.12958 (2019); A. L. Yuille, A. Rangarajan,
"The concave-convex procedure", Neural Computation 15 (2003).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._settings import warn
from .chambolle_pock import PrimalDualState, _norm, chambolle_pock, primal_dual_step
from .dynamic_secondary import DynamicSecondary, WithDynamicSecondaries, action_along, norm_bound
from .endpoints import END_SCALE, SoftEndpointOperators
from .graph_transport import EIGH_MAX_NODES, GraphTransportOperators
from .kantorovich import KantorovichSecondary, kernel_norm, kernel_tensors, rows_times
from .pd3o import condat_vu, pd3o
from .scaling import MASS_FLOOR, EntropicSupport, ScalingState
from .solve import TransportOperators, end_block, unwrap

METHODS = ("chambolle_pock", "pd3o", "condat_vu")
# Relative gap of the secondary's Sinkhorn state above which its sweeps per iteration double (see adapt_sweeps)
LAG_TARGET = 1e-2
MAX_SWEEPS_PER_CALL = 64
# Relative gap of the secondary's Sinkhorn state when the iteration stops above which the solve warns. Measured:
# 4e-3 at 64^2 x 32 with 1000 support points (a well-resolved solve), 0.64 where epsilon was 2.8e-5 and one sweep
# per iteration could not follow.
LAG_WARNING = 0.05


def block_norm(k_norm: float, weight: float = 1.0) -> float:
    """``||B_s||`` after scaling, ``(||K_s|| min(weight, 1))^(1/2)``, for a kernel of norm ``k_norm``.

    The secondary's dual step, relative to the primary's, grows with it (see the module docstring). Scaling by
    ``||K||`` (a norm of 1) gives every support point the step of the heaviest one, which is small where many cells
    feed few points (``||K||`` about ``sqrt(cells per point)``): on a 64^2 x 8 grid with 200 points
    (``||K|| = 5.6``) that took 2520 iterations, against 1740 with ``||K||^(1/2)``, for the same distance to a
    12000-iteration solve (18% in the densities, L2; the optimum there is rough and slow to reach). On the ``tl``
    fits of scGEM and the demo course (``||K||`` 3.6 and 4.5) the iterations grow (760 -> 1140, 360 -> 620) but
    stop closer to the optimum (median velocity error against a tol-1e-9 solve 0.64% -> 0.35% for scGEM, measured
    at a norm of 2; 4.4% -> 2.6% for the demo). A kernel onto as many points as cells (``||K|| = 1``, the
    Mathematics page's oracle 5) keeps the norm 1: twice it, the 1-D oracle at 8 steps no longer converged in 5000
    iterations.

    Below weight 1 the block shrinks with ``sqrt(weight)`` (at weight 0 it stays out of the iteration). Its
    proximal map is that of ``J`` with the step ``t' = beta^2 w scale / sigma`` (:meth:`SecondaryBlock.dual_prox`),
    which at a fixed ``beta`` falls with the weight ``w``; with a small ``t'`` the map's generalized Sinkhorn falls
    behind its targets and the iteration stalled or diverged: the simulated course on 300 and 600 graph nodes at
    weight 0.001 did not converge in 5,000 iterations, and sci-CAR (10 + 10 components, 2,000 nodes) at weight
    0.01 diverged (node masses 1e7 after 5,000 iterations). With the factor ``t'`` keeps its weight-1 value and the
    primary gets the step budget the light secondary leaves: those fits converge in 640, 960 and 340 iterations,
    and the simulated course at weights 0.01 and 0.1 in 680-1,020 instead of 900-1,780. Not everywhere faster: the
    32^2 grid oracle with 200 points at weight 0.1 took 280, 280, 1,860 and 460 iterations at 4, 8, 16 and 32 steps,
    against 1,040, 1,260, 960 and 640 (the Benchmarks page). Above weight 1 the scale is left as it is.
    """
    return math.sqrt(k_norm * (min(weight, 1.0) if weight > 0 else 1.0))


class SecondaryBlock:
    """One Kantorovich secondary: its linear map, its proximal map and its gradient, on a batch of paths.

    Parameters
    ----------
    secondary
        The secondary.
    grid
        The problem's grid.
    scale
        ``(B,)`` density scale of each problem (see :mod:`.solve`).
    mean_mass
        ``(B,)`` mean of the endpoint masses: the reference measure of the entropic term is this mass spread
        uniformly over the support.
    opts
        Torch dtype and device.
    """

    def __init__(
        self,
        secondary: KantorovichSecondary,
        grid,
        scale: np.ndarray,
        mean_mass: np.ndarray,
        opts: dict,
        sweeps: int | str = 1,
    ):
        self.secondary = secondary
        self.kernel, self.kernel_t = kernel_tensors(secondary, opts)  # (n_cells, n) and its transpose
        support = torch.as_tensor(secondary.support, **opts)
        self.engine = EntropicSupport(support, secondary.delta, secondary.effective_epsilon)
        self.n_time = grid.n_time
        self.n = support.shape[0]
        batch = len(scale)
        dt = grid.dt
        self.mu = torch.as_tensor(scale * grid.cell_volume, **opts)  # (B,)
        self.w = secondary.weight / (self.mu * dt**2)  # (B,)
        k_norm = kernel_norm(self.kernel, self.kernel_t)
        self.norm = block_norm(k_norm, secondary.weight)  # ||B_s|| after scaling
        self.beta = self.mu * math.sqrt(2.0) * k_norm / self.norm  # (B,)
        log_r = torch.as_tensor(np.log(mean_mass / self.n), **opts)
        self.log_r = log_r.repeat_interleave(self.n_time).reshape(-1, 1)  # one row per (problem, step)
        rows = batch * self.n_time
        zeros = torch.zeros(rows, self.n, **opts)
        self.state = ScalingState(zeros, zeros.clone(), zeros.clone(), zeros.clone())
        # sweeps per proximal map: fixed, or "auto" (from 1 up to MAX_SWEEPS_PER_CALL, see check)
        self.sweeps_per_call = 1 if sweeps == "auto" else sweeps
        self.sweeps_range = (1, MAX_SWEEPS_PER_CALL) if sweeps == "auto" else (sweeps, sweeps)
        self.smooth_tol = 1e-9
        self.smooth_max = 50
        self.debias = secondary.debias
        # the self-terms J(m_j, m_j) of the nodes' induced masses, one row per (problem, node): their gradients
        # linearize the concave part of the debiased divergence (see relinearize)
        nodes = zeros.new_zeros(batch * (self.n_time + 1), self.n)
        self.own = ScalingState(nodes, nodes, nodes.clone(), nodes.clone())
        self.log_r_nodes = log_r.repeat_interleave(self.n_time + 1).reshape(-1, 1)
        self.log_r_pairs = torch.cat([self.log_r, self.log_r])  # the rows of _symmetric
        self.shift = None  # (c_a, c_b): the linearized self-terms' gradients at the pairs' two nodes

    # -- the linear map ------------------------------------------------------------------------------------------

    def masses(self, rho: torch.Tensor) -> torch.Tensor:
        """Induced masses ``mu K^T rho_k``, ``(B, Nt + 1, n)``, from densities ``(B, Nt + 1, *S)``."""
        flat = rho.reshape(-1, self.kernel.shape[0])
        out = rows_times(flat, self.kernel, self.kernel_t)
        return out.reshape(rho.shape[0], rho.shape[1], self.n) * self.mu.reshape(-1, 1, 1)

    def masses_adjoint(self, g: torch.Tensor, shape) -> torch.Tensor:
        """Adjoint of :meth:`masses`: ``(B, Nt + 1, n)`` -> densities ``shape``."""
        flat = g.reshape(-1, self.n)
        out = rows_times(flat, self.kernel_t, self.kernel)
        return out.reshape(shape) * self.mu.reshape(-1, *([1] * (len(shape) - 1)))

    def apply(self, rho: torch.Tensor) -> torch.Tensor:
        """``B rho = (a_k, b_k)_k / beta``, ``(B, Nt, 2, n)``."""
        m = self.masses(rho)
        return torch.stack([m[:, :-1], m[:, 1:]], dim=2) / self.beta.reshape(-1, 1, 1, 1)

    def adjoint(self, y: torch.Tensor, shape) -> torch.Tensor:
        """``B* y`` as densities of ``shape``."""
        y = y / self.beta.reshape(-1, 1, 1, 1)
        g = y.new_zeros(y.shape[0], y.shape[1] + 1, self.n)
        g[:, :-1] += y[:, :, 0]
        g[:, 1:] += y[:, :, 1]
        return self.masses_adjoint(g, shape)

    # -- the proximal map (Chambolle-Pock) -------------------------------------------------------------------------

    def dual_prox(self, z: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prox_{sigma h*}(z), prox_{h / sigma}(z / sigma))`` for ``h(u) = sum_k w D(beta u)`` (Moreau).

        ``prox_{t h}(u) = prox_{t beta^2 D_w}(beta u) / beta``: in masses, the step of ``|m - mbar|^2 / 2`` is
        ``t beta^2``, ``t' = t beta^2 w scale`` in units of ``J`` (:mod:`.scaling`).
        """
        beta = self.beta.reshape(-1, 1, 1)
        target = z * (beta / sigma).unsqueeze(-1)  # masses
        abar = target[:, :, 0].reshape(-1, self.n)
        bbar = target[:, :, 1].reshape(-1, self.n)
        t = (self.beta**2 * self.w * self.engine.scale / sigma).repeat_interleave(self.n_time).reshape(-1, 1)
        if self.debias and self.shift is not None:  # prox_{tJ - t<c, .>}(abar) = prox_{tJ}(abar + t c)
            abar, bbar = abar + t * self.shift[0], bbar + t * self.shift[1]
        self.engine.sweeps(self.state, self.log_r, self.sweeps_per_call, prox=(abar, bbar, t))
        a = torch.exp(self.state.log_a).reshape(z.shape[0], self.n_time, self.n)
        b = torch.exp(self.state.log_b).reshape(z.shape[0], self.n_time, self.n)
        v = torch.stack([a, b], dim=2) / beta.unsqueeze(-1)
        return z - sigma * v, v

    # -- the debiasing self-terms ------------------------------------------------------------------------------------

    def relinearize(self, rho: torch.Tensor, n_sweeps: int = 1) -> None:
        """Linearize the self-terms at the induced masses of ``rho``, after ``n_sweeps`` averaged symmetric sweeps.

        The debiased divergence ``J(a, b) - J(a, a) / 2 - J(b, b) / 2`` is convex minus convex. Its concave part
        is replaced by its tangent at the current path's node masses ``m_j`` (the convex-concave procedure): the
        proximal map then stays that of the convex ``J`` plus a linear term, which shifts its targets by ``t' c``
        with ``c = d/dm J(m, m) / 2`` (:meth:`dual_prox`). Taking the tangent at the path's own masses, rather
        than at the free marginals of the proximal map, keeps it where the divergence is evaluated in the end.
        """
        m = self.masses(rho).clamp(min=0.0).reshape(-1, self.n)
        st = self.own
        st.log_a = st.log_b = torch.log(torch.maximum(m, torch.exp(self.log_r_nodes) * MASS_FLOOR))
        self.engine.symmetric_sweeps(st, self.log_r_nodes, n_sweeps)
        self.shift = self._pair_ends(self.engine.marginal_gradients(st)[0])

    def _pair_ends(self, per_node: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of nodes ``(problem, node)`` -> rows of pairs ``(problem, k)`` at their first and second node."""
        per_node = per_node.reshape(-1, self.n_time + 1, self.n)
        return per_node[:, :-1].reshape(-1, self.n), per_node[:, 1:].reshape(-1, self.n)

    def _symmetric(self) -> ScalingState:
        """The self-terms at the cross state's marginals as one symmetric batch: rows of ``a_k``, then of ``b_k``.

        Warm-started from the nodes' potentials of the last linearization (``a_k`` at node ``k``, ``b_k`` at node
        ``k + 1``), which are those of the same problems when the marginals are the path's induced masses.
        """
        pot = torch.cat(self._pair_ends(self.own.F))
        log_m = torch.cat([self.state.log_a, self.state.log_b])
        return ScalingState(pot, pot, log_m, log_m)

    def self_values(self, state: ScalingState) -> torch.Tensor:
        """``sum_k (J(a_k, a_k) + J(b_k, b_k)) / 2`` per problem (times ``scale``) from a :meth:`_symmetric` state."""
        own = self.engine.value(state, self.log_r_pairs)
        return 0.5 * sum(part.reshape(-1, self.n_time).sum(1) for part in own.chunk(2))

    def check(self) -> tuple[torch.Tensor, float]:
        """``(value, lag)`` at a residual check, and the sweeps per iteration adapted to the lag.

        ``value`` is ``lambda sum_k D(a_k, b_k) / dt`` per problem at the current Sinkhorn state (real units);
        ``lag`` the relative gap of the static problems between the current prox marginals (:meth:`gap`), from
        the same marginals of the plan. One warm-started sweep per iteration follows the iteration at moderate
        epsilon (gap 5e-3 at 1000 points, 64^2 x 32); at small epsilon it falls behind (gap 0.06-0.1 on sci-CAR,
        50 at epsilon 1e-5), and the proximal maps, hence the path, are then inexact: with ``sweeps="auto"`` the
        sweeps double while the lag is above ``LAG_TARGET`` and halve below a tenth of it.
        """
        p, q = self.engine.marginals(self.state, self.log_r)
        per_row = self.engine.scale * self.engine.value_from(self.state, self.log_r, p, q)
        value = per_row.reshape(-1, self.n_time).sum(1)
        lag = self.engine.gap_from(self.state, self.log_r, p, q, self.n_time)
        if self.debias:
            # the self-terms of the nodes' masses, at the symmetric state of the last linearization
            own = self.engine.value(self.own, self.log_r_nodes).reshape(-1, self.n_time + 1)
            value = value - own[:, 1:-1].sum(1) - 0.5 * (own[:, 0] + own[:, -1])
        value = self.secondary.weight * value * self.n_time
        low, high = self.sweeps_range
        if lag > LAG_TARGET and self.sweeps_per_call < high:
            self.sweeps_per_call *= 2
        elif lag < LAG_TARGET / 10 and self.sweeps_per_call > low:
            self.sweeps_per_call //= 2
        return value, lag

    def lag_now(self) -> float:
        """Relative gap of the Sinkhorn state for its own (proximal) marginals (see :meth:`check`)."""
        return self.engine.gap(self.state, self.log_r, self.n_time)

    # -- value and gradient at fixed marginals (PD3O, Condat-Vu, reported costs) -----------------------------------

    def fix_marginals(self, rho: torch.Tensor) -> None:
        """Set the Sinkhorn state's marginals to the induced masses of ``rho``."""
        m = self.masses(rho).clamp(min=0.0)
        floor = torch.exp(self.log_r).reshape(-1, self.n_time, 1) * MASS_FLOOR
        log_m = torch.log(torch.maximum(m, torch.cat([floor[:, :1], floor], 1)))
        self.state.log_a = log_m[:, :-1].reshape(-1, self.n)
        self.state.log_b = log_m[:, 1:].reshape(-1, self.n)

    def smooth(self, rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value per problem, gradient in the scaled densities)`` of ``sum_k w D(a_k, b_k)`` (solver units)."""
        self.fix_marginals(rho)
        self.engine.sweeps(self.state, self.log_r, self.smooth_max, tol=self.smooth_tol)
        value = self.engine.value(self.state, self.log_r).reshape(-1, self.n_time).sum(1)
        da, db = self.engine.marginal_gradients(self.state)
        if self.debias:  # the self-terms at the same marginals: -(J(a_k, a_k) + J(b_k, b_k)) / 2
            st = self._symmetric()
            self.engine.symmetric_sweeps(st, self.log_r_pairs, self.smooth_max, tol=self.smooth_tol)
            value = value - self.self_values(st)
            ga, gb = self.engine.marginal_gradients(st)[0].chunk(2)
            da, db = da - ga, db - gb
        g = rho.new_zeros(rho.shape[0], self.n_time + 1, self.n)
        g[:, :-1] += da.reshape(-1, self.n_time, self.n)
        g[:, 1:] += db.reshape(-1, self.n_time, self.n)
        grad = self.masses_adjoint(g * (self.w * self.engine.scale).reshape(-1, 1, 1), rho.shape)
        return value * self.w, grad

    def evaluate(self, rho: torch.Tensor, tol: float, max_sweeps: int, at_prox: bool, iterated: bool = True) -> dict:
        """Reported quantities: sharp cost, entropic cost, convergence of Sinkhorn, induced masses of ``rho``.

        ``lag`` (HK) is the relative gap before the final sweeps: how far the iteration's Sinkhorn state, one
        warm-started sweep per iteration, was from optimal for its own marginals when the iteration stopped.

        The debiased divergence is read between the induced masses of ``rho``: the proximal maps' marginals
        approach them slowly (on oracle 5 at 32^2 x 32 they read 8% low when the path had settled, against +1.3%
        at the induced masses). ``at_prox`` (plain HK only): the costs are those of the static problems between the
        marginals ``(a_k, b_k)`` of the last proximal map (Chambolle-Pock's prox point, where the primary costs are
        read too), whose potentials are already nearly optimal; otherwise between the induced masses of ``rho``.
        For the plain term both tend to the same limit, within about the outer residual of it (the prox point
        reads low: -1.6e-3 against +7.6e-4 relative at tol 1e-6 on a 40-cell oracle). ``iterated=False`` (a block
        kept out of the iteration, at weight 0): no Sinkhorn state followed the iteration, so the lag is NaN.
        """
        # the lag: how far the iteration's Sinkhorn state is from optimal for its own (prox) marginals
        lag = None if self.engine.balanced or not iterated else self.lag_now()
        if not at_prox:
            self.fix_marginals(rho)
        start_gap = lag if at_prox else None
        self.engine.solve_fixed(self.state, self.log_r, tol, max_sweeps, rows_per_problem=self.n_time, gap=start_gap)
        entropic = self.engine.value(self.state, self.log_r).reshape(-1, self.n_time).sum(1)
        error = self.state.gap
        if self.debias:
            own, own_error = self._self_terms(tol, max_sweeps)
            cost = entropic - own
            error = max(error, own_error)
        else:
            cost = self.engine.sharp_value(self.state, self.log_r).reshape(-1, self.n_time).sum(1)
        lam_dt = self.secondary.weight * self.n_time
        return {
            "cost": lam_dt * cost,
            "action": self.n_time * cost,  # what the path costs in the secondary, without the weight
            "entropic_cost": lam_dt * entropic,
            "converged": error < tol,
            "error": error,
            "lag": math.nan if lag is None else lag,
            "masses": self.masses(rho),
        }

    def _self_terms(self, tol: float, max_sweeps: int) -> tuple[torch.Tensor, float]:
        """:meth:`self_values` solved to ``tol`` at the cross state's marginals, and its gap."""
        st = self._symmetric()
        self.engine.solve_fixed(st, self.log_r_pairs, tol, max_sweeps, self.n_time, check_every=10, symmetric=True)
        return self.self_values(st), st.gap


class Synchronized:
    """One more dual block per Kantorovich secondary (flat dual vector), on top of a geometry's transport operators.

    A mixin: :class:`SynchronizedOperators` adds it to the grid's :class:`TransportOperators`,
    :class:`GraphSynchronizedOperators` to the graph's; the blocks act on the densities ``x[0]`` alone, whose layout
    ``(B, Nt + 1, cells or nodes)`` both share.
    """

    def __init__(self, *args, blocks: list[SecondaryBlock]):
        super().__init__(*args)
        self.blocks = blocks
        self.primary_shape = None
        self.sinkhorn_log: dict[str, list[float]] = {
            "sinkhorn_error": [], "sinkhorn_sweeps": [], "sinkhorn_gap": [], "secondary_objective": []
        }  # fmt: skip

    def _split(self, y: torch.Tensor) -> list[torch.Tensor]:
        sizes = [int(np.prod(self.primary_shape))] + [int(np.prod(s)) for s in self.block_shapes]
        parts = torch.split(y, sizes)
        return [parts[0].reshape(self.primary_shape)] + [
            p.reshape(s) for p, s in zip(parts[1:], self.block_shapes, strict=True)
        ]

    def apply(self, x):
        """``(I x, B_1 rho, ...)`` as one flat vector."""
        primary = super().apply(x)
        self.primary_shape = primary.shape
        parts = [b.apply(x[0]) for b in self.blocks]
        self.block_shapes = [p.shape for p in parts]
        return torch.cat([primary.reshape(-1)] + [p.reshape(-1) for p in parts])

    def adjoint(self, y):
        """``I* y_0 + sum_s B_s* y_s``."""
        parts = self._split(y)
        out = super().adjoint(parts[0])
        for block, ys in zip(self.blocks, parts[1:], strict=True):
            out[0] = out[0] + block.adjoint(ys, out[0].shape)
        return out

    def dual_prox(self, z, sigma):
        """The primary proximal step and each secondary's (see :meth:`SecondaryBlock.dual_prox`)."""
        parts = self._split(z)
        y0, v0 = super().dual_prox(parts[0], sigma)
        ys, vs = [y0.reshape(-1)], [v0.reshape(-1)]
        for block, zs in zip(self.blocks, parts[1:], strict=True):
            y, v = block.dual_prox(zs, sigma)
            ys.append(y.reshape(-1))
            vs.append(v.reshape(-1))
        return torch.cat(ys), torch.cat(vs)

    def prepare_step(self, x) -> None:
        """Linearize the debiased blocks' self-terms at the current path (before each step)."""
        for block in self.blocks:
            if block.debias:
                block.relinearize(x[0])

    def step(self, x, y, tau, sigma):
        """One Chambolle-Pock step, the debiased blocks' self-terms linearized at the current path first."""
        self.prepare_step(x)
        return primal_dual_step(self, x, y, tau, sigma)

    def primary_point(self, v):
        """The primary part of a (flat) prox point."""
        return self._split(v)[0]

    def objective(self, v) -> float:
        """The primary action at the prox point, for the stopping rule; logs the secondaries and Sinkhorn's progress.

        The secondaries' debiased values (in ``history["secondary_objective"]``, primary included) are differences
        of entropic terms one to two orders of magnitude larger, read at Sinkhorn states that lag the iteration:
        between checks they move by about 1e-3 relative while the path has settled (residuals 5e-5 on oracle 5),
        far above the stopping rule's ``tol``. The primary action moves with the path alone, and at a stationary
        path the secondaries' gradients balance it, so it stops changing only when the path does.

        Called at every residual check, it also sets each block's sweeps per iteration from how far its Sinkhorn
        state is from optimal for its own marginals (:meth:`SecondaryBlock.check`).
        """
        self.sinkhorn_log["sinkhorn_error"].append(max((b.state.error for b in self.blocks), default=0.0))
        self.sinkhorn_log["sinkhorn_sweeps"].append(sum(b.state.sweeps for b in self.blocks))
        checks = [b.check() for b in self.blocks]  # none when every secondary has weight 0
        values = [value for value, _ in checks]
        self.sinkhorn_log["sinkhorn_gap"].append(max((lag for _, lag in checks), default=0.0))
        primary = super().objective(self.primary_point(v))
        self.sinkhorn_log["secondary_objective"].append(primary + sum(float(val.sum()) for val in values))
        return primary


class SmoothSynchronized:
    """A geometry's transport operators plus the secondaries as a smooth term (for PD3O and Condat-Vu; a mixin)."""

    def __init__(self, *args, blocks: list[SecondaryBlock]):
        super().__init__(*args)
        self.blocks = blocks
        self.n_grad = 0
        self.sinkhorn_log: dict[str, list[float]] = {"sinkhorn_error": [], "sinkhorn_sweeps": []}

    def smooth(self, x):
        """``(f(x), grad f(x))``, ``f`` the secondaries' cost in solver units; only ``rho`` has a gradient."""
        self.n_grad += 1
        value, grad = 0.0, torch.zeros_like(x[0])
        for block in self.blocks:
            v, g = block.smooth(x[0])
            value = value + float((v * self.cell_weight).sum())
            grad += g
        grad[:, 0] = 0.0  # the endpoints are fixed
        grad[:, -1] = 0.0
        return value, [grad] + [torch.zeros_like(t) for t in x[1:]]

    def objective(self, v) -> float:
        """The primary action (the monitors add the smooth value)."""
        self.sinkhorn_log["sinkhorn_error"].append(max((b.state.error for b in self.blocks), default=0.0))
        self.sinkhorn_log["sinkhorn_sweeps"].append(sum(b.state.sweeps for b in self.blocks))
        return super().objective(v)


class SynchronizedOperators(Synchronized, TransportOperators):
    """The grid's :class:`TransportOperators` with the Kantorovich blocks of :class:`Synchronized`."""


class SmoothSynchronizedOperators(SmoothSynchronized, TransportOperators):
    """The grid's :class:`TransportOperators` with the secondaries as a smooth term."""


class GraphSynchronizedOperators(Synchronized, GraphTransportOperators):
    """The graph's :class:`GraphTransportOperators` with the Kantorovich blocks of :class:`Synchronized`."""


class GraphSmoothSynchronizedOperators(SmoothSynchronized, GraphTransportOperators):
    """The graph's :class:`GraphTransportOperators` with the secondaries as a smooth term."""


def lipschitz_estimate(ops: SmoothSynchronized, x: list[torch.Tensor], rel: float = 1e-2) -> float:
    """Secant estimate ``||grad f(x + h) - grad f(x)|| / ||h||`` along a random perturbation of the densities.

    ``h`` is ``rel`` times the mean density times uniform noise on the free nodes. The curvature of the HK action
    grows like ``1 / a`` where the induced mass ``a`` is small, so a perturbation relative to the local density
    would measure the stiffest cell (estimates of 1e11 on the tails of a Gaussian); this one measures the bulk, and
    the step it gives is not guaranteed to be below ``2 / L`` everywhere.
    """
    _, g0 = ops.smooth(x)
    gen = torch.Generator(device=x[0].device).manual_seed(0)
    noise = torch.rand(x[0].shape, generator=gen, dtype=x[0].dtype, device=x[0].device)
    h = noise * rel * x[0].mean()
    h[:, 0] = 0.0
    h[:, -1] = 0.0
    _, g1 = ops.smooth([x[0] + h, *x[1:]])
    return _norm(g1[0] - g0[0]) / max(_norm(h), 1e-300)


def _follow_lagging_sinkhorn(ops: Synchronized, state: PrimalDualState, cp_options: dict):
    """Go on with ``"auto"`` sweeps where a fixed number of sweeps left a block's Sinkhorn state lagging.

    A fixed number of warm-started sweeps per iteration (one by default) follows the iteration at moderate epsilon
    and costs least there, but at small epsilon it falls behind and the proximal maps, hence the path, are inexact
    (scGEM with a 2-D methylation secondary: a relative gap of 0.15-0.25 when the stopping rule was met). Where
    the gap at the end exceeds ``LAG_WARNING`` and iterations remain, the iteration resumes from where it stopped
    with the sweeps doubling while the state lags (:meth:`SecondaryBlock.check`), until the stopping rule holds
    again. Solves that did not lag are untouched.
    """
    lagging = [
        b
        for b in ops.blocks
        if b.sweeps_range[0] == b.sweeps_range[1] and not b.engine.balanced and b.lag_now() > LAG_WARNING
    ]
    remaining = cp_options["max_iter"] - state.n_iter
    if not lagging or remaining <= 0:
        return state
    for block in lagging:
        block.sweeps_range = (block.sweeps_per_call, MAX_SWEEPS_PER_CALL)
        block.sweeps_per_call = min(2 * block.sweeps_per_call, MAX_SWEEPS_PER_CALL)
    state.converged = False
    state.history.setdefault("sinkhorn_follow_from", []).append(state.n_iter)
    return chambolle_pock(ops, state, **(cp_options | {"max_iter": remaining}))


def _check_graph_discretization(problem, method: str, projector) -> None:
    """What ``discretization="graph"`` needs (:mod:`.dynamic_secondary`), or a ``ValueError`` naming it."""
    if method != "chambolle_pock" or any(problem.soft_ends):
        raise ValueError(
            "discretization: a Kantorovich secondary with discretization='graph' needs method='chambolle_pock' and "
            f"fixed endpoints (tau=None), got method={method!r}, tau={problem.tau}"
        )
    if problem.delta is None:
        raise ValueError(
            "discretization: discretization='graph' needs an unbalanced problem (delta); use 'pairs' for balanced ones"
        )
    if getattr(projector, "method", "eigh") != "eigh":
        raise ValueError(
            "discretization: discretization='graph' needs the graph's eigenbasis projection (projection='eigh', "
            f"at most {EIGH_MAX_NODES} nodes)"
        )


def run_kantorovich(
    problem,
    primary_args: tuple,
    x0: list[torch.Tensor],
    y_primary: torch.Tensor,
    scale: np.ndarray,
    opts: dict,
    cp_options: dict,
    *,
    method: str,
    step_ratio: float,
    sinkhorn_sweeps: int | str,
    sinkhorn_tol: float,
    sinkhorn_max_iter: int,
):
    """Run the chosen splitting; returns ``(ops, state, primary prox point, secondary reports)``.

    ``primary_args`` build the geometry's transport operators (:class:`TransportOperators` on a grid,
    :class:`GraphTransportOperators` on a graph); ``x0`` is the projected starting point and ``y_primary`` a zero
    dual point of the primary block.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method != "chambolle_pock" and any(problem.soft_ends):
        raise ValueError(f"tau: soft endpoints need method='chambolle_pock' (their proximal map), got {method!r}")
    if sinkhorn_sweeps != "auto" and not (isinstance(sinkhorn_sweeps, int) and sinkhorn_sweeps >= 1):
        raise ValueError(f"sinkhorn_sweeps: expected 'auto' or a positive integer, got {sinkhorn_sweeps!r}")
    on_graph = [s.discretization == "graph" for _, s in problem.kantorovich_secondaries]
    if any(on_graph):
        _check_graph_discretization(problem, method, primary_args[0])
    m0, m1 = problem.masses()
    mean_mass = 0.5 * (m0 + m1)
    mu = scale * problem.grid.cell_volume
    ends = [r.reshape(r.shape[0], -1) for r in (x0[0][:, 0], x0[0][:, -1])]
    all_blocks = [
        DynamicSecondary(s, problem.grid.n_time, mu, *ends, opts)
        if graph_kind
        else SecondaryBlock(s, problem.grid, scale, mean_mass, opts, sweeps=sinkhorn_sweeps)
        for (_, s), graph_kind in zip(problem.kantorovich_secondaries, on_graph, strict=True)
    ]
    # a secondary at weight 0 adds nothing to the objective: it stays out of the iteration (its proximal step would
    # be 0) and only its action along the final path is evaluated, as a Monge secondary's at weight 0
    blocks = [b for b in all_blocks if b.secondary.weight > 0 and isinstance(b, SecondaryBlock)]
    dynamic = [b for b in all_blocks if b.secondary.weight > 0 and isinstance(b, DynamicSecondary)]
    graph = problem.on_graph
    if method == "chambolle_pock":
        cls = GraphSynchronizedOperators if graph else SynchronizedOperators
        ops = cls(*primary_args, blocks=blocks)
        norm2 = 1 + sum(b.norm**2 for b in blocks)  # ||[I; B_1; ...]||^2 bound (module docstring)
        if any(problem.soft_ends):  # the soft ends' block adds c^2 = 1/2 to the bound
            projector = primary_args[0]
            ops = SoftEndpointOperators(ops, end_block(problem, (projector.rho0, projector.rho1)))
            norm2 += END_SCALE**2
        start = x0
        if dynamic:
            ops = WithDynamicSecondaries(ops, dynamic, x0)
            start = ops.start
            norm2 = norm_bound(norm2, dynamic)
        tau = math.sqrt(0.99 * step_ratio)
        y0 = torch.zeros_like(ops.apply(start))
        state = PrimalDualState(x=start, y=y0, tau=tau, sigma=0.99 / tau / norm2)
        state = chambolle_pock(ops, state, **cp_options)
        state = _follow_lagging_sinkhorn(ops, state, cp_options)
        dynamic_points = {}
        if dynamic:  # the primary's unknowns and prox point; each graph secondary's prox point, for its report
            base_v, action_points = ops.block_points(state.v)
            dynamic_points = dict(zip(map(id, dynamic), action_points, strict=True))
            state.x, state.v, ops = state.x[: ops.n_base], base_v, ops.base
        _, v, ops.final_penalties = unwrap(ops, state.v)  # the soft ends' part split off, if any
        v = ops.primary_point(v)
    else:
        stopping = {k: cp_options[k] for k in ("tol", "max_iter", "check_every", "progress")}
        cls = GraphSmoothSynchronizedOperators if graph else SmoothSynchronizedOperators
        ops = cls(*primary_args, blocks=blocks)
        lip = lipschitz_estimate(ops, x0)
        tau_cp = math.sqrt(0.99 * step_ratio)
        if method == "pd3o":
            # PD3O needs gamma < 2 / L; 1 / L leaves room for the estimate's error (L = 0: every weight is 0)
            gamma = min(tau_cp, 1.0 / lip) if lip > 0 else tau_cp
            state = PrimalDualState(x=x0, y=y_primary, tau=gamma, sigma=0.99 / gamma)
            state = pd3o(ops, state, **stopping)
        else:
            sigma = 0.99 / tau_cp
            tau = 0.99 / (sigma + lip / 2)  # Condat-Vu: 1 / tau - sigma ||I||^2 >= L / 2
            state = PrimalDualState(x=x0, y=y_primary, tau=tau, sigma=sigma)
            state = condat_vu(ops, state, **stopping)
        state.history["lipschitz_estimate"] = [lip]
        v = state.v
    for key, vals in ops.sinkhorn_log.items():
        state.history[key] = vals
    rho = state.x[0]
    reports = []
    for (k, sec), block in zip(problem.kantorovich_secondaries, all_blocks, strict=True):
        name = sec.name or f"secondary_{k}"
        if isinstance(block, DynamicSecondary):
            if id(block) in dynamic_points:
                rep = block.report(rho, dynamic_points[id(block)])
            else:  # weight 0: its action along the final path
                rep = action_along(block, rho)
            state.history.setdefault("final_sinkhorn_error", []).append(rep["error"])
            state.history.setdefault("sinkhorn_lag", []).append(rep["lag"])
            reports.append((k, name, rep))
            continue
        # balanced W2 needs equal masses, which only the induced masses of rho have exactly; a block that was not
        # iterated (weight 0) has no prox point
        iterated = block in blocks
        at_prox = method == "chambolle_pock" and iterated and not block.engine.balanced and not block.debias
        rep = block.evaluate(rho, sinkhorn_tol, sinkhorn_max_iter, at_prox=at_prox, iterated=iterated)
        state.history.setdefault("final_sinkhorn_error", []).append(rep["error"])
        state.history.setdefault("sinkhorn_lag", []).append(rep["lag"])
        if rep["lag"] > LAG_WARNING:
            warn(
                f"{name}: the iteration stopped while its Sinkhorn state was far from optimal (relative gap "
                f"{rep['lag']:.2e}): the secondary's proximal maps were inexact, so the path may not be optimal; "
                "sinkhorn_sweeps='auto' (solve, tl.syncot) or a larger epsilon helps",
                RuntimeWarning,
            )
        if not rep["converged"]:
            warn(
                f"{name}: Sinkhorn did not converge for the reported cost (relative gap {rep['error']:.2e} > "
                f"{sinkhorn_tol:.0e} after {sinkhorn_max_iter} sweeps); raise sinkhorn_max_iter or epsilon",
                RuntimeWarning,
            )
        reports.append((k, name, rep))
    return ops, state, v, reports
