"""The computed flow on a graph of cell states, as stored in ``adata.uns[key]``, and what follows from it.

The graph counterpart of :class:`~sc_syncot.tl.flow.Flow`: node densities at every time node, edge flows and node
sources at time centres. Shares (``push`` / ``pull``) and particles move along the edge flows themselves, so
nothing is interpolated off the nodes and every column of the primary basis is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from .._settings import warn
from ..pp.inputs import primary_table
from .flow import TimeAxis
from .time_warp import TimeWarp

# Edges a particle may cross in one time step (the mixing ends with probability 1 where mass stays; a bound on
# hops keeps a walk finite on flows that circulate)
MAX_HOPS = 10_000


@dataclass
class GraphFlow(TimeAxis):
    """Node and edge arrays of a time course solved on a graph, in physical time units."""

    points: np.ndarray  # (n, d) node coordinates in the primary basis (all columns)
    edges: np.ndarray  # (E, 2) node pairs; a positive flow runs from the first to the second
    n_time: int
    time_points: np.ndarray  # (K,)
    density: np.ndarray  # (K-1, n_time+1, n)
    velocity: np.ndarray  # (K-1, n_time, n, d), primary units per unit of time
    growth: np.ndarray  # (K-1, n_time, n), per unit of time
    edge_flow: np.ndarray  # (K-1, n_time, E), mass per unit of time from edges[:, 0] to edges[:, 1]
    secondary: np.ndarray | None = None  # (n, dY) nodes' secondary coordinates (several side by side), own units
    warp: TimeWarp | None = None

    @classmethod
    def from_uns(cls, adata, key: str) -> GraphFlow:
        """Read ``adata.uns[key]`` written by :func:`sc_syncot.tl.syncot` with ``geometry="graph"``."""
        u = adata.uns[key]
        warp = TimeWarp.from_uns(u["time_warp"]) if "time_warp" in u else None
        return cls.from_summary(u, None if warp is None or warp.is_identity else warp)

    @classmethod
    def from_summary(cls, u: dict, warp: TimeWarp | None) -> GraphFlow:
        """From the ``.uns`` summary being written (``warp``: ``None`` for constant speed)."""
        g = u["graph"]
        secondary = g.get("secondary")
        if "secondaries" in g:  # several, side by side in the order given (as the cells' secondary coordinates)
            secondary = np.hstack([np.asarray(g["secondaries"][k], float) for k in u["params"]["secondary"]])
        return cls(
            np.asarray(g["points"], float),
            np.asarray(g["edges"], np.int64),
            int(g["n_time"]),
            np.asarray(u["time_points"], float),
            np.asarray(u["density"], float),
            np.asarray(u["velocity"], float),
            np.asarray(u["growth"], float),
            np.asarray(u["edge_flow"], float),
            None if secondary is None else np.asarray(secondary, float),
            warp,
        )

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.points)

    def mass(self, density: np.ndarray) -> float:
        """Total mass of node masses."""
        return float(np.sum(density))

    def induced_velocity(self, coords: np.ndarray) -> np.ndarray:
        """``(K-1, n_time, n, dY)`` velocity of per-node coordinates (e.g. the nodes' secondary ones) along the flow.

        The graph's node momentum ``1/2 sum_{e at i} J_e (y_head - y_tail)`` (the solver's, with ``coords`` as the
        edges' ends) over the node's mean mass in the time step; 0 where it has none.
        """
        tail, head = self.edges[:, 0], self.edges[:, 1]
        diff = coords[head] - coords[tail]  # (E, dY)
        contrib = 0.5 * self.edge_flow[..., None] * diff  # (K-1, n_time, E, dY)
        momentum = np.zeros((*self.edge_flow.shape[:2], self.n_nodes, coords.shape[1]))
        np.add.at(momentum, (slice(None), slice(None), tail), contrib)
        np.add.at(momentum, (slice(None), slice(None), head), contrib)
        mid = 0.5 * (self.density[:, 1:] + self.density[:, :-1])
        return np.where(mid[..., None] > 0, momentum / np.where(mid > 0, mid, 1.0)[..., None], 0.0)

    def cell_values(self, field: np.ndarray, nodes: np.ndarray, k: int) -> np.ndarray:
        """A centred field ``(K-1, n_time, n[, d])`` at cells of time point ``k`` sitting on ``nodes``.

        The mean over the adjacent time centres, as on the grid.
        """
        return np.mean([field[i, j][nodes] for i, j in self.at_time_point(k)], axis=0)

    def parcels(self, k: int, j: int) -> tuple[np.ndarray, ...]:
        """What moves over time step ``j`` of interval ``k``, and the nodes' mixing.

        Returns ``(source, target, amount)`` of the parcels moved along the edges that carry flow (each edge's flow
        times the step, in the direction of its sign), then per node its mass at the start of the step (at least
        0), what flows in and what flows out.
        """
        moved = self.edge_flow[k, j] * (self.durations[k] / self.n_time)
        carry = moved != 0
        moved, edges = moved[carry], self.edges[carry]
        fwd = moved > 0
        source = np.where(fwd, edges[:, 0], edges[:, 1])
        target = np.where(fwd, edges[:, 1], edges[:, 0])
        amount = np.abs(moved)
        n = self.n_nodes
        rho = np.clip(self.density[k, j], 0.0, None)
        inflow = np.bincount(target, weights=amount, minlength=n)
        outflow = np.bincount(source, weights=amount, minlength=n)
        return source, target, amount, rho, inflow, outflow

    def advect_share(self, share: np.ndarray, k: int, direction: int) -> np.ndarray:
        """Carry a share (fraction of each node's mass that belongs to a group) through interval ``k``.

        ``share``: ``(n,)``, or ``(n, m)`` for ``m`` shares carried at once (one sparse factorization per step).

        Within a time step a node's mass and what flows into it mix, and the mixture leaves along the node's
        outgoing flows (mass can cross several edges in one step, so shares are solved for, not stepped). Forward
        (``direction=1``), the mixture's share ``o`` solves ``(rho_i + in_i) o_i - sum_{e -> i} a_e o_src(e) =
        rho_i s_i`` with ``a_e`` the mass moved along edge ``e``; backward (``-1``), the mixture's fate ``f`` solves
        ``(rho_i + in_i) f_i - sum_{i -> e} a_e f_dst(e) = (rho_i + in_i - out_i) s'_i``. Both matrices are
        diagonally dominant M-matrices, so shares stay in ``[0, 1]``, and shares of complementary groups add up
        to 1 wherever mass is. Growth multiplies a group and the whole population alike: it does not change a share.
        """
        share = np.asarray(share, float).copy()
        steps = range(self.n_time) if direction > 0 else reversed(range(self.n_time))
        for j in steps:
            share = self._mix(share, k, j, direction)
        return share

    def _mix(self, share: np.ndarray, k: int, j: int, direction: int) -> np.ndarray:
        """One step of :meth:`advect_share`; ``share`` is ``(n,)`` or ``(n, m)`` (``m`` shares carried at once)."""
        source, target, amount, rho, inflow, outflow = self.parcels(k, j)
        n = self.n_nodes
        # mass born within the step (growth) can leave a node beyond what it held and received: it has the
        # composition of the node's mixture, so forward it is left out of the weights and backward it counts
        total = rho + inflow if direction > 0 else np.maximum(rho + inflow, outflow)
        floor = 1e-12 * max(float(total.max()), 1e-300)  # nodes without mass keep their share
        if direction > 0:
            coupling = sp.csr_matrix((amount, (target, source)), shape=(n, n))
            weight = rho
        else:
            coupling = sp.csr_matrix((amount, (source, target)), shape=(n, n))
            weight = total - outflow
        column = (slice(None),) + (None,) * (share.ndim - 1)  # node weights against one share or several
        matrix = (sp.diags(total + floor) - coupling).tocsc()
        rhs = (weight + floor)[column] * share
        return np.clip(splu(matrix).solve(rhs), 0.0, 1.0)

    def walk(self, nodes: np.ndarray, k: int, j: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One step of particles (node indices) along the flow, and ``int g dt`` over it.

        The mixing of :meth:`advect_share`, followed by one particle: at a node, the node's mass and what flows
        in mix, and the mixture either stays (``rho_i + in_i - out_i``) or leaves along one of the node's outgoing
        flows ``a_e``, drawn in proportion, into the next node's mixture, and so on. Mass crosses several edges in
        one step where the flow is fast (a particle that took one edge per step fell behind the densities: 40-75%
        of the mass apart after one step on a simulated course). Drawn this way, the expected particles at a node
        are ``rho_i + in_i`` and along an edge ``a_e``, as in the flow.

        The growth ``g dt`` of the step is counted half at the start node and half at the end node: the solver's
        source is ``g (rho_j + rho_{j+1}) / 2`` (the step's mean mass), so the particles' weights keep the
        population's mass (counted at the start node alone, they lost 6% of it per interval there).
        """
        source, target, amount, rho, inflow, outflow = self.parcels(k, j)
        order = np.argsort(source, kind="stable")
        source, target, amount = source[order], target[order], amount[order]
        n = self.n_nodes
        total = np.maximum(rho + inflow, outflow)  # as _mix's backward weights: mass born in the step leaves too
        stop = total - outflow
        start = np.searchsorted(source, np.arange(n + 1))
        cum = np.concatenate([[0.0], np.cumsum(amount)])  # amounts of each node's edges lie in cum[start[i]:]
        out = nodes.copy()
        moving = np.flatnonzero(total[out] > 0)
        for _ in range(MAX_HOPS):
            if len(moving) == 0:
                break
            at = out[moving]
            u = rng.random(len(moving)) * total[at] - stop[at]  # > 0: leaves, along the edge that u falls in
            leaving = u > 0
            moving, at, u = moving[leaving], at[leaving], u[leaving]
            edge = np.searchsorted(cum, cum[start[at]] + u, side="left") - 1
            edge = np.clip(edge, start[at], start[at + 1] - 1)
            out[moving] = target[edge]
        if len(moving):
            warn(
                f"trajectories: {len(moving)} particles still crossing edges after {MAX_HOPS} in one time step "
                "(a flow that circulates where no mass stays); they stop where they are",
                RuntimeWarning,
            )
        dt = self.durations[k] / self.n_time
        return out, 0.5 * dt * (self.growth[k, j][nodes] + self.growth[k, j][out])


def cell_nodes(adata, key: str, primary: str, n_nodes: int) -> np.ndarray:
    """Each cell's state node, ``.obs[f"{key}_node"]`` as written by the graph fit."""
    obs = primary_table(adata, primary).obs
    col = f"{key}_node"
    if col not in obs:
        raise ValueError(f"key={key!r}: .obs[{col!r}] (each cell's graph node) is missing; refit with tl.syncot")
    nodes = obs[col].to_numpy()
    if not (np.issubdtype(nodes.dtype, np.integer) and nodes.min() >= 0 and nodes.max() < n_nodes):
        raise ValueError(f".obs[{col!r}]: expected node indices in [0, {n_nodes}), as the graph fit writes them")
    return nodes.astype(np.int64)
