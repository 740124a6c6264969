"""Drawing a graph result in a 2-D basis: node densities, the flow projected onto the basis, growth per node.

A graph result lives in every column of the primary basis; it is drawn where the cells are, in any 2-D ``.obsm``
(``basis=``), with each node at its cells' mean (see :func:`~sc_syncot.pl._result.node_positions`). The flow is
carried to the basis as scVelo carries velocities to an embedding: each edge's mass flow along the displacement
of its two nodes there (:meth:`~sc_syncot.tl.graph_flow.GraphFlow.induced_velocity`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from scipy import ndimage

from ._figure import point_size
from ._result import Stored, at_centres

STREAM_BINS = 40  # bins per axis of the 2-D grid the projected flow is averaged on for streamlines


def draw_density(ax: Axes, st: Stored, t: float, vmax: float, cmap, cells: bool):
    """Nodes at ``t`` sized and coloured by their mass (heaviest on top), over the cells of the nearest time point."""
    rho = np.clip(st.flow.density_at(t), 0, None)
    if cells:
        near = st.time == st.nearest_time_point(t)
        ax.scatter(*st.xy[near].T, s=point_size(near.sum()) / 2, c="lightgrey", linewidths=0)
    shown = np.flatnonzero(rho > 1e-3 * vmax)
    shown = shown[np.argsort(rho[shown])]
    artist = ax.scatter(
        *st.node_xy[shown].T,
        s=4 + 60 * np.minimum(rho[shown] / vmax, 1.0),
        c=rho[shown],
        cmap=cmap,
        vmin=0,
        vmax=vmax,
        linewidths=0,
    )
    lo, hi = st.xy.min(0), st.xy.max(0)  # every panel on the range of all cells, so panels compare
    pad = 0.05 * (hi - lo)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    return artist


def binned_field(xy: np.ndarray, vectors: np.ndarray, weights: np.ndarray, n_bins: int = STREAM_BINS):
    """Weighted mean of 2-D vectors on a grid over the points, smoothed over a bin, and the smoothed weight.

    Returns the axes' bin centres, the field ``(n_bins, n_bins, 2)`` and the weight ``(n_bins, n_bins)``.
    """
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.02 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    width = (hi - lo) / n_bins
    idx = np.clip(np.floor((xy - lo) / width).astype(int), 0, n_bins - 1)
    count = np.zeros((n_bins, n_bins))
    np.add.at(count, tuple(idx.T), weights)
    count = ndimage.gaussian_filter(count, 1.0)
    sums = []
    for i in range(2):
        s = np.zeros((n_bins, n_bins))
        np.add.at(s, tuple(idx.T), weights * vectors[:, i])
        sums.append(ndimage.gaussian_filter(s, 1.0))
    field = np.stack(sums, axis=-1) / np.maximum(count, 1e-12)[..., None]
    axes = [lo[i] + width[i] * (np.arange(n_bins) + 0.5) for i in range(2)]
    return axes, field, count


def velocity_field(st: Stored, time: float | None):
    """The flow in the basis on a 2-D grid: from the cells' own values (``time=None``) or the nodes' at ``time``."""
    projected = st.flow.induced_velocity(st.node_xy)  # (K-1, n_time, n, 2)
    if time is None:
        vel = np.zeros((len(st.time), 2))
        for k, tk in enumerate(st.flow.time_points):
            sel = st.time == tk
            vel[sel] = st.flow.cell_values(projected, st.nodes[sel], k)
        return binned_field(st.xy, vel, np.ones(len(vel)))
    rho = np.clip(st.flow.density_at(time), 0, None)
    return binned_field(st.node_xy, at_centres(st.flow, projected, time), rho)


def growth_at(st: Stored, t: float, min_density: float) -> tuple[np.ndarray, np.ndarray]:
    """Node growth rates at ``t`` and the nodes shown (density above ``min_density`` of its maximum)."""
    rho = st.flow.density_at(t)
    return at_centres(st.flow, st.flow.growth, t), np.flatnonzero(rho > min_density * rho.max())
