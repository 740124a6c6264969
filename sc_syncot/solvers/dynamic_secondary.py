r"""Kantorovich secondaries solved as a dynamic problem of their own on a graph of the support points.

With ``KantorovichSecondary(..., discretization="graph")`` the induced curve ``sigma(t) = K^T rho(t)`` pays the
WFR action of section 7 of the Mathematics page on the kNN graph of the support points, with a momentum and a
source of its own, staggered in time as the primary's:

.. math::

    \min\ A_X(\rho, m, \zeta) + \lambda A_Y(K^\top \rho, q, s)\quad\text{s.t.}\quad
    \partial_t \rho + \mathrm{div}_X m = \zeta,\qquad \partial_t K^\top \rho + \mathrm{div}_Y q = s .

Why: the pairs discretization (the default) prices the same curve by ``sum_k HK^2(sigma_k, sigma_{k+1}) / dt``,
each pair one more dual block of Chambolle-Pock; an interior ``sigma_k`` enters two of them through separate dual
copies, which the iteration reconciles about one time step per iteration, so its iterations grow with ``Nt``
(the Benchmarks page: 500, 1,740, 3,020 and 6,460 at 4 to 32 steps on a 32^2 grid). Here both balance equations
are linear constraints on the same unknowns, and one Euclidean projection solves them together exactly, as the
primary's alone is solved: the time chain of the secondary never enters the iteration.

The projection (:class:`CoupledProjector`). With ``P = K^T`` (scaled, see below) the normal matrix of the two
constraints, in the time-DCT basis where ``-Delta_t`` is ``lambda_w``, is per time frequency ``w``

.. math::

    \begin{pmatrix} \lambda_w I + L_X + c_X & \lambda_w P^\top \\ \lambda_w P & \lambda_w P P^\top + L_Y + c_Y
    \end{pmatrix}, \qquad c = 1 / \delta^2,

whose first block the primary's projector inverts already (DCT or eigenbasis ``U`` of ``L_X``). Eliminating the
primary's potential leaves the Schur complement ``S_w = L_Y + c_Y + P U f_w(\mu) U^T P^T`` with
``f_w(\mu) = \lambda_w (\mu + c_X) / (\lambda_w + \mu + c_X)`` (``mu`` the eigenvalues of ``L_X``): an
``n_support``-square matrix per frequency, factorized once (Cholesky). A projection then costs the primary's plus
two products with ``P U`` and ``Nt`` triangular solves.

The price is the support graph's metric: transport runs along its edges, whose isotropic weights take the
support's intrinsic dimension. With an identity kernel onto the points ``T(x)`` of a smooth map ``T`` of a 16^2 or
32^2 grid into 10-D, the secondary's action is 0.8-2.9% below the Monge solve with ``T`` (exact by a change of
variables), where the debiased pairs at their default epsilon read 4-19% low (``benchmarks/kantorovich.py
--map-oracle``). An identity kernel onto the primary graph's own nodes gives exactly what the primary pays (the
Mathematics page's oracle 5). Not faster than the pairs at few time steps: on the 32^2 grid with 200 points in
10-D it took 1,500-1,600 iterations at 4 to 32 steps (the pairs 500 to 6,460; weight 0 240-340), as the secondary's
own problem on its graph is slow to solve (``--time-steps``).

Units: the secondary masses are scaled to unit mean, ``sigma~ = K^T rho~ / y_s`` with ``y_s = n_cells / n_support``
(``rho~`` the primary's scaled densities), and the secondary's action weights carry ``lambda y_s``, so that both
actions are in the primary's solver units (:mod:`.solve`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .chambolle_pock import primal_dual_step
from .dct import apply_along
from .graph import Graph, intrinsic_dimension
from .graph_transport import GraphProjector, GraphTransportOperators
from .kantorovich import KantorovichSecondary, kernel_norm, kernel_tensors, rows_times


class DynamicSecondary:
    """One graph-discretized Kantorovich secondary: its support graph, its action's operators and its report.

    Parameters
    ----------
    secondary
        The secondary (``discretization="graph"``, with a ``delta``), in the solver's unit box.
    n_time
        Time steps.
    mu
        ``(B,)`` factor from the primary's scaled densities to masses (the density scale times the cell volume).
    rho0, rho1
        ``(B, n_cells)`` scaled endpoint densities of the primary.
    opts
        Torch dtype and device.
    """

    def __init__(self, secondary: KantorovichSecondary, n_time: int, mu: np.ndarray, rho0, rho1, opts: dict):
        self.secondary = secondary
        self.kernel, self.kernel_t = kernel_tensors(secondary, opts)
        self.n_cells, self.n = self.kernel.shape
        self.ys = self.n_cells / self.n  # sigma~ = rho~ K / y_s (see induced)
        self.mu = torch.as_tensor(mu, **opts)
        self.graph = support_graph(secondary, n_time)
        self.delta = secondary.delta
        self.projector = GraphProjector(self.graph, self.induced(rho0), self.induced(rho1), self.delta, method="eigh")
        cell_weight = self.mu * self.graph.dt  # the action in problem units: masses are mu y_s sigma~
        self.ops = GraphTransportOperators(
            self.projector, self.graph, torch.as_tensor(self.graph.omega[None], **opts), cell_weight
        )
        # lambda A_Y in the primary's units; a secondary at weight 0 is only evaluated, with the action's weights
        self.action_weight = secondary.weight if secondary.weight > 0 else 1.0
        self.ops.weights = self.ops.weights * (self.action_weight * self.ys)
        self.norm = kernel_norm(self.kernel, self.kernel_t) / self.ys  # ||P||

    def induced(self, rho: torch.Tensor) -> torch.Tensor:
        """``K^T rho~ / y_s`` of scaled densities ``(..., n_cells)``: ``(..., n_support)``."""
        return rows_times(rho, self.kernel, self.kernel_t) / self.ys

    def path_masses(self, rho: torch.Tensor) -> torch.Tensor:
        """:meth:`induced` of a path of densities ``(B, Nt + 1, *S)`` (grid cells or nodes): ``(B, Nt + 1, n)``."""
        return self.induced(rho.reshape(rho.shape[0], rho.shape[1], self.n_cells))

    def induced_adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`induced`: ``(..., n_support)`` -> ``(..., n_cells)``."""
        return rows_times(g, self.kernel_t, self.kernel) / self.ys

    def dense(self) -> torch.Tensor:
        """``P = K^T / y_s`` as a dense ``(n_support, n_cells)`` matrix."""
        eye = torch.eye(self.n, dtype=self.mu.dtype, device=self.mu.device)
        return self.induced_adjoint(eye)

    def start(self, rho: torch.Tensor) -> list[torch.Tensor]:
        """``[q, s]`` of the induced masses of the path ``rho`` without flow.

        The source (stored times ``delta``, as the projector takes it) makes each step's change.
        """
        sigma = self.path_masses(rho)
        q = sigma.new_zeros(sigma.shape[0], sigma.shape[1] - 1, self.graph.n_edges)
        return [q, (self.delta / self.graph.dt) * (sigma[:, 1:] - sigma[:, :-1])]

    def report(self, rho: torch.Tensor, v: torch.Tensor) -> dict:
        """What :func:`.run_kantorovich` reports of a secondary, at the prox point ``v`` of its action."""
        return self.reported(rho, self.ops.objective_per_problem(v))

    def reported(self, rho: torch.Tensor, weighted: torch.Tensor) -> dict:
        """The report from the weighted action ``(B,)`` in problem units and the primary path ``rho``."""
        action = weighted / self.action_weight
        masses = self.path_masses(rho) * (self.mu * self.ys).reshape(-1, 1, 1)
        cost = self.secondary.weight * action
        # no entropic smoothing and no Sinkhorn: the entropic cost is the cost, and nothing lags
        return {
            "cost": cost, "action": action, "entropic_cost": cost, "converged": True, "error": 0.0,
            "lag": math.nan, "masses": masses,
        }  # fmt: skip


