"""A graph of cell states (Mathematics page, section 7): nodes from the cells and between time points.

Nodes are of two kinds:

- **state nodes**, one set per observed time point: k-means centres of that time point's cells in the joint space of
  the primary and (if given) secondary coordinates, each basis divided by its spread and the secondary then weighted
  by ``secondary_weight`` (default :data:`SECONDARY_WEIGHT`), so that cells which share a primary state but differ in
  the secondary fall into different nodes (where there are at most as many cells as the time point's share of nodes,
  the cells themselves). A node's coordinates are its cells' means in each basis, and its mass at that time point is
  its number of cells;
- **path nodes**, between consecutive time points: points of the static-OT (McCann) interpolation between their
  state nodes at fractions ``(1/4, 1/2, 3/4)`` by default, in both bases. A path runs through nodes only; with state
  nodes alone it must detour through other times' cells (on TIGON's bifurcation, kNN shortest paths through the
  held-in cells predicted a held-out time 1.08-1.93x worse in W1 than straight lines, and 1.01-1.04x with these nodes).

Edges are the symmetric kNN graph of all nodes in the full primary basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ot
from sklearn.cluster import KMeans

from ..solvers import Graph
from .inputs import as_number

FRACTIONS = (0.25, 0.5, 0.75)
# The secondary's weight against the primary in the joint space of the state nodes' k-means (each basis first
# divided by its spread). At equal weight half of what k-means minimizes is secondary variance, and nodes average
# cells that lie apart in the primary, where the graph's edges and transport live. Measured on the leading-chromatin
# simulation (graph fit at the defaults, Kantorovich, 2000 cells, held out at t = 0.6 / 1.2; W1 over static OT's,
# primary / secondary): weight 1: 0.90 / 0.98 and 0.88 / 1.02; 0.5: 0.84 / 0.95 and 0.75 / 0.96; 0 (the primary
# alone, secondaries carried as the cells' means): 0.99 / 0.98 and 0.73 / 1.01, the weight-0 fit's secondary 9%
# worse at t = 0.6 than with 0.5. ``benchmarks/heldout.py`` has the other courses.
SECONDARY_WEIGHT = 0.5


@dataclass(frozen=True)
class CellGraph:
    """What :func:`cell_graph` builds: the graph, the nodes' secondary coordinates, masses and cells.

    Attributes
    ----------
    graph
        The :class:`~sc_syncot.solvers.Graph` over all nodes (primary coordinates).
    secondary
        ``(n_nodes, dY)`` secondary coordinates of the nodes, or ``None``.
    masses
        ``(n_times, n_nodes)`` cell counts per node at each observed time point (zero off its state nodes).
    times
        ``(n_times,)`` the observed time points, increasing.
    cell_nodes
        ``(n_cells,)`` the state node of each cell.
    node_time
        ``(n_nodes,)`` where each node sits in time: a time point's index ``k`` for its state nodes, ``k + f`` for the
        path nodes at fraction ``f`` between time points ``k`` and ``k + 1``.
    path_ends
        ``(n_nodes, 2)`` the two state nodes (of time points ``k`` and ``k + 1``) a path node interpolates, ``-1``
        for state nodes.
    """

    graph: Graph
    secondary: np.ndarray | None
    masses: np.ndarray
    times: np.ndarray
    cell_nodes: np.ndarray
    node_time: np.ndarray
    path_ends: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return self.graph.n_nodes

    def state_nodes(self, k: int) -> np.ndarray:
        """Indices of the state nodes of time point ``k``."""
        return np.flatnonzero(self.node_time == k)


def _spread(a: np.ndarray) -> float:
    """Root of the total variance: a basis' overall scale, so that two bases weigh alike in the joint space."""
    return float(np.sqrt(np.var(a, axis=0).sum())) or 1.0


def joint_space(x: np.ndarray, y: np.ndarray | None, secondary_weight: float, spreads=None) -> np.ndarray:
    """Primary and secondary coordinates side by side, each divided by its spread, the secondary then weighted.

    ``spreads``: ``(primary, secondary)`` spreads to divide by (those of other cells, to place new ones in the same
    space); by default those of ``x`` and ``y``.
    """
    sx, sy = spreads if spreads is not None else (_spread(x), None if y is None else _spread(y))
    return x / sx if y is None else np.hstack([x / sx, secondary_weight * y / sy])


