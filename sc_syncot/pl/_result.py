"""Reading a stored result for plotting: the grid fields, the cells, and the fields at a chosen time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..pp.inputs import basis as read_basis
from ..pp.inputs import primary_table
from ..tl.flow import Flow, read_flow, result_cells
from ..tl.graph_flow import GraphFlow, cell_nodes


@dataclass
class Stored:
    """A result of :func:`sc_syncot.tl.syncot` and the cells it was computed on (nothing is copied back)."""

    flow: Flow
    uns: dict
    params: dict
    obs: pd.DataFrame
    obsm: dict
    table_uns: dict
    time: np.ndarray  # (n,) time of each cell
    x: np.ndarray  # (n, d) primary coordinates on the grid's axes (all columns on a graph)
    basis: str | None = None  # the 2-D .obsm key drawn in (None: the primary basis' first two columns)
    xy: np.ndarray | None = None  # (n, 2) where cells are drawn, from ``basis``
    node_xy: np.ndarray | None = None  # (n_nodes, 2) where a graph's nodes are drawn
    nodes: np.ndarray | None = None  # (n,) each cell's node (graph results)

    @property
    def graph(self) -> bool:
        """Whether the result lives on a graph of cell states."""
        return isinstance(self.flow, GraphFlow)

    @property
    def ndim(self) -> int:
        return 2 if self.graph else self.flow.grid.ndim

    def labels(self) -> list[str]:
        """Axis labels after the basis drawn: ``"X_pca 1"``, ``"X_pca 2"``; time first for a 1-D grid."""
        name = self.basis or self.params["primary"]
        if self.ndim == 1:
            return [self.params["time_key"], f"{name} 1"]
        return [f"{name} 1", f"{name} 2"]

    def cell_xy(self) -> np.ndarray:
        """Where cells are drawn: the basis (first two primary axes by default), or (time, axis 1) on a 1-D grid."""
        if self.xy is not None:
            return self.xy
        return np.column_stack([self.time, self.x[:, 0]]) if self.ndim == 1 else self.x[:, :2]

    def nearest_time_point(self, t: float) -> float:
        tp = self.flow.time_points
        return float(tp[np.argmin(np.abs(tp - t))])


def stored(adata, key: str, basis: str | None = None) -> Stored:
    """The result under ``key`` with its cells; ``ValueError`` naming ``key`` when there is none.

    ``basis``: a 2-D (or wider: first two columns) ``.obsm`` key to draw a graph result in, such as ``"X_umap"``.
    A grid result lives on the primary basis' first axes and is drawn there only.
    """
    flow = read_flow(adata, key)
    uns = adata.uns[key]
    params = uns["params"]
    table = primary_table(adata, params["primary"])
    cells = result_cells(adata, params)
    st = Stored(flow, uns, params, table.obs, table.obsm, table.uns, cells.time, cells.x)
    if not st.graph:
        if basis is not None and basis != params["primary"]:
            raise ValueError(
                f"basis={basis!r}: a grid result is drawn on its own axes (the first columns of "
                f"{params['primary']!r}); fit with geometry='graph' to draw in any embedding"
            )
        return st
    name = basis or params["primary"]
    xy = embedding(adata, name, params["primary"], cells.names)
    st.basis, st.xy = (basis, xy)
    st.nodes = cell_nodes(adata, key, params["primary"], flow.n_nodes)
    st.node_xy = node_positions(flow, cells.x, st.nodes, xy)
    return st


def embedding(adata, name: str, primary: str, names) -> np.ndarray:
    """The first two columns of ``.obsm[name]`` of the primary table's cells."""
    if ":" in primary and ":" not in name:  # a MuData basis without modality: the primary's modality
        name = f"{primary.split(':', 1)[0]}:{name}"
    frame = read_basis(adata, name, "basis", 2)
    if frame.shape[1] < 2:
        raise ValueError(f"basis={name!r}: expected at least two columns to draw in, got {frame.shape[1]}")
    return frame.loc[names].to_numpy(dtype=float)


