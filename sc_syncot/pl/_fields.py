"""The velocity and growth fields: streamlines over the cells, growth as a map and per cell."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy import ndimage

from .._options import changed
from ._figure import (
    check_vmax,
    colorbar_ends,
    finish,
    label_axes,
    panels,
    point_size,
    scale_top,
    scatter_obs,
    scatter_values,
)
from ._graph import growth_at, velocity_field
from ._result import Stored, at_centres, extent, stored, weighted_projection


def _time(st: Stored, time: float | None) -> float:
    return float(st.flow.time_points[0] if time is None else time)


def _cells_field(st: Stored, key: str, min_density: float) -> tuple[np.ndarray, np.ndarray]:
    """The cells' own velocities (all time points) averaged on the grid's first two axes, smoothed over a cell.

    Shown where the smoothed cell count exceeds ``min_density`` of its maximum, as scvelo's stream plots do.
    """
    name = f"{key}_velocity"
    if name not in st.obsm:
        raise ValueError(f"key={key!r}: no .obsm[{name!r}] (run sc_syncot.tl.syncot)")
    grid = st.flow.grid
    lo = np.array([b[0] for b in grid.bounds[:2]])
    idx = np.floor((st.x[:, :2] - lo) / np.array(grid.spacing[:2])).astype(int)
    idx = np.clip(idx, 0, np.array(grid.shape[:2]) - 1)
    vel = np.asarray(st.obsm[name], float)[:, :2]
    count = np.zeros(grid.shape[:2])
    np.add.at(count, tuple(idx.T), 1.0)
    count = ndimage.gaussian_filter(count, 1.0)
    sums = []
    for i in range(2):
        s = np.zeros(grid.shape[:2])
        np.add.at(s, tuple(idx.T), vel[:, i])
        sums.append(ndimage.gaussian_filter(s, 1.0))
    field = np.stack(sums, axis=-1) / np.maximum(count, 1e-12)[..., None]
    return field, count > min_density * count.max()


def _plane(st: Stored, field: np.ndarray, t: float, min_density: float) -> tuple[np.ndarray, np.ndarray]:
    """A grid field at ``t`` on the first two axes (density-weighted along the third) and where it is shown.

    Only where the density at ``t`` exceeds ``min_density`` times its maximum: elsewhere there is no mass and the
    field is an artefact of the solver's regularization.
    """
    rho = st.flow.density_at(t)
    if st.ndim == 3:
        field, rho = weighted_projection(field, rho), rho.sum(axis=2)
    return field, rho > min_density * rho.max()


def velocity(
    adata,
    color: str | None = None,
    key: str = "syncot",
    time: float | None = None,
    density: float = 1.0,
    min_density: float = 0.01,
    size: float | None = None,
    cmap: str = "viridis",
    basis: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | None:
    """Streamlines of the velocity, over the cells.

    By default the cells' own velocities (``.obsm[f"{key}_velocity"]``, every time point) averaged on the grid, as
    in scvelo's stream plots. With ``time``, the solver's field at that time instead: the field at an observed
    time point is the mean of the two time steps next to it, as for
    ``.obsm[f"{key}_velocity"]``; between time points it is interpolated. Streamlines are drawn where the density
    at that time exceeds ``min_density`` of its maximum. A 3-D grid shows its first two velocity components,
    averaged along the third axis with the density as weight. Needs a grid of 2 or 3 dimensions. A graph's flow is
    drawn in ``basis``: each edge's mass flow along its nodes' displacement there, per node over its mass (as
    scVelo projects velocities onto an embedding), averaged on a grid over the cells (weighted by the node
    densities at ``time``).

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    color
        ``.obs`` column colouring the cells (categorical: legend; numeric: colorbar); default: the time key.
    key
        The result to plot.
    time
        Time of the field; default ``None``: the cells' velocities, all time points.
    density
        Streamline density, as in :meth:`matplotlib.axes.Axes.streamplot`.
    min_density
        Fraction of the maximum density below which no streamline is drawn.
    size
        Marker area of the cells (default: after their number).
    cmap
        Colormap of a numeric ``color``.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.
    ax, show, return_fig, save
        As in :func:`sc_syncot.pl.density_path` (one panel).

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    st = stored(adata, key, basis)
    if st.ndim == 1:
        raise ValueError(f"key={key!r}: streamlines need a grid of 2 or 3 dimensions, the result has n_dims=1")
    if color is not None and color not in st.obs:
        raise ValueError(f"color={color!r}: not in .obs (columns: {list(st.obs.columns)})")
    if st.graph:
        (gx, gy), v, weight = velocity_field(st, None if time is None else float(time))
        shown = weight > min_density * weight.max()
        title = "velocity of the cells" if time is None else f"velocity at t = {float(time):.3g}"
    elif time is None:
        v, shown = _cells_field(st, key, min_density)
        title = "velocity of the cells"
    else:
        t = float(time)
        v, shown = _plane(st, at_centres(st.flow, st.flow.velocity, t), t, min_density)
        title = f"velocity at t = {t:.3g}"
    fig, axes = panels(1, ax)
    a = axes[0]
    size = size or point_size(len(st.x))
    xy = st.cell_xy()
    if color is None:  # the times as read for the solve (the time key may live in a MuData's global .obs)
        scatter_values(a, xy, st.time, size, cmap=cmap, label=st.params["time_key"])
    else:
        scatter_obs(a, xy, st.obs, st.table_uns, color, size, cmap)
    if not st.graph:
        gx, gy = st.flow.grid.axes()[:2]
    u = np.ma.masked_where(~shown, v[..., 0]).T  # streamplot wants (y, x) arrays
    w = np.ma.masked_where(~shown, v[..., 1]).T
    a.streamplot(gx, gy, u, w, density=density, color="k", linewidth=0.8, arrowsize=0.9)
    label_axes(a, st.labels(), title)
    return finish(fig, axes, show, return_fig, save, "velocity")