def _state_nodes(x, y, n_nodes: int, seed: int, secondary_weight: float = SECONDARY_WEIGHT):
    """Centres ``(x, y)`` of k-means in the joint scaled space, their cell counts, and each cell's centre."""
    if len(x) <= n_nodes:
        return x, y, np.ones(len(x)), np.arange(len(x))
    joint = joint_space(x, y, secondary_weight)
    # repeated cells (identical states) give fewer distinct points than clusters, and k-means then leaves some
    # clusters empty: ask for at most as many as there are points, and drop any that stayed empty
    n_clusters = min(n_nodes, len(np.unique(joint, axis=0)))
    labels = KMeans(n_clusters=n_clusters, n_init=2, random_state=seed).fit(joint).labels_
    labels = np.unique(labels, return_inverse=True)[1]
    n_nodes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_nodes).astype(float)

    def means(a):
        return None if a is None else np.stack([np.bincount(labels, weights=col, minlength=n_nodes) for col in a.T], 1)

    return means(x) / counts[:, None], None if y is None else means(y) / counts[:, None], counts, labels


def _path_nodes(xa, xb, ya, yb, ma, mb, fractions, n_pairs: int, rng):
    """McCann interpolants between two time points' state nodes: the static-OT plan's pairs at each fraction.

    The plan (POT's exact ``emd`` between the normalized masses) has at most ``n_a + n_b - 1`` pairs; when there are
    more than ``n_pairs``, that many are drawn with probability proportional to their mass.
    """
    plan = ot.emd(ma / ma.sum(), mb / mb.sum(), ot.dist(xa, xb))
    i, j = np.nonzero(plan > 1e-12 * plan.max())
    if len(i) > n_pairs:
        p = plan[i, j] / plan[i, j].sum()
        keep = rng.choice(len(i), size=n_pairs, replace=False, p=p)
        i, j = i[keep], j[keep]
    xs, ys, fs = [], [], []
    for f in fractions:
        xs.append((1 - f) * xa[i] + f * xb[j])
        ys.append(None if ya is None else (1 - f) * ya[i] + f * yb[j])
        fs.append(np.full(len(i), f))
    ends = np.tile(np.column_stack([i, j]), (len(fractions), 1))
    return np.concatenate(xs), None if ya is None else np.concatenate(ys), np.concatenate(fs), ends


