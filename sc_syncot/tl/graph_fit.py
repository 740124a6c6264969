""":func:`sc_syncot.tl.syncot` on a graph of cell states: the geometry, the graph, its secondary, the write-back.

The nodes are :func:`sc_syncot.pp.cell_graph`'s: cluster centres of each time point's cells in the joint (primary,
secondary) space and points on the static-OT paths between time points, in every column of the primary basis.
Each node carries its own secondary coordinates (its cells' mean, or the interpolated ones), and a Kantorovich kernel
row is the distribution of the support labels of the node's cells. A Monge secondary is the map fitted on the paired
cells, as on the grid, read at the nodes: the nodes' own coordinates also hold what the map does not explain (noise,
or a secondary that leads), and paying for their change along each edge would bend the primary paths through it.
"""

from __future__ import annotations

import numpy as np
import ot
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .. import pp
from ..pp.cell_graph import CellGraph
from ..pp.inputs import CellData
from ..solvers import SyncOTResult
from ..solvers.graph import intrinsic_dimension
from ..solvers.kantorovich import KantorovichSecondary
from .graph_flow import GraphFlow

GEOMETRIES = ("auto", "grid", "graph")
# Beyond this many columns a grid (n_bins per axis) no longer fits in memory: 3 axes of 64 bins are 262,144 cells.
MAX_GRID_DIMS = 3


def resolve_geometry(
    geometry: str, n_columns: int, n_dims, grid_options: dict | None = None, graph_options: list[str] | None = None
) -> tuple[str, str]:
    """The geometry to fit on and why: ``"auto"`` is the graph when the basis has more than 3 columns.

    Options that only the grid has (``grid_options``: ``n_dims``, ``n_bins``, ``bandwidth``, given when not
    ``None``) ask for the grid under ``"auto"``, and are refused with ``"graph"``. Options that only the graph
    has (``graph_options``: the names of those set away from their defaults, such as ``n_nodes`` or
    ``coupling='paired'``) ask for the graph under ``"auto"``; the grid refuses them later, naming them.
    """
    if not isinstance(geometry, str) or geometry not in GEOMETRIES:
        raise ValueError(f"geometry: expected one of {GEOMETRIES}, got {geometry!r}")
    given = {k: v for k, v in ({"n_dims": n_dims} | (grid_options or {})).items() if v is not None}
    graph_given = list(graph_options or [])
    if geometry == "graph" and given:
        name, value = next(iter(given.items()))
        raise ValueError(
            f"{name}={value!r}: applies to the grid only; geometry='graph' fits the cells' own states in every "
            "column of the primary basis"
        )
    if geometry == "auto" and given and graph_given:
        raise ValueError(
            f"{', '.join(graph_given)} (the graph's) and {', '.join(f'{k}={v!r}' for k, v in given.items())} (the "
            "grid's) given together; pass "
            "geometry='graph' or geometry='grid' and the options of that one"
        )
    if geometry == "auto" and given:
        geometry, why = "grid", f"{', '.join(given)} given"
    elif geometry == "auto" and graph_given and n_columns <= MAX_GRID_DIMS:
        geometry, why = "graph", f"{', '.join(graph_given)} given"
    elif geometry == "auto":
        geometry = "graph" if n_columns > MAX_GRID_DIMS else "grid"
        why = f"the primary basis has {n_columns} columns" + (
            f" (a grid takes at most {MAX_GRID_DIMS})" if geometry == "graph" else "; geometry='graph' fits them too"
        )
    else:
        why = f"geometry={geometry!r}"
    if geometry == "grid" and n_dims is None and n_columns > MAX_GRID_DIMS:
        raise ValueError(
            f"n_dims: a grid has 1 to {MAX_GRID_DIMS} axes and the primary basis has {n_columns} columns; pass "
            "n_dims (the first columns are used) or geometry='graph' (all of them)"
        )
    return geometry, why


# On the graph "auto" takes delta at least this many times the largest W2 between consecutive time points
DELTA_PER_W2 = 2.0


