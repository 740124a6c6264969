"""A graph of states in R^d (any d), the geometry beside :class:`~sc_syncot.solvers.Grid` (Mathematics page, section 7).

Nodes are points ``x_i`` (cells, cluster centres, or points between samples); edges are symmetric pairs ``(i, j)``
with length ``l_e = |x_j - x_i|``. Densities are node masses on the time faces, momenta live on edges at time centres
(``m_e = l_e J_e``, ``J_e`` the mass flow ``i -> j`` per unit time), sources on nodes at time centres: the staggered
grid's layout, with the lattice of cells replaced by the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .grid import is_integer

EDGE_WEIGHTS = ("isotropic", "uniform")


DEFAULT_NEIGHBORS = 10  # k of the kNN edges when none are given


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes in R^d joined by symmetric weighted edges, with ``n_time`` steps on unit time.

    The transport action on the graph is ``sum_k dt sum_e omega_e m_e^2 / rho_e`` with ``rho_e`` the mean mass of the
    edge's two nodes. ``omega_e`` makes it consistent with the continuum's ``int |m|^2 / rho``: a uniform flow ``v``
    through node ``i`` costs at least ``2 rho_i v^T M_i^{-1} v`` with ``M_i = sum_{e at i} u_e u_e^T / omega_e``
    (``u_e`` the unit edge directions), which is ``rho_i |v|^2`` when ``M_i = 2 I``; on a lattice of any spacing this
    holds with ``omega = 1``, where the graph's action is the grid's. A random graph's ``M_i`` cannot be made ``2 I``
    by scalar weights (its directions are uneven), so ``"isotropic"`` (default) asks it of the trace only, the
    consistency condition of graph Laplacians on point clouds: ``1 / omega_e`` is the mean of its two nodes'
    ``c_i = 2 dimension / deg_i``. ``dimension`` is that of the space the nodes sample: the number of coordinates by
    default; set it lower for points near a lower-dimensional set (an embedding whose cells vary along fewer
    directions), as the flows then run along that set only. ``"uniform"`` is ``omega = 1``; an array gives
    ``omega_e`` per edge. What each costs on 10-D Gaussians, as the number of nodes grows: ``benchmarks/graph.py``.

    Parameters
    ----------
    points
        Node coordinates, ``(n, d)``.
    n_time
        Number of time steps on ``[0, 1]``.
    n_neighbors
        ``k`` of the default symmetric kNN graph (an edge where either node is among the other's ``k`` nearest).
    edges
        The edges instead of the kNN graph: ``(E, 2)`` node indices (no self-loops; a repeated or reversed pair is
        merged, unless ``edge_weights`` is an array, which must then match one row per unordered pair), or a SciPy
        sparse ``(n, n)`` adjacency such as scanpy's ``.obsp["connectivities"]`` (its nonzero pattern, symmetrized).
    edge_weights
        ``"isotropic"``, ``"uniform"`` or an array ``(E,)`` of positive ``omega_e`` (in the order of ``edges``).
    dimension
        Dimension of the space the nodes sample, for ``"isotropic"`` weights; ``None`` is ``d``, the number of
        coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> g = Graph(np.random.default_rng(0).normal(size=(200, 5)), n_time=8, n_neighbors=6)
    >>> g.n_nodes, g.ndim, g.edges.shape[1]
    (200, 5, 2)

    References
    ----------
    J. Maas, "Gradient flows of the entropy for finite Markov chains", J. Funct. Anal. 261 (2011); M. Erbar, M. Rumpf,
    B. Schmitzer, S. Simon, "Computation of optimal transport on discrete metric measure spaces", Numer. Math. 144
    (2020); N. Garcia Trillos, "Gromov-Hausdorff limit of Wasserstein spaces on point clouds", Calc. Var. 59 (2020).
    """

    points: np.ndarray
    n_time: int
    n_neighbors: int = DEFAULT_NEIGHBORS
    edges: np.ndarray | None = None
    edge_weights: str | np.ndarray = "isotropic"
    dimension: int | None = None
    lengths: np.ndarray = field(init=False, repr=False)
    omega: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        pts = np.array(self.points, dtype=float)
        if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] < 1:
            raise ValueError(f"points: expected an array (n, d) with n >= 2 nodes, got shape {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"points: expected finite coordinates, found {int(np.sum(~np.isfinite(pts)))} NaN/inf")
        if not is_integer(self.n_time) or self.n_time < 1:
            raise ValueError(f"n_time: expected a positive integer, got {self.n_time!r}")
        if self.edges is None:
            if not is_integer(self.n_neighbors) or not 1 <= self.n_neighbors < len(pts):
                raise ValueError(f"n_neighbors: expected an integer in [1, {len(pts) - 1}], got {self.n_neighbors!r}")
            edges = knn_edges(pts, int(self.n_neighbors))
        else:
            if self.n_neighbors != DEFAULT_NEIGHBORS:
                raise ValueError(f"n_neighbors={self.n_neighbors!r}: builds kNN edges, and edges are given; give one")
            edges = _check_edges(self.edges, len(pts), merge=isinstance(self.edge_weights, str))
        lengths = np.linalg.norm(pts[edges[:, 1]] - pts[edges[:, 0]], axis=1)
        if np.any(lengths <= 0):
            e = int(np.argmin(lengths))
            raise ValueError(
                f"points: nodes {edges[e, 0]} and {edges[e, 1]} coincide (an edge of length 0); merge duplicate points"
            )
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "n_time", int(self.n_time))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "lengths", lengths)
        if self.dimension is not None and isinstance(self.edge_weights, str) and self.edge_weights == "uniform":
            raise ValueError(f"dimension={self.dimension!r}: sets isotropic edge weights, and edge_weights='uniform'")
        dimension = pts.shape[1] if self.dimension is None else self.dimension
        if not is_integer(dimension) or not 1 <= dimension <= pts.shape[1]:
            raise ValueError(f"dimension: expected an integer in [1, {pts.shape[1]}] or None, got {self.dimension!r}")
        object.__setattr__(self, "dimension", int(dimension))
        object.__setattr__(self, "omega", self._omega(self.edge_weights, edges, len(pts)))

    def _omega(self, spec, edges, n) -> np.ndarray:
        if isinstance(spec, str):
            if spec not in EDGE_WEIGHTS:
                raise ValueError(f"edge_weights: expected one of {EDGE_WEIGHTS} or an array, got {spec!r}")
            if spec == "uniform":
                return np.ones(len(edges))
            return isotropic_weights(edges, n, self.dimension)
        omega = np.array(spec, dtype=float)
        if omega.shape != (len(edges),) or not np.all(np.isfinite(omega) & (omega > 0)):
            raise ValueError(f"edge_weights: expected {len(edges)} positive finite values, got shape {omega.shape}")
        return omega

    # -- sizes and the time axis --------------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        """Number of nodes ``n``."""
        return self.points.shape[0]

    @property
    def n_edges(self) -> int:
        """Number of (undirected) edges ``E``."""
        return self.edges.shape[0]

    @property
    def ndim(self) -> int:
        """Dimension ``d`` of the space the nodes live in."""
        return self.points.shape[1]

    @property
    def shape(self) -> tuple[int]:
        """Layout of one time slice of node masses, ``(n,)`` (the grid's ``shape``)."""
        return (self.n_nodes,)

    @property
    def n_cells(self) -> int:
        """Number of nodes (the grid's number of cells, for code shared by both geometries)."""
        return self.n_nodes

    @property
    def cell_volume(self) -> float:
        """Always 1: densities on a graph are node masses."""
        return 1.0

    @property
    def dt(self) -> float:
        """Time step ``1 / n_time``."""
        return 1.0 / self.n_time

    @property
    def extent(self) -> float:
        """Largest side of the nodes' bounding box (the length unit of the solve, as a grid's largest extent)."""
        return float(np.ptp(self.points, axis=0).max())

    def times(self) -> np.ndarray:
        """The ``n_time + 1`` time nodes ``k / n_time``."""
        return np.linspace(0.0, 1.0, self.n_time + 1)

    def mass(self, rho: np.ndarray) -> np.ndarray:
        """Total mass of node masses ``(..., n)``."""
        return np.asarray(rho).sum(axis=-1)

    # -- structure ----------------------------------------------------------------------------------------------

    def incidence(self) -> sp.csr_matrix:
        """Signed incidence ``B`` (``E x n``): ``+1`` at an edge's first node, ``-1`` at its second.

        The graph divergence of edge momenta ``m`` (outflow positive) is ``B^T (m / l)``.
        """
        e = np.arange(self.n_edges)
        rows, cols = np.concatenate([e, e]), self.edges.T.reshape(-1)
        vals = np.concatenate([np.ones(self.n_edges), -np.ones(self.n_edges)])
        return sp.csr_matrix((vals, (rows, cols)), shape=(self.n_edges, self.n_nodes))

    def laplacian(self) -> sp.csr_matrix:
        """``L = B^T diag(1 / l^2) B``: the space part of the balance equation's normal matrix."""
        b = self.incidence()
        return (b.T @ sp.diags(1.0 / self.lengths**2) @ b).tocsr()

    def components(self) -> np.ndarray:
        """Connected component of each node, labelled from 0 to ``n_components - 1``."""
        adj = sp.coo_matrix((np.ones(self.n_edges), (self.edges[:, 0], self.edges[:, 1])), shape=(self.n_nodes,) * 2)
        return connected_components(adj, directed=False)[1]

    def degree(self) -> np.ndarray:
        """Number of edges at each node."""
        return np.bincount(self.edges.reshape(-1), minlength=self.n_nodes)

    def scaled(self, factor: float) -> Graph:
        """The same graph with every coordinate times ``factor`` (edges and weights kept)."""
        return Graph(
            self.points * factor, self.n_time, edges=self.edges, edge_weights=self.omega, dimension=self.dimension
        )

    def node_vectors(self, edge_values: np.ndarray, ends: np.ndarray | None = None) -> np.ndarray:
        """``1/2 sum_{e at i} edge_values_e (ends_head - ends_tail) / l_e`` per node: edge flows as node vectors.

        With momenta ``m`` (``(..., E)``) and ``ends`` the node coordinates this is each node's momentum (a uniform
        flow's ``rho v`` on a lattice); ``ends`` defaults to the points, and may be any per-node coordinates (e.g.
        a secondary space's, which gives the induced secondary momentum).
        """
        ends = self.points if ends is None else np.asarray(ends, dtype=float)
        tail, head = self.edges[:, 0], self.edges[:, 1]
        vec = (ends[..., head, :] - ends[..., tail, :]) / self.lengths[:, None]  # (..., E, dY)
        contrib = 0.5 * np.asarray(edge_values)[..., None] * vec  # (..., E, dY)
        ends_of = abs(self.incidence()).T.tocsr()  # (n, E): each edge's two nodes
        flat = np.moveaxis(contrib, -2, 0).reshape(self.n_edges, -1)
        out = (ends_of @ flat).reshape(self.n_nodes, *contrib.shape[:-2], contrib.shape[-1])
        return np.moveaxis(out, 0, -2)

    def balance_residual(self, rho: np.ndarray, momentum: np.ndarray, source: np.ndarray) -> float:
        """Largest violation of ``(rho_{k+1} - rho_k)/dt + B^T (m / l) = zeta`` relative to ``max |d_t rho|``.

        ``rho`` ``(B, Nt + 1, n)``, edge momenta ``(B, Nt, E)``, sources ``(B, Nt, n)``.
        """
        dt_rho = np.diff(rho, axis=1) / self.dt
        flow = np.asarray(momentum) / self.lengths
        div = (self.incidence().T @ flow.reshape(-1, self.n_edges).T).T.reshape(dt_rho.shape)
        scale = max(np.abs(dt_rho).max(), np.abs(source).max(), 1e-300)
        return float(np.abs(dt_rho + div - source).max() / scale)

    def __repr__(self) -> str:
        return f"Graph({self.n_nodes} nodes in R^{self.ndim}, {self.n_edges} edges, n_time={self.n_time})"