def support_graph(secondary: KantorovichSecondary, n_time: int) -> Graph:
    """The symmetric kNN graph of the support points, ``n_neighbors`` as the secondary says (at most ``n - 1``).

    Its isotropic edge weights take the dimension of the set the points sample (:func:`.intrinsic_dimension`), not
    their number of coordinates: points on a surface in 10-D priced as if they filled 10-D would make the
    secondary's transport several times too cheap.
    """
    n = secondary.support.shape[0]
    k = min(secondary.n_neighbors, n - 1)
    return Graph(secondary.support, n_time, n_neighbors=k, dimension=intrinsic_dimension(secondary.support, k))


class CoupledProjector:
    """Euclidean projection onto the primary's balance equation and each secondary's, together.

    The unknowns are the primary's ``x_b`` followed by ``[q, s]`` of each secondary (their masses are ``P rho``).
    See the module docstring for the normal equations and their Schur complement.
    """

    def __init__(self, primary, blocks: list[DynamicSecondary]):
        self.primary = primary
        self.blocks = blocks
        self.dt = primary.dt
        lam = primary.time_eigenvalues  # (Nt,)
        inv = primary.inverse_eigenvalues.reshape(len(lam), -1)  # (Nt, N): 1 / (lambda_w + mu + c_X)
        self.lam, self.inv = lam, inv
        pu = [primary.space_transform(b.dense().reshape(b.n, *primary.rho0.shape[1:])).reshape(b.n, -1)
              for b in blocks]  # fmt: skip
        self.pu = torch.cat(pu)  # (n_tot, N)
        self.sizes = [b.n for b in blocks]
        own = torch.block_diag(
            *[torch.as_tensor(b.graph.laplacian().toarray(), dtype=lam.dtype, device=lam.device)
              + torch.eye(b.n, dtype=lam.dtype, device=lam.device) / b.delta**2 for b in blocks]
        )  # fmt: skip
        f = lam[:, None] * (1.0 - lam[:, None] * inv)  # (Nt, N): f_w(mu)
        # one frequency at a time: an einsum over all of them at once may hold Nt x n_tot x N numbers
        schur = own + torch.stack([(self.pu * f_w) @ self.pu.T for f_w in f])
        # its inverse, symmetric: one batched product per projection (a batch of Nt triangular solves with one
        # right-hand side each took 2.2 ms at 32 steps and 200 points, 4x the product)
        self.schur_inverse = torch.cholesky_inverse(torch.linalg.cholesky(schur))  # (Nt, n_tot, n_tot)

    def project_(self, x: list[torch.Tensor], n_base: int) -> None:
        """Project ``x`` (the primary's unknowns, then ``[q, s]`` per secondary) in place."""
        xb = x[:n_base]
        self.primary.set_ends_(xb)
        rho = xb[0]
        r_x = self.primary.spectral(self.primary.residual_of(xb))
        shape = r_x.shape
        r_x = r_x.reshape(shape[0], shape[1], -1)
        r_y = []
        for j, b in enumerate(self.blocks):
            q, s = secondary_unknowns(x, n_base, j)
            sigma = b.path_masses(rho)
            r_y.append((sigma[:, 1:] - sigma[:, :-1]) / self.dt + b.projector.divergence([sigma, q]) - s / b.delta)
        r_y = apply_along(torch.cat(r_y, -1), self.primary.time_basis, 1)  # (B, Nt, n_tot)
        lam = self.lam.reshape(1, -1, 1)
        rhs = r_y - lam * ((self.inv * r_x) @ self.pu.T)
        psi = (rhs.transpose(0, 1) @ self.schur_inverse).transpose(0, 1)  # per frequency
        phi = self.inv * (r_x - lam * (psi @ self.pu))
        self.primary.apply_potential_(xb, self.primary.spectral(phi.reshape(shape), inverse=True))
        psi = apply_along(psi, self.primary.time_basis.T, 1)
        for j, (b, part) in enumerate(zip(self.blocks, torch.split(psi, self.sizes, -1), strict=True)):
            step = b.induced_adjoint(part[:, 1:] - part[:, :-1]) / self.dt  # P^T (psi_k - psi_{k-1}) / dt
            rho[:, 1:-1] += step.reshape(rho[:, 1:-1].shape)
            q, s = secondary_unknowns(x, n_base, j)
            q.sub_(b.projector.gradient(part))
            s.add_(part, alpha=1.0 / b.delta)