def interval_w2(x: np.ndarray, time: np.ndarray, time_points: np.ndarray, seed: int, n_max: int = 1000) -> np.ndarray:
    """Squared W2 between the cells of consecutive time points (POT's exact ``emd2``, at most ``n_max`` of each)."""
    rng = np.random.default_rng(seed)
    out = []
    for t0, t1 in zip(time_points[:-1], time_points[1:], strict=True):
        a, b = (x[rng.permutation(np.flatnonzero(time == t))[:n_max]] for t in (t0, t1))
        out.append(float(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), ot.dist(a, b), numItermax=10**6)))
    return np.asarray(out)


def auto_delta(x: np.ndarray, time: np.ndarray, time_points: np.ndarray, seed: int, n_max: int = 1000) -> float:
    """``delta="auto"`` on the graph: the larger of half the extent and twice the largest consecutive W2.

    Half the cells' largest extent is the grid's rule; the W2 distance between consecutive time points is exact
    (POT ``emd2``) on at most ``n_max`` cells of each. A move of length ``d`` is explained by transport rather than
    by death here and birth there when ``d`` is well below ``delta`` (Mathematics page, oracle 4: moving a unit bump
    costs ``4 delta^2 (1 - cos(d / 2 delta))``, which is ``d^2`` for ``d << delta`` and far less for ``d ~ 2 delta``).
    In many columns the cells of consecutive time points are often further apart than half the extent along one axis
    (the simulated course in 10 PCs: W2 22.9 between its first two time points, half extent 15.8); with delta that
    small the fit destroys mass at one time point and recreates it at the next, and predictions between them mix
    the two (held-out W1 15.7 at delta 15.8 against 14.5 at 33.8 and 14.2 balanced, static OT 14.9, 600 cells).
    """
    longest = float(np.sqrt(np.max(interval_w2(x, time, time_points, seed, n_max))))
    return max(0.5 * float(np.ptp(x, axis=0).max()), DELTA_PER_W2 * longest)


def build(cells: CellData, y_scaled, *, n_nodes: int, n_neighbors: int, n_time: int, seed: int) -> CellGraph:
    """The cell graph, with the isotropic edge weights of its nodes' intrinsic dimension."""
    cg = pp.cell_graph(
        cells.x, cells.time, y_scaled, n_nodes=n_nodes, n_neighbors=n_neighbors, n_time=n_time, seed=seed
    )
    dim = intrinsic_dimension(cg.graph.points, k=n_neighbors)
    graph = type(cg.graph)(cg.graph.points, n_time, edges=cg.graph.edges, dimension=dim)
    return CellGraph(graph, cg.secondary, cg.masses, cg.times, cg.cell_nodes, cg.node_time, cg.path_ends)


def node_masses(cg: CellGraph, rel_mass: np.ndarray) -> np.ndarray:
    """``(K, n)`` node masses of each time point: its cells per node, scaled to the time point's mass."""
    counts = cg.masses.sum(axis=1, keepdims=True)
    return cg.masses / counts * np.asarray(rel_mass, float)[:, None]


def node_rates(cg: CellGraph, cell_rates: np.ndarray) -> np.ndarray:
    """``(n,)`` a per-cell value at the nodes: a state node's cells' mean, a path node's two ends' interpolation.

    A node with neither (a state node whose cells were merged into another) takes the mean over all cells.
    """
    n = cg.n_nodes
    counts = np.bincount(cg.cell_nodes, minlength=n)
    sums = np.bincount(cg.cell_nodes, weights=cell_rates, minlength=n)
    out = np.where(counts > 0, sums / np.maximum(counts, 1), float(np.mean(cell_rates)))
    path = cg.path_ends[:, 0] >= 0
    f = cg.node_time[path] % 1.0
    tail, head = cg.path_ends[path].T
    out[path] = (1 - f) * out[tail] + f * out[head]
    return out