def knn_edges(points: np.ndarray, k: int) -> np.ndarray:
    """Edges ``(E, 2)``, ``i < j``, of the symmetric kNN graph: ``(i, j)`` where either is among the other's ``k``."""
    _, idx = cKDTree(points).query(points, k=k + 1)
    rows = np.repeat(np.arange(len(points)), k)
    cols = idx[:, 1:].reshape(-1)  # the first neighbour is the point itself (or a duplicate of it)
    return _unique_pairs(np.stack([rows, cols], axis=1))


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def _check_edges(edges, n: int, merge: bool = True) -> np.ndarray:
    if sp.issparse(edges):
        if edges.shape != (n, n):
            raise ValueError(f"edges: expected an adjacency ({n}, {n}) to match the points, got {edges.shape}")
        adj = sp.coo_matrix(edges)
        arr = np.stack([adj.row, adj.col], axis=1)
        arr = arr[arr[:, 0] != arr[:, 1]]  # a diagonal carries no transport
        if len(arr) == 0:
            raise ValueError("edges: the adjacency has no nonzero entries off its diagonal")
        return _unique_pairs(arr.astype(np.int64))
    arr = np.asarray(edges)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise ValueError(f"edges: expected a non-empty array (E, 2) of node indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"edges: expected integer node indices, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"edges: expected node indices in [0, {n - 1}], got range [{arr.min()}, {arr.max()}]")
    if np.any(arr[:, 0] == arr[:, 1]):
        raise ValueError("edges: expected no self-loops (i, i)")
    if merge:
        return _unique_pairs(arr.astype(np.int64))
    pairs = np.sort(arr.astype(np.int64), axis=1)  # the given order, which edge_weights follows
    if len(np.unique(pairs, axis=0)) != len(pairs):
        raise ValueError(
            "edges: with edge_weights given per edge, expected each unordered pair once (no (j, i) copies)"
        )
    return pairs


