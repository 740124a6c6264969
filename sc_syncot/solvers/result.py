"""What a solve returns (the output stage of grid -> problem -> solver -> output)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph import Graph
from .grid import Grid


@dataclass(repr=False)
class SyncOTResult:
    """Solution of a :class:`~sc_syncot.solvers.SyncOTProblem`, as NumPy arrays on the host.

    For a batch of ``B`` problems every array has a leading batch axis and costs are arrays ``(B,)``; a single
    problem has neither.

    On a :class:`~sc_syncot.solvers.Graph`, ``*shape`` below is ``(n,)``, the nodes: ``rho`` holds node masses,
    ``momentum`` each node's momentum ``1/2 sum_{e at i} m_e u_e`` (``u_e`` the edge's unit direction; a uniform flow's
    ``rho v``), and the edge momenta are in ``momentum_staggered[0]``, ``(n_time, E)``.

    Attributes
    ----------
    geometry
        The grid or graph solved on (also as ``grid``).
    rho
        Density on the ``n_time + 1`` time nodes, ``(n_time + 1, *shape)``.
    momentum
        Momentum ``m = rho v`` at time-and-space centres, ``(n_time, *shape, d)``.
    source
        Source ``zeta = rho g`` at centres, ``(n_time, *shape)`` (zero for balanced transport).
    velocity, growth
        ``m / rho`` and ``zeta / rho`` at centres; exactly zero outside ``support`` (never NaN).
    support
        Boolean mask of the centres where the density exceeds ``support_threshold`` times its maximum.
    cost
        Total objective (squared distance for a single space).
    costs
        ``primary_transport``, ``primary_growth``, one entry per secondary (``secondary_0``, ... or the
        secondary's name) and ``total``. A Kantorovich secondary's entry is ``lambda sum_k C_k / dt`` with ``C_k``
        the transport and Hellinger cost of the entropic plan between the induced masses of consecutive time
        nodes, without its entropy term (an upper bound of the exact ``HK^2`` that converges to it as ``epsilon``
        falls).
    converged, n_iter, history
        Convergence flag, iterations run and the per-check history (residuals, objective, steps).
    secondary_velocity
        For each Monge secondary, the induced velocity ``J v``, ``(n_time, *shape, dY)``.
    secondary_density
        For each Kantorovich secondary, the induced masses ``K^T rho_k |cell|`` on its support points at every time
        node, ``(n_time + 1, n_support)``.
    entropic_costs
        For each Kantorovich secondary (by name), the smoothed cost that the solver minimizes,
        ``lambda sum_k HK_eps^2 / dt`` with the entropy term; it decreases as the secondary's weight grows, while the
        entry in ``costs`` (the same plans without their entropy) need not.
    secondary_actions
        Each secondary's action without its weight ``lambda`` (by name): what the path costs in that space, also
        for a secondary of weight 0 (a Monge secondary at ``lambda = 0`` only measures, it changes nothing).
    momentum_staggered
        The raw staggered momenta (one array per axis on a grid; the edge momenta on a graph), which satisfy the
        discrete balance equation with ``rho`` and ``source`` to rounding.
    support_threshold, device
        As passed to / resolved by :func:`~sc_syncot.solvers.solve`.
    compiled
        Whether the iterations ran as ``torch.compile`` graphs (``solve(compile=...)``).
    """

    geometry: Grid | Graph
    rho: np.ndarray
    momentum: np.ndarray
    source: np.ndarray
    velocity: np.ndarray
    growth: np.ndarray
    support: np.ndarray
    cost: float | np.ndarray
    costs: dict[str, float | np.ndarray]
    converged: bool
    n_iter: int
    history: dict[str, list[float]]
    secondary_velocity: list[np.ndarray] = field(default_factory=list)
    secondary_density: list[np.ndarray] = field(default_factory=list)
    entropic_costs: dict[str, float | np.ndarray] = field(default_factory=dict)
    secondary_actions: dict[str, float | np.ndarray] = field(default_factory=dict)
    momentum_staggered: list[np.ndarray] = field(default_factory=list, repr=False)
    support_threshold: float = 1e-4
    device: str = "cpu"
    compiled: bool = False

    @property
    def grid(self) -> Grid | Graph:
        """The geometry (the name from when grids were the only one)."""
        return self.geometry

    @property
    def batched(self) -> bool:
        """Whether the arrays carry a leading batch axis."""
        return self.rho.ndim == len(self.geometry.shape) + 2

    @property
    def flux(self) -> np.ndarray:
        """On a graph: the mass flow ``J_e = m_e / l_e`` along each edge (first node to second), ``(n_time, E)``."""
        if not isinstance(self.geometry, Graph):
            raise ValueError("flux: edge flows exist on a Graph geometry only; on a grid use momentum")
        return self.momentum_staggered[0] / self.geometry.lengths

    def __repr__(self) -> str:
        g = self.geometry
        batch = f", batch={self.rho.shape[0]}" if self.batched else ""
        costs = ", ".join(f"{k}={np.round(v, 6)}" for k, v in self.costs.items())
        state = "converged" if self.converged else "not converged"
        where = f"graph={g.n_nodes} nodes, {g.n_edges} edges" if isinstance(g, Graph) else f"grid={g.shape}"
        return (
            f"SyncOTResult({where} x {g.n_time}{batch}, {state} in {self.n_iter} iterations on {self.device}; {costs})"
        )

    @classmethod
    def from_solve(cls, fields: dict, costs: dict, state, reports, host, actions=None, **settings) -> SyncOTResult:
        """Assemble a result from a finished iteration (shared by both geometries).

        ``fields``: the geometry and the host arrays (``rho``, ``momentum``, ...); ``costs``: per-problem arrays
        (floats for a single problem); ``state``: the primal-dual state; ``reports``: the Kantorovich secondaries'
        ``(index, name, report)``; ``host``: tensor -> host array (batch axis dropped for a single problem);
        ``settings``: ``support_threshold``, ``device``, ``compiled``; ``actions``: each secondary's action without
        its weight, per problem.
        """
        single = np.ndim(costs["total"]) == 1 and len(costs["total"]) == 1
        costs = {k: (float(val[0]) if single else val) for k, val in costs.items()}
        actions = {k: (float(val[0]) if single else val) for k, val in (actions or {}).items()}
        return cls(
            **fields,
            cost=costs["total"],
            costs=costs,
            secondary_actions=actions,
            converged=state.converged,
            n_iter=state.n_iter,
            history=state.history,
            secondary_density=[host(rep["masses"]) for _, _, rep in reports],
            entropic_costs={
                name: (float(rep["entropic_cost"][0]) if single else rep["entropic_cost"].detach().cpu().numpy())
                for _, name, rep in reports
            },
            **settings,
        )

    def mass(self) -> np.ndarray:
        """Mass at each time node (``(B, n_time + 1)`` for a batch)."""
        return self.geometry.mass(self.rho)

    def balance_residual(self) -> float:
        """Largest violation of the discrete balance equation, relative to ``max |d_t rho|``."""
        g = self.geometry
        batched = self.batched
        rho = self.rho if batched else self.rho[None]
        m = self.momentum_staggered if batched else [mi[None] for mi in self.momentum_staggered]
        zeta = self.source if batched else self.source[None]
        if isinstance(g, Graph):
            return g.balance_residual(rho, m[0], zeta)
        dt_rho = np.diff(rho, axis=1) / g.dt
        div = dt_rho.copy()
        for i, (mi, h) in enumerate(zip(m, g.spacing, strict=True)):
            div += np.diff(mi, axis=2 + i) / h
        return float(np.abs(div - zeta).max() / max(np.abs(dt_rho).max(), np.abs(zeta).max(), 1e-300))