def node_kernel(
    cg: CellGraph, labels: np.ndarray, y_scaled: np.ndarray, n_support: int, k: int, columns: slice = slice(None)
) -> sp.csr_matrix:
    """Row-stochastic ``(n_nodes, n_support)`` kernel: the support labels of each node's cells.

    A node without cells (a path node, or a state node merged away) takes the labels of the ``k`` cells nearest
    to its secondary coordinates (``columns`` of them: those of ``y_scaled``'s basis).
    """
    n = cg.n_nodes
    counts = sp.csr_matrix((np.ones(len(labels)), (cg.cell_nodes, labels)), shape=(n, n_support)).toarray()
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    if len(empty):
        k = min(k, len(y_scaled))
        near = cKDTree(y_scaled).query(cg.secondary[empty][:, columns], k)[1].reshape(len(empty), -1)
        for row, idx in zip(empty, near, strict=True):
            counts[row] = np.bincount(labels[idx], minlength=n_support)
    return sp.csr_matrix(counts / counts.sum(axis=1, keepdims=True))


def summary(cg: CellGraph, couplings) -> dict:
    """The graph's arrays for ``.uns``, besides what both geometries write.

    ``couplings``: the secondaries' (:class:`~sc_syncot.tl.syncot.Coupling`), whose scales take the nodes'
    secondary coordinates back to each basis' own units: ``"secondary"`` for one, ``"secondaries"`` (by basis
    key) for several.
    """
    g = cg.graph
    out = {
        "points": g.points.astype(np.float32),
        "edges": g.edges.astype(np.int64),
        "omega": g.omega.astype(np.float32),
        "n_time": g.n_time,
        "n_nodes": g.n_nodes,
        "dimension": g.dimension,
        "node_time": cg.node_time.astype(np.float32),
        "path_ends": cg.path_ends.astype(np.int64),
    }
    own = {
        c.name: (cg.secondary[:, c.columns] / c.info["scale"]).astype(np.float32)
        for c in couplings
        if "scale" in c.info
    }
    if len(own) > 1:
        out["secondaries"] = own
    elif own:
        out["secondary"] = own["secondary"]
    return out


def batched(arr: np.ndarray, result: SyncOTResult) -> np.ndarray:
    """An array of the result with the interval axis, also for a single interval (the solver drops it then)."""
    return arr if result.batched else arr[None]


def per_cell(flow: GraphFlow, cells: CellData, cg: CellGraph, couplings=()) -> dict[str, np.ndarray]:
    """Each cell's node, velocity (all columns), growth and, with secondaries, each one's velocity.

    ``couplings`` name the secondaries and their columns of the nodes' secondary coordinates.
    """
    n, d = cells.x.shape
    velocity, growth = np.zeros((n, d)), np.zeros(n)
    sec = None if flow.secondary is None else flow.induced_velocity(flow.secondary)
    vel_sec = None if sec is None else np.zeros((n, sec.shape[-1]))
    for k, t in enumerate(cells.time_points):
        sel = cells.time == t
        nodes = cg.cell_nodes[sel]
        velocity[sel] = flow.cell_values(flow.velocity, nodes, k)
        growth[sel] = flow.cell_growth(flow.cell_values(flow.growth, nodes, k), k)
        if sec is not None:
            vel_sec[sel] = flow.cell_values(sec, nodes, k)
    out = {"velocity": velocity, "growth": growth, "node": cg.cell_nodes.astype(np.int64)}
    if vel_sec is not None:
        out.update({f"velocity_{c.name}": vel_sec[:, c.columns] for c in couplings if c.secondary is not None})
    return out


def kantorovich_secondary(
    cg, y_scaled, weight, secondary_delta, n_support, epsilon, seed, n_neighbors, name="secondary", columns=slice(None)
):
    """Support points of the secondary, the node kernel, and the secondary term; also each cell's label.

    ``y_scaled``: the cells' scaled coordinates in this secondary, ``columns`` its columns of the nodes' ones.
    """
    support, labels = pp.secondary_support(y_scaled, n_support=min(n_support, len(y_scaled)), seed=seed)
    kernel = node_kernel(cg, labels, y_scaled, len(support), n_neighbors, columns)
    sec = KantorovichSecondary(kernel, support, weight, delta=secondary_delta, epsilon=epsilon, name=name)
    return sec, support, labels
