"""Operators of the dynamic problem on a :class:`~sc_syncot.solvers.Graph` (Mathematics page, section 7).

Primal unknowns (``B`` problems, ``Nt`` steps, ``n`` nodes, ``E`` edges), as on the staggered grid:

- ``rho`` ``(B, Nt + 1, n)``: node masses on the time faces (the first and last fixed);
- ``m`` ``(B, Nt, E)``: edge momenta at time centres, ``m_e = l_e J_e``;
- ``zeta`` ``(B, Nt, n)``: node sources at time centres, stored scaled by ``s = sqrt(alpha)`` (unbalanced only).

Centred variables are one tensor ``(2, B, Nt, E + n)``: channel 0 the densities an action term divides by,
channel 1 what it squares. Edge ``e`` holds ``(a_e rho_e, m_e)``, ``rho_e`` the time-and-edge mean of its two
nodes' masses (arithmetic: it is linear, so the interpolation stays a linear map and the action a sum of
perspectives, whose proximal maps are the grid's); node ``i`` holds ``(b rho_i, z_i)``, ``rho_i`` the time mean, and
``z_i = 0`` when balanced. The node terms are what keep node masses nonnegative (the perspective is finite only for
``rho_i >= 0``): edge means alone would let a node go negative beside a heavy neighbour (-2% of the largest mass
at the optimum of a balanced 5-D problem when they were left out).
The action is then ``sum w_j q_j^2 / r_j`` with ``w_e = omega_e g_e a_e`` (``g_e`` the Monge stretch, see
:class:`~sc_syncot.solvers.Graph`) and ``w_i = b``, so the grid's vectorized proximal map (:func:`.prox_action`)
serves both geometries. The factors ``a_e = 2 / (deg_i + deg_j)`` and ``b = 1``, then both divided by the
interpolation's norm, keep ``||I|| <= 1`` (the step condition of Chambolle-Pock) without letting a node of high
degree set everyone's step.

The balance equation ``(rho_{k+1} - rho_k)/dt + B^T (m / l) - zeta / s = 0`` has normal matrix
``-Delta_t (x) I + I (x) L + I / s^2`` with ``L = B^T diag(1 / l^2) B``: diagonal after a DCT-II in time and, in
space, either ``L``'s eigenbasis (two dense ``n x n`` products per projection) or one sparse LU factorization of
``L + c_k I`` per time frequency ``c_k`` (see :class:`GraphProjector`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .dct import apply_along
from .endpoints import time_operator
from .graph import Graph
from .prox import action_density, prox_action
from .scaling import to_csr

# Up to this many nodes the projection uses L's eigenbasis; beyond, sparse factorizations. Measured on 10-D kNN graphs
# (benchmarks/graph.py, 2 threads): the factorizations were 2-4.4x slower per projection at 500-5000 nodes and 3x
# slower to set up at 5000 (58 s against 17.5 s), as such graphs fill in; the eigenbasis costs n^3 time (about 30 s
# at 6000 nodes) and n^2 memory, which set the limit. Graphs of low dimension (lattices, thin manifolds) fill in
# far less, where the factorizations can win earlier: solve(..., projection="sparse").
EIGH_MAX_NODES = 6000
PROJECTIONS = ("auto", "eigh", "sparse")


def sparse_operator(matrix: sp.spmatrix, opts: dict) -> torch.Tensor:
    """A SciPy sparse matrix as a torch CSR tensor (on ``opts``' device and dtype).

    Why CSR products rather than ``index_add_`` / gathers over the edge list: on a 5000-node kNN graph with a batch
    of 4 x 8 time steps they took 5.6 ms against 11 ms (node sums of edge values) and 1.8 against 5.5 ms (edge
    values from nodes) on 2 CPU threads.
    """
    coo = sp.coo_matrix(matrix)
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.long, device=opts["device"])
    data = torch.as_tensor(coo.data, **opts)
    return to_csr(torch.sparse_coo_tensor(indices, data, size=coo.shape, check_invariants=True))


def apply_sparse(op: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``op`` (``(p, q)``, CSR) applied to the last axis of ``x`` (``(..., q)``): ``(..., p)``."""
    flat = x.reshape(-1, x.shape[-1])
    return (op @ flat.T).T.reshape(*x.shape[:-1], op.shape[0])


class GraphProjector:
    """Euclidean projection onto the graph's balance equation with fixed endpoints.

    Parameters
    ----------
    graph
        The graph (in the solver's units).
    rho0, rho1
        Endpoint masses ``(B, n)`` on the solver's device and dtype.
    zeta_scale
        ``s = sqrt(alpha)``, or ``None`` for balanced transport (then the constant mode of each connected component
        is left out, which needs equal endpoint masses per component).
    method
        ``"eigh"`` (dense eigenbasis of ``L``), ``"sparse"`` (SciPy's SuperLU of ``L + c_k I`` per time frequency,
        on the host) or ``"auto"`` (``"eigh"`` up to ``EIGH_MAX_NODES`` nodes).
    free
        Whether the start and end masses are free (soft endpoints, :mod:`.endpoints`) instead of fixed.
    """

    def __init__(
        self,
        graph: Graph,
        rho0: torch.Tensor,
        rho1: torch.Tensor,
        zeta_scale,
        method: str = "auto",
        free: tuple[bool, bool] = (False, False),
    ):
        if method not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {method!r}")
        if method == "auto":
            method = "eigh" if graph.n_nodes <= EIGH_MAX_NODES else "sparse"
        opts = {"dtype": rho0.dtype, "device": rho0.device}
        self.method = method
        self.dt = graph.dt
        self.zeta_scale = zeta_scale
        self.rho0, self.rho1 = rho0, rho1
        grad = sp.diags(1.0 / graph.lengths) @ graph.incidence()  # (E, n): (phi_tail - phi_head) / l
        self.gradient_op = sparse_operator(grad, opts)
        self.divergence_op = sparse_operator(grad.T, opts)  # (n, E): outflow positive
        self.n = graph.n_nodes
        self.free = tuple(bool(f) for f in free)
        self.time_basis, time_eig = time_operator(graph.n_time, self.dt, self.free, **opts)
        self.time_eigenvalues = time_eig
        grounded = zeta_scale is None and not any(self.free)  # balanced: a zero mode in time frequency 0
        shift = 0.0 if zeta_scale is None else 1.0 / zeta_scale**2
        lap = graph.laplacian()
        if method == "eigh":
            evals, self.space_basis = torch.linalg.eigh(torch.as_tensor(lap.toarray(), **opts))
            eig = time_eig[:, None] + evals.clamp(min=0.0)[None] + shift
            if grounded:  # the constant mode of each component, in time frequency 0
                null = evals.abs() <= 1e-10 * evals.abs().max()
                eig[0, null] = math.inf
            self.inverse_eigenvalues = 1.0 / eig  # (Nt, n)
        else:
            self._factor(lap, time_eig.cpu().numpy() + shift, graph, grounded)

    def _factor(self, lap: sp.csr_matrix, shifts: np.ndarray, graph: Graph, balanced: bool) -> None:
        """One SuperLU factorization per time frequency.

        A zero shift (balanced, frequency 0) grounds one node per connected component: that fixes the constant
        which ``L`` leaves free, and a constant per component in time frequency 0 changes no update.
        """
        n = graph.n_nodes
        eye = sp.identity(n, format="csc")
        self.keep = None
        self.factors = []
        for k, c in enumerate(shifts):
            if balanced and k == 0:
                labels = graph.components()
                first = np.unique(labels, return_index=True)[1]
                keep = np.setdiff1d(np.arange(n), first)
                self.keep = keep
                self.factors.append(spla.splu(lap[keep][:, keep].tocsc()))
            else:
                self.factors.append(spla.splu((lap + c * eye).tocsc()))

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        """``(A A^T)^{-1} r`` for ``r`` ``(B, Nt, n)`` (the balanced null modes set to zero)."""
        if self.method == "eigh":
            return self.spectral(self.spectral(r) * self.inverse_eigenvalues, inverse=True)
        r = self._sparse_solve(apply_along(r, self.time_basis, 1))
        return apply_along(r, self.time_basis.T, 1)

    def _sparse_solve(self, r: torch.Tensor) -> torch.Tensor:
        host = r.detach().cpu().numpy()
        out = np.zeros_like(host)
        for k, lu in enumerate(self.factors):
            rhs = host[:, k, :].T  # (n, B)
            if k == 0 and self.keep is not None:
                out[:, k, self.keep] = lu.solve(np.ascontiguousarray(rhs[self.keep])).T
            else:
                out[:, k, :] = lu.solve(np.ascontiguousarray(rhs)).T
        return torch.as_tensor(out, dtype=r.dtype, device=r.device)

    def divergence(self, x: list[torch.Tensor]) -> torch.Tensor:
        """``B^T (m / l)`` at every node, ``(B, Nt, n)`` (outflow positive)."""
        return apply_sparse(self.divergence_op, x[1])

    def gradient(self, phi: torch.Tensor) -> torch.Tensor:
        """``(B^T diag(1/l))^T phi``: ``(phi_tail - phi_head) / l`` per edge, the adjoint of :meth:`divergence`."""
        return apply_sparse(self.gradient_op, phi)

    def residual(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Balance residual of ``x`` (its endpoints as they are)."""
        rho = x[0]
        res = (rho[:, 1:] - rho[:, :-1]) / self.dt + self.divergence(x)
        if len(x) > 2:
            res = res - x[2] / self.zeta_scale
        return res

    def project_(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Project ``x = [rho, m(, zeta)]`` onto the balance equation in place and return it."""
        self.set_ends_(x)
        self.apply_potential_(x, self.solve(self.residual(x)))
        return x

    # -- the pieces of the projection, for projections coupled to other spaces (:mod:`.dynamic_secondary`) --

    def set_ends_(self, x: list[torch.Tensor]) -> None:
        """Fix the end masses of ``x`` in place (those that are not free)."""
        if not self.free[0]:
            x[0][:, 0].copy_(self.rho0)
        if not self.free[1]:
            x[0][:, -1].copy_(self.rho1)

    residual_of = residual

    def space_transform(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` ``(..., n)`` in the eigenbasis of ``L`` (that of :attr:`inverse_eigenvalues`)."""
        return v @ self.space_basis

    def spectral(self, r: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """``r`` ``(B, Nt, n)`` in the basis that diagonalizes ``A A^T`` (or back from it); ``"eigh"`` only."""
        if inverse:
            return apply_along(r @ self.space_basis.T, self.time_basis.T, 1)
        return apply_along(r, self.time_basis, 1) @ self.space_basis

    def apply_potential_(self, x: list[torch.Tensor], phi: torch.Tensor) -> None:
        """``x -= A^T phi`` in place (``phi`` at the time centres, ``(B, Nt, n)``)."""
        rho = x[0]
        rho[:, 1:-1].add_(phi[:, 1:] - phi[:, :-1], alpha=1.0 / self.dt)
        if self.free[0]:  # -A^T phi on a free end (see .projection)
            rho[:, 0].add_(phi[:, 0], alpha=1.0 / self.dt)
        if self.free[1]:
            rho[:, -1].sub_(phi[:, -1], alpha=1.0 / self.dt)
        x[1].sub_(self.gradient(phi))
        if len(x) > 2:
            x[2].add_(phi, alpha=1.0 / self.zeta_scale)


class GraphTransportOperators:
    """``K = I`` (interpolation), the projection and the action's proximal map on a graph, for Chambolle-Pock.

    Parameters
    ----------
    projector
        The balance projection.
    graph
        The graph (the solver's units).
    edge_weights
        ``(B | 1, E)`` action weights ``omega_e g_e`` of the edges.
    cell_weight
        ``(B,)`` factor from the solver's units to the problems': ``dt`` times the mass scale.
    growth_prior
        ``(B | 1, n)`` prior growth rates per node, or ``None`` (see :class:`.SyncOTProblem`). The node terms
        become ``b (q - h r)^2 / r = b q^2 / r - 2 b h q + b h^2 r``: the action plus a linear term ``<c, v>``,
        still 1-homogeneous, whose proximal map is the action's at ``z - c``.
    """

    compiled = False

    def __init__(
        self,
        projector: GraphProjector,
        graph: Graph,
        edge_weights: torch.Tensor,
        cell_weight: torch.Tensor,
        growth_prior: torch.Tensor | None = None,
    ):
        self.projector = projector
        self.cell_weight = cell_weight
        self.balanced = projector.zeta_scale is None
        self.n, self.n_edges = graph.n_nodes, graph.n_edges
        opts = {"dtype": edge_weights.dtype, "device": edge_weights.device}
        deg = graph.degree()
        self.edge_scale = torch.as_tensor(2.0 / deg[graph.edges].sum(1), **opts)  # a_e before the norm
        self.node_scale = 1.0
        ends = abs(graph.incidence())  # (E, n): an edge's two nodes
        self._set_mean(ends, opts)
        norm = self._interpolation_norm(graph.n_time, opts)
        self.edge_scale = self.edge_scale / norm
        self.node_scale = self.node_scale / norm
        self._set_mean(ends, opts)
        w = edge_weights * self.edge_scale  # (B|1, E)
        w = torch.cat([w, torch.full((w.shape[0], self.n), self.node_scale, **opts)], dim=1)
        self.weights = w[None, :, None, :]  # (1, B|1, 1, E + n): one momentum-like channel
        self._rho_guess = None
        self.shift, self.prior_slope = self._prior_shift(growth_prior, opts)

    def _prior_shift(self, growth_prior, opts) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The linear term ``c`` of a growth prior, ``(2, B|1, 1, E + n)``, and ``h`` ``(B|1, 1, n)``; or ``None``s.

        With ``r = node_scale rho`` and ``q = zeta_scale zeta`` the node term ``node_scale (q - h r)^2 / r`` is
        ``alpha (zeta - g_0 rho)^2 / rho`` for ``h = zeta_scale g_0 / node_scale``.
        """
        if growth_prior is None:
            return None, None
        if self.balanced:
            raise ValueError("growth_prior: a growth prior needs an unbalanced problem (set delta)")
        h = torch.as_tensor(growth_prior, **opts) * (self.projector.zeta_scale / self.node_scale)  # (B|1, n)
        shift = h.new_zeros(2, h.shape[0], 1, self.n_edges + self.n)
        shift[0, :, 0, self.n_edges :] = self.node_scale * h.square()
        shift[1, :, 0, self.n_edges :] = -2.0 * self.node_scale * h
        return shift, h[:, None, :]

    def _set_mean(self, ends: sp.spmatrix, opts: dict) -> None:
        """The edges' scaled means of their nodes, ``a_e (rho_i + rho_j) / 2``, as sparse operators both ways."""
        mean = sp.diags(0.5 * self.edge_scale.cpu().numpy()) @ ends
        self.mean_op, self.mean_adjoint_op = sparse_operator(mean, opts), sparse_operator(mean.T, opts)

    def _interpolation_norm(self, n_time: int, opts: dict, n_iter: int = 60) -> float:
        """``||I_rho||`` by power iteration on ``I_rho^T I_rho`` (+1%: the Rayleigh quotient is a lower estimate)."""
        gen = torch.Generator(device=opts["device"]).manual_seed(0)
        x = torch.rand(1, n_time + 1, self.n, generator=gen, **opts)
        val = 1.0
        for _ in range(n_iter):
            y = self._density_adjoint(self.centred_density(x))
            val = float(torch.linalg.vector_norm(y))
            x = y / max(val, 1e-300)
        return 1.01 * math.sqrt(val)

    def centred_density(self, rho: torch.Tensor) -> torch.Tensor:
        """The densities of ``rho`` ``(B, Nt + 1, n)`` each action term divides by, ``(B, Nt, E + n)`` (channel 0)."""
        mid = 0.5 * (rho[:, :-1] + rho[:, 1:])  # (B, Nt, n)
        return torch.cat([apply_sparse(self.mean_op, mid), self.node_scale * mid], dim=-1)

    def _density_adjoint(self, y0: torch.Tensor) -> torch.Tensor:
        mid = apply_sparse(self.mean_adjoint_op, y0[..., : self.n_edges])
        mid = mid + self.node_scale * y0[..., self.n_edges :]
        rho = mid.new_zeros(mid.shape[0], mid.shape[1] + 1, self.n)
        rho[:, :-1] += 0.5 * mid
        rho[:, 1:] += 0.5 * mid
        return rho

    def apply(self, x: list[torch.Tensor]) -> torch.Tensor:
        """``I x``, ``(2, B, Nt, E + n)``."""
        zeta = x[1].new_zeros(*x[1].shape[:-1], self.n) if self.balanced else x[2]
        second = torch.cat([x[1], zeta], dim=-1)
        return torch.stack([self.centred_density(x[0]), second])

    def adjoint(self, y: torch.Tensor) -> list[torch.Tensor]:
        """``I* y`` as ``[rho, m(, zeta)]``."""
        out = [self._density_adjoint(y[0]), y[1][..., : self.n_edges]]
        if not self.balanced:
            out.append(y[1][..., self.n_edges :])
        return out

    def primal_prox_(self, x: list[torch.Tensor]) -> None:
        """Projection onto the balance equation, in place."""
        self.projector.project_(x)

    def dual_prox(self, z: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z - prox_F(z), prox_F(z) / sigma)`` (``F`` is 1-homogeneous, see :class:`.TransportOperators`)."""
        p = prox_action(z if self.shift is None else z - self.shift, 1.0, self.weights, None, start=self._rho_guess)
        self._rho_guess = p[0]
        return z - p, p / sigma

    def objective_per_problem(self, v: torch.Tensor) -> torch.Tensor:
        """The action of the centred point ``v``, per problem, in the problems' own units."""
        value = action_density(v, self.weights).flatten(1).sum(1)
        if self.shift is not None:  # the growth prior's linear term
            value = value + (self.shift * v).sum((0, 2, 3))
        return value * self.cell_weight

    def objective(self, v: torch.Tensor) -> float:
        """Total action over the batch."""
        return float(self.objective_per_problem(v).sum())

    def edge_and_node_terms(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(a_e m_e^2 / r_e, b z_i^2 / r_i)`` of the prox point ``v``, per problem, without the edges' weights.

        Times ``cell_weight``: the first, weighted by ``omega_e`` (and the Monge stretches), gives the transport
        terms; the second is ``alpha zeta^2 / rho`` summed, which :func:`.solve` splits into growth terms.
        """
        rho, q = v[0], v[1]
        inv = torch.where(rho > 0, 1.0 / torch.where(rho > 0, rho, 1.0), 0.0)
        terms = q.square() * inv
        edge = terms[..., : self.n_edges] * self.edge_scale
        if self.balanced:
            return edge, None
        r, z = rho[..., self.n_edges :], q[..., self.n_edges :]
        if self.prior_slope is not None:  # growth costs its departure from the prior: (q - h r)^2 / r
            z = z - self.prior_slope * r
        node = (z.square() * inv[..., self.n_edges :]).sum((1, 2)) * self.node_scale
        return edge, node