def isotropic_weights(edges: np.ndarray, n: int, dimension: int) -> np.ndarray:
    """``omega_e`` with ``1 / omega_e`` the mean of its nodes' ``2 dimension / deg_i`` (see :class:`Graph`)."""
    deg = np.bincount(edges.reshape(-1), minlength=n)
    c = 2.0 * dimension / np.maximum(deg, 1)  # an isolated node has no edge to weigh
    return 2.0 / (c[edges[:, 0]] + c[edges[:, 1]])


def intrinsic_dimension(points: np.ndarray, k: int = 10) -> int:
    """Dimension of the set the points sample: the Levina-Bickel maximum-likelihood estimate, rounded.

    ``1 / m_i = mean_{j<k} log(T_k / T_j)`` from the distances ``T_j`` to each point's ``k`` nearest neighbours,
    pooled as the mean of ``1 / m_i`` (MacKay and Ghahramani's correction). It sets the graph's isotropic edge
    weights (:class:`~sc_syncot.solvers.Graph`'s ``dimension``): cells in 30 PCs vary along far fewer directions,
    and the weights for 30 would price transport 30 / m times too high against growth.

    References
    ----------
    E. Levina, P. Bickel, "Maximum likelihood estimation of intrinsic dimension", NeurIPS 2004.
    """
    k = int(min(k, len(points) - 1))
    dist = cKDTree(points).query(points, k + 1)[0][:, 1:]
    dist = np.maximum(dist, 1e-12 * max(float(dist.max()), 1e-300))
    inverse = np.log(dist[:, -1:] / dist[:, :-1]).mean(axis=1)
    m = 1.0 / max(float(np.mean(inverse)), 1e-12)
    return int(np.clip(round(m), 1, points.shape[1]))