def growth(
    adata,
    key: str = "syncot",
    time: float | None = None,
    per_cell: bool = False,
    min_density: float = 0.01,
    size: float | None = None,
    cmap: str = "RdBu_r",
    vmax: float | str = "p99",
    basis: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | None:
    """Growth rate (per unit time; positive: proliferation, negative: death), as a map or per cell.

    The map is the grid field at ``time`` (as for :func:`velocity`), blank where the density is below
    ``min_density`` of its maximum; a 3-D grid is averaged along its third axis with the density as weight, a
    1-D grid is a curve; a graph's nodes are drawn in ``basis``, coloured by their rate. Per cell, the cells are
    coloured by ``.obs[f"{key}_growth"]``. Colours are centred at 0 and run to ``vmax`` either way.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    key
        The result to plot.
    time
        Time of the map (default: the first time point); per cell: draw only the cells observed at this time
        point (default: all cells).
    per_cell
        Draw the cells, coloured by ``.obs[f"{key}_growth"]`` (levelled per time point to the population's rate,
        see :func:`sc_syncot.tl.syncot`), instead of the field of instantaneous rates.
    min_density
        Fraction of the maximum density below which the map is blank.
    size
        Marker area of the cells.
    cmap
        A diverging colormap.
    vmax
        The rate at the ends of the colour scale (``-vmax`` to ``vmax``): a number, or ``"pNN"``, the NN-th
        percentile of the absolute rates drawn (as scanpy's ``vmax="p99"``). The default keeps a few extreme
        cells or nodes from washing out the rest (on TIGON's EMT course, 3 cells set a full-range scale of +-1.26
        where 99% of a time point's rates lay within -0.27 to 0.46); the colorbar's ends are pointed when rates
        lie beyond them. ``"p100"``: the full range.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.
    ax, show, return_fig, save
        As in :func:`sc_syncot.pl.density_path` (one panel).

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    if per_cell and changed(growth, min_density=min_density):
        raise ValueError(f"min_density={min_density!r}: masks the growth map, and per_cell=True draws the cells")
    if not per_cell and size is not None:
        raise ValueError(f"size={size!r}: sizes the cells of per_cell=True, and per_cell=False draws the map")
    check_vmax(vmax)
    st = stored(adata, key, basis)
    fig, axes = panels(1, ax)
    if per_cell:
        _growth_cells(axes[0], st, key, time, size, cmap, vmax)
    else:
        _growth_map(axes[0], st, _time(st, time), min_density, cmap, vmax)
    return finish(fig, axes, show, return_fig, save, "growth")


def _rate_label(st: Stored) -> str:
    """The colorbar's label: net growth with its unit, the time key's (red: growing, blue: shrinking)."""
    return f"net growth rate, per unit of {st.params['time_key']}\n(> 0 proliferation, < 0 death)"


def _centred(values: np.ndarray, vmax: float | str = "p100") -> Normalize:
    """A scale from ``-top`` to ``top``, ``top`` = ``vmax`` or its percentile of ``|values|``."""
    top = scale_top(np.abs(values), vmax)
    return Normalize(-(top or 1.0), top or 1.0)


def _growth_map(ax: Axes, st: Stored, t: float, min_density: float, cmap, vmax) -> None:
    if st.graph:
        g, nodes = growth_at(st, t, min_density)
        ax.scatter(*st.xy.T, c="lightgrey", s=point_size(len(st.xy)) / 2, linewidths=0)
        norm = _centred(g[nodes], vmax)
        sc = ax.scatter(*st.node_xy[nodes].T, c=g[nodes], cmap=cmap, norm=norm, s=12, linewidths=0)
        ax.figure.colorbar(sc, ax=ax, label=_rate_label(st), shrink=0.8, extend=colorbar_ends(g[nodes], norm))
        label_axes(ax, st.labels(), f"growth at t = {t:.3g}")
        return
    g, shown = _plane(st, at_centres(st.flow, st.flow.growth, t), t, min_density)
    g = np.where(shown, g, np.nan)
    norm = _centred(g, vmax)
    if st.ndim == 1:
        ax.plot(st.flow.grid.axes()[0], g)
        ax.axhline(0, color="grey", lw=0.8)
        label_axes(ax, [f"{st.params['primary']} 1", _rate_label(st)], f"growth at t = {t:.3g}")
        return
    im = ax.imshow(np.ma.masked_invalid(g).T, origin="lower", extent=extent(st.flow), aspect="auto", cmap=cmap)
    im.set_norm(norm)
    ax.figure.colorbar(im, ax=ax, label=_rate_label(st), shrink=0.8, extend=colorbar_ends(g, norm))
    label_axes(ax, st.labels(), f"growth at t = {t:.3g}")


def _growth_cells(ax: Axes, st: Stored, key: str, time: float | None, size, cmap, vmax) -> None:
    col = f"{key}_growth"
    if col not in st.obs:
        raise ValueError(f"key={key!r}: .obs[{col!r}] is missing; run sc_syncot.tl.syncot first")
    sel = np.ones(len(st.time), bool) if time is None else st.time == time
    if not sel.any():
        raise ValueError(f"time: expected an observed time point {list(st.flow.time_points)}, got {time}")
    values = st.obs[col].to_numpy(dtype=float)[sel]
    xy = st.cell_xy()[sel]
    label = _rate_label(st)
    norm = _centred(values, vmax)
    ends = colorbar_ends(values, norm)
    scatter_values(ax, xy, values, size or point_size(len(xy)), cmap=cmap, label=label, norm=norm, extend=ends)
    title = "growth per cell" + ("" if time is None else f" at t = {float(time):.3g}")
    label_axes(ax, st.labels(), title)