def secondary_unknowns(x: list[torch.Tensor], n_base: int, j: int) -> list[torch.Tensor]:
    """``[q, s]`` of the ``j``-th graph secondary in a primal point whose first ``n_base`` tensors are the base's."""
    return x[n_base + 2 * j : n_base + 2 * j + 2]


class WithDynamicSecondaries:
    """Chambolle-Pock operators: ``base`` (primary and pair-discretized secondaries) plus graph-discretized ones.

    The primal point is the base's followed by ``[q, s]`` of each :class:`DynamicSecondary`; the dual vector is
    flat, the base's then each secondary action's. ``K (x, q, s) = (K_b x, I_Y(P rho, q, s), ...)``.
    """

    def __init__(self, base, dynamic: list[DynamicSecondary], x0: list[torch.Tensor]):
        self.base = base
        self.dynamic = dynamic
        self.n_base = len(x0)
        self.projector_all = CoupledProjector(base.projector, dynamic)
        self.shapes = None
        self.start = list(x0) + [t for b in dynamic for t in b.start(x0[0])]
        self.primal_prox_(self.start)

    def __getattr__(self, name):  # the base's blocks, logs and cell weights
        return getattr(self.__dict__["base"], name)

    def _split(self, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        parts = torch.split(y, [math.prod(s) for s in self.shapes])
        return parts[0], [p.reshape(s) for p, s in zip(parts[1:], self.shapes[1:], strict=True)]

    def apply(self, x):
        """``(K_b x, I_Y(P rho, q, s), ...)`` as one flat vector."""
        parts = [self.base.apply(x[: self.n_base]).reshape(-1)]
        shapes = [parts[0].shape]
        for j, b in enumerate(self.dynamic):
            a = b.ops.apply([b.path_masses(x[0]), *secondary_unknowns(x, self.n_base, j)])
            parts.append(a.reshape(-1))
            shapes.append(a.shape)
        self.shapes = shapes
        return torch.cat(parts)

    def adjoint(self, y):
        """``K* y`` over the base's and the secondaries' unknowns."""
        yb, ys = self._split(y)
        out = self.base.adjoint(yb)
        rest = []
        for b, ya in zip(self.dynamic, ys, strict=True):
            d_sigma, *own = b.ops.adjoint(ya)
            out[0] = out[0] + b.induced_adjoint(d_sigma).reshape(out[0].shape)
            rest += own
        return out + rest

    def primal_prox_(self, x) -> None:
        """The coupled balance projection."""
        self.projector_all.project_(x, self.n_base)

    def dual_prox(self, z, sigma):
        """The base's proximal step and each secondary action's."""
        zb, zs = self._split(z)
        yb, vb = self.base.dual_prox(zb, sigma)
        ys, vs = [yb.reshape(-1)], [vb.reshape(-1)]
        for b, za in zip(self.dynamic, zs, strict=True):
            y, v = b.ops.dual_prox(za, sigma)
            ys.append(y.reshape(-1))
            vs.append(v.reshape(-1))
        return torch.cat(ys), torch.cat(vs)

    def step(self, x, y, tau, sigma):
        """One Chambolle-Pock step (the base's preparation first: debiased pair blocks relinearize)."""
        prepare = getattr(self.base, "prepare_step", None)
        if prepare is not None:
            prepare(x[: self.n_base])
        return primal_dual_step(self, x, y, tau, sigma)

    def block_points(self, v) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The base's part of a flat prox point and each secondary action's prox point."""
        return self._split(v)

    def objective(self, v) -> float:
        """The base's objective plus each secondary's weighted action (both in the problems' units)."""
        vb, vas = self._split(v)
        total = self.base.objective(vb)
        for b, va in zip(self.dynamic, vas, strict=True):
            total += float(b.ops.objective_per_problem(va).sum())
        return total


def norm_bound(base_norm2: float, blocks: list[DynamicSecondary]) -> float:
    """A bound of ``||K||^2`` with the secondaries: ``max(base + sum ||P_s||^2, 1)``.

    ``||K (x, u)||^2 = ||K_b x||^2 + sum_s ||I_s (P_s rho, u_s)||^2`` with ``||I_s|| <= 1``.
    """
    if not blocks:
        return base_norm2
    return max(base_norm2 + sum(b.norm**2 for b in blocks), 1.0)


def action_along(block: DynamicSecondary, rho: torch.Tensor) -> dict:
    """The secondary's report along a fixed primary path (a secondary kept out of the iteration, at weight 0).

    With the masses ``sigma = P rho`` fixed at every time node, the action is a quadratic form in the momenta and
    sources, ``sum_j w_j c_j^2 / r_j`` (``r`` the interpolated masses, ``w`` the weights), minimized per time step
    subject to ``G c = b``, ``G = [div_Y, -I / delta]``, ``b = -(sigma_{k+1} - sigma_k) / dt``: its minimum is
    ``b^T M^{-1} b`` with the weighted graph Laplacian ``M = G diag(r / w) G^T`` (one ``n_support``-square solve per
    step), and the minimizer ``c = diag(r / w) G^T M^{-1} b``.
    """
    sigma = block.path_masses(rho)
    r = block.ops.centred_density(sigma)  # (B, Nt, E + n): the masses the action divides by
    ratio = r / block.ops.weights[0]  # r / w, (B, Nt, E + n)
    graph, n = block.graph, block.n
    n_edges = graph.n_edges
    edge = ratio[..., :n_edges] / torch.as_tensor(graph.lengths**2, dtype=r.dtype, device=r.device)
    tail, head = (torch.as_tensor(graph.edges[:, i], device=r.device) for i in (0, 1))
    lap = r.new_zeros(*r.shape[:2], n * n)
    for i, j, sign in ((tail, tail, 1.0), (head, head, 1.0), (tail, head, -1.0), (head, tail, -1.0)):
        lap.index_add_(-1, i * n + j, sign * edge)
    lap = lap.reshape(*r.shape[:2], n, n) + torch.diag_embed(ratio[..., n_edges:] / block.delta**2)
    ridge = 1e-12 * lap.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True).clamp(min=1e-300)
    lap = lap + torch.diag_embed(ridge.expand(*r.shape[:2], n))
    b = -(sigma[:, 1:] - sigma[:, :-1]) / graph.dt
    value = (b * torch.linalg.solve(lap, b)).sum((1, 2))  # (B,), solver units
    return block.reported(rho, value * block.ops.cell_weight)