def node_positions(flow: GraphFlow, x: np.ndarray, nodes: np.ndarray, xy: np.ndarray, k: int = 10) -> np.ndarray:
    """Where a graph's nodes are drawn in a 2-D basis of the cells, as scVelo places velocities on an embedding.

    A node with cells sits at their mean; a node without (a path node) at the mean of the ``k`` cells nearest
    to it in the primary basis (all columns), where the embedding has no coordinates of its own.
    """
    counts = np.bincount(nodes, minlength=flow.n_nodes).astype(float)
    pos = np.stack([np.bincount(nodes, weights=xy[:, i], minlength=flow.n_nodes) for i in range(2)], 1)
    pos = pos / np.maximum(counts, 1.0)[:, None]
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        near = cKDTree(x).query(flow.points[empty], min(k, len(x)))[1].reshape(len(empty), -1)
        pos[empty] = xy[near].mean(axis=1)
    return pos


def panel_times(flow: Flow, n_panels: int, times=None) -> np.ndarray:
    """``times`` as given, or ``n_panels`` times that include the observed time points.

    With fewer panels than time points, time points evenly spread among them (ends included); with more, each
    further panel halves the longest gap between the times chosen so far, so the panels show every observation
    and the path between them.
    """
    if times is not None:
        times = np.atleast_1d(np.asarray(times, float))
        if times.size == 0:
            raise ValueError("times: expected at least one time")
        return times
    if n_panels < 1:
        raise ValueError(f"n_panels: expected a positive integer, got {n_panels}")
    tp = np.asarray(flow.time_points, float)
    if n_panels <= len(tp):
        return tp[np.unique(np.round(np.linspace(0, len(tp) - 1, n_panels)).astype(int))]
    chosen = list(tp)
    while len(chosen) < n_panels:
        gaps = np.diff(chosen)
        k = int(np.argmax(gaps))
        chosen.insert(k + 1, chosen[k] + gaps[k] / 2)
    return np.array(chosen)


def at_nodes(flow: Flow, nodes: np.ndarray, t: float) -> np.ndarray:
    """An array given on the time nodes ``(K-1, n_time + 1, ...)`` at time ``t``, linear between nodes."""
    k, s = flow.locate(float(t))
    pos = s * flow.n_time
    j = int(min(np.floor(pos), flow.n_time - 1))
    w = pos - j
    return (1 - w) * nodes[k, j] + w * nodes[k, j + 1]


def at_centres(flow: Flow, field: np.ndarray, t: float) -> np.ndarray:
    """A field given on the time-step centres ``(K-1, n_time, ...)`` at time ``t``.

    At an observed time point: the mean of the adjacent centres, as for the per-cell values written by
    :func:`sc_syncot.tl.syncot`; elsewhere linear between centres (held constant before the first and after the
    last centre of an interval).
    """
    hit = np.flatnonzero(np.isclose(flow.time_points, t))
    if hit.size:
        return np.mean([field[i, j] for i, j in flow.at_time_point(int(hit[0]))], axis=0)
    k, s = flow.locate(float(t))
    nt = flow.n_time
    pos = float(np.clip(s * nt - 0.5, 0, nt - 1))
    j = int(min(np.floor(pos), max(nt - 2, 0)))
    w = pos - j
    return field[k, j] if nt == 1 else (1 - w) * field[k, j] + w * field[k, j + 1]


def weighted_projection(field: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Density-weighted mean of a 3-D grid field along its third axis (a signed field has no useful maximum)."""
    w = density if field.ndim == density.ndim else density[..., None]
    total = density.sum(axis=2)
    total = total if field.ndim == density.ndim else total[..., None]
    return (field * w).sum(axis=2) / np.where(total > 0, total, 1.0)


def extent(flow: Flow) -> tuple[float, float, float, float]:
    """``imshow`` extent of the first two grid axes."""
    (x0, x1), (y0, y1) = flow.grid.bounds[:2]
    return (x0, x1, y0, y1)
