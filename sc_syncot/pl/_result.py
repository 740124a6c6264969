"""Reading a stored result for plotting: the grid fields, the cells, and the fields at a chosen time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..pp.inputs import primary_table, read_cells
from ..tl.flow import Flow


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
    x: np.ndarray  # (n, d) primary coordinates on the grid's axes

    @property
    def ndim(self) -> int:
        return self.flow.grid.ndim

    def labels(self) -> list[str]:
        """Axis labels after the primary basis: ``"X_pca 1"``, ``"X_pca 2"``; time first for a 1-D grid."""
        name = self.params["primary"]
        if self.ndim == 1:
            return [self.params["time_key"], f"{name} 1"]
        return [f"{name} 1", f"{name} 2"]

    def cell_xy(self) -> np.ndarray:
        """Where cells are drawn: the first two primary axes, or (time, axis 1) for a 1-D grid."""
        return np.column_stack([self.time, self.x[:, 0]]) if self.ndim == 1 else self.x[:, :2]

    def nearest_time_point(self, t: float) -> float:
        tp = self.flow.time_points
        return float(tp[np.argmin(np.abs(tp - t))])


def stored(adata, key: str) -> Stored:
    """The result under ``key`` with its cells; ``ValueError`` naming ``key`` when there is none."""
    flow = Flow.from_uns(adata, key)
    uns = adata.uns[key]
    params = uns["params"]
    table = primary_table(adata, params["primary"])
    cells = read_cells(adata, params["time_key"], params["primary"], None, int(params["n_dims"]))
    return Stored(flow, uns, params, table.obs, table.obsm, table.uns, cells.time, cells.x)


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
    pos = s * flow.grid.n_time
    j = int(min(np.floor(pos), flow.grid.n_time - 1))
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
    nt = flow.grid.n_time
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