def cell_graph(
    x: np.ndarray,
    time: np.ndarray,
    y: np.ndarray | None = None,
    *,
    n_nodes: int = 2000,
    n_neighbors: int = 10,
    fractions: tuple[float, ...] = FRACTIONS,
    n_time: int = 8,
    seed: int = 0,
    secondary_weight: float = SECONDARY_WEIGHT,
) -> CellGraph:
    """Nodes from the cells of each time point and from the paths between them, joined by a kNN graph.

    Half of ``n_nodes`` goes to state nodes (shared among the time points in proportion to their cells), half to
    path nodes (shared among the intervals, ``len(fractions)`` nodes per static-OT pair); see the module docstring.
    The default of 2,000 nodes keeps a fit of a few intervals within seconds to tens of seconds on 2 CPU cores
    (``benchmarks/graph.py``: 15 s for 2,000 nodes and 4 intervals in 10-D); ``n_nodes`` trades speed for
    resolution.

    Parameters
    ----------
    x
        ``(n_cells, d)`` primary coordinates (all columns of the basis).
    time
        ``(n_cells,)`` numeric time of each cell; at least two distinct values.
    y
        ``(n_cells, dY)`` secondary coordinates of the same cells (paired), or ``None``.
    n_nodes
        Total number of nodes (state and path nodes together), at least 4 per time point.
    n_neighbors
        ``k`` of the kNN graph.
    fractions
        Where path nodes are placed between consecutive time points, each in ``(0, 1)``; ``()`` for none.
    n_time
        Time steps per interval of the graph.
    seed
        Seed of k-means and of the choice of static-OT pairs.
    secondary_weight
        Weight of the secondary against the primary in the joint space of the state nodes' k-means, each basis
        divided by its spread first (0: nodes from the primary alone, carrying their cells' mean secondary state).

    Returns
    -------
    CellGraph
    """
    x, time, y = _checked(x, time, y)
    times = np.unique(time)
    if len(times) < 2:
        raise ValueError(f"time: expected at least two distinct time points, got {times.tolist()}")
    if not (np.isfinite(as_number(secondary_weight, "secondary_weight")) and secondary_weight >= 0):
        raise ValueError(f"secondary_weight: expected a finite float >= 0, got {secondary_weight!r}")
    if not all(0 < f < 1 for f in fractions):
        raise ValueError(f"fractions: expected values in (0, 1), got {tuple(fractions)}")
    per_time = np.array([np.sum(time == t) for t in times])
    least = (8 if fractions else 4) * len(times)
    if not isinstance(n_nodes, (int, np.integer)) or isinstance(n_nodes, bool) or n_nodes < least:
        raise ValueError(f"n_nodes: expected an integer of at least {least} here, got {n_nodes!r}")
    state_budget = n_nodes if not fractions else n_nodes // 2
    shares = np.maximum(2, np.floor(state_budget * per_time / per_time.sum()).astype(int))
    rng = np.random.default_rng(seed)
    nodes_x, nodes_y, node_time, cell_nodes = [], [], [], np.empty(len(x), dtype=int)
    path_ends = []
    states = []
    for k, t in enumerate(times):
        idx = np.flatnonzero(time == t)
        cx, cy, counts, labels = _state_nodes(
            x[idx], None if y is None else y[idx], int(shares[k]), seed, secondary_weight
        )
        offset = sum(len(a) for a in nodes_x)
        cell_nodes[idx] = offset + labels
        states.append((cx, cy, counts, offset))
        nodes_x.append(cx)
        nodes_y.append(cy)
        node_time.append(np.full(len(cx), float(k)))
        path_ends.append(np.full((len(cx), 2), -1))
    n_pairs = max(1, (n_nodes - state_budget) // max(1, len(fractions)) // (len(times) - 1)) if fractions else 0
    for k in range(len(times) - 1 if fractions else 0):
        (xa, ya, ma, off_a), (xb, yb, mb, off_b) = states[k], states[k + 1]
        px, py, pf, ends = _path_nodes(xa, xb, ya, yb, ma, mb, fractions, n_pairs, rng)
        nodes_x.append(px)
        nodes_y.append(py)
        node_time.append(k + pf)
        path_ends.append(ends + np.array([off_a, off_b]))
    points = np.concatenate(nodes_x)
    secondary = None if y is None else np.concatenate(nodes_y)
    node_time = np.concatenate(node_time)
    path_ends = np.concatenate(path_ends)
    points, secondary, node_time, cell_nodes, path_ends = _merge_coincident(
        points, secondary, node_time, cell_nodes, path_ends
    )
    masses = np.zeros((len(times), len(points)))
    for k in range(len(times)):
        masses[k] = np.bincount(cell_nodes, weights=(time == times[k]).astype(float), minlength=len(points))
    graph = Graph(points, n_time, n_neighbors=min(n_neighbors, len(points) - 1))
    return CellGraph(graph, secondary, masses, times, cell_nodes, node_time, path_ends)


def _merge_coincident(points, secondary, node_time, cell_nodes, path_ends):
    """Merge nodes at the same primary point (repeated cells, or a path between identical states) into the first.

    The graph needs distinct points (an edge of length 0 has no transport cost); such repeats are exact repeats of
    measurements, so the first node's secondary coordinates stand for them.
    """
    _, first, inverse = np.unique(points, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(points):
        return points, secondary, node_time, cell_nodes, path_ends
    order = np.argsort(first)  # keep the nodes in their order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    kept = first[order]
    new_index = rank[inverse.reshape(-1)]
    ends = np.where(path_ends[kept] >= 0, new_index[np.maximum(path_ends[kept], 0)], -1)
    return points[kept], None if secondary is None else secondary[kept], node_time[kept], new_index[cell_nodes], ends


def _checked(x, time, y):
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float).reshape(-1)
    if x.ndim != 2 or len(x) != len(time):
        raise ValueError(f"x: expected (n_cells, d) with one time per cell ({len(time)}), got shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(time))):
        raise ValueError("x, time: expected finite values")
    if y is not None:
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape[0] != len(x) or not np.all(np.isfinite(y)):
            raise ValueError(f"y: expected finite (n_cells, dY) coordinates of the same {len(x)} cells, got {y.shape}")
    return x, time, y
