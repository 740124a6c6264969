"""The reconstructed path: densities over time, the induced path in the secondary space, particle trajectories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .._options import changed
from ..tl.flow import result_cells
from ._figure import check_vmax, colorbar_ends, finish, label_axes, panels, point_size, scale_top
from ._graph import draw_density as graph_density
from ._result import Stored, at_nodes, extent, panel_times, stored


def projected_density(st: Stored, t: float) -> np.ndarray:
    """Density at ``t`` as drawn: the grid itself in 1-D and 2-D, the maximum over the third axis in 3-D, the nodes."""
    rho = np.clip(st.flow.density_at(t), 0, None)  # the solver's rounding leaves values a little below 0
    return rho.max(axis=2) if not st.graph and st.ndim == 3 else rho


def draw_density(ax: Axes, st: Stored, t: float, vmax: float, cmap="viridis", cells: bool = True):
    """One panel of the density path; returns the image (or line, in 1-D) drawn."""
    rho = projected_density(st, t)
    mass = st.flow.mass(st.flow.density_at(t))
    near = st.time == st.nearest_time_point(t)
    name = st.params["primary"]
    if st.graph:
        artist = graph_density(ax, st, t, vmax, cmap, cells)
        labels = st.labels()
    elif st.ndim == 1:
        centres = st.flow.grid.axes()[0]
        ax.fill_between(centres, rho, alpha=0.3)
        (artist,) = ax.plot(centres, rho)
        if cells:
            ax.plot(st.x[near, 0], np.zeros(near.sum()), "|", color="k", alpha=0.4)
        ax.set_ylim(0, 1.05 * vmax)
        labels = [f"{name} 1", "density"]
    else:
        artist = ax.imshow(rho.T, origin="lower", extent=extent(st.flow), aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
        if cells:
            ax.scatter(*st.x[near, :2].T, s=point_size(near.sum()) / 3, c="white", alpha=0.5, linewidths=0)
        labels = st.labels()
    nearest = st.nearest_time_point(t)
    shown = "" if not cells or np.isclose(nearest, t) else f" (cells: t = {nearest:.3g})"
    label_axes(ax, labels, f"t = {t:.3g}, mass {mass:.2f}{shown}")
    return artist


def density_path(
    adata,
    key: str = "syncot",
    n_panels: int = 6,
    times: Sequence[float] | None = None,
    cells: bool = True,
    ncols: int = 3,
    cmap: str = "viridis",
    vmax: float | str = "p99",
    basis: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | list[Axes] | None:
    """The reconstructed density in the primary space as small multiples over time.

    A 2-D grid is drawn as an image over its bounds, a 1-D grid as a curve, a 3-D grid as its maximum over the
    third axis; a graph's nodes as points in ``basis``, sized and coloured by their mass. All panels share one
    colour (or y) scale, from 0 to ``vmax``, so growth shows as a change of intensity; titles give
    the time and the mass relative to the mean observed mass.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    key
        The result to plot.
    n_panels
        Number of panels: every observed time point, and the rest of the panels placed in the longest intervals
        (evenly spread observed time points when there are fewer panels than time points).
    times
        The times to draw instead (one panel each).
    cells
        Overlay the cells observed at the time point nearest to each panel's time (named in the title when it is
        not the panel's time).
    ncols
        Panels per row.
    cmap
        Colormap of the density.
    vmax
        The top of the shared scale: a number, or ``"pNN"``, the NN-th percentile of the densities of all panels
        above 1e-3 of the largest (where the population is; as scanpy's ``vmax="p99"``; a 1-D grid's curve takes
        its largest value instead). The default keeps one dense time point from darkening the others (on
        TIGON's EMT course the last one, 129 cells, set a scale under which the other panels looked empty); the
        colorbar's top is pointed when densities lie above it. ``"p100"``: the largest density drawn.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.
    ax
        Axes to draw into: one per panel.
    show
        Call ``plt.show()``; by default only with an interactive backend and when no figure is returned.
    return_fig
        Return the Figure.
    save
        Save the figure as scanpy does: ``True`` writes ``density_path.pdf`` (this function's name) in
        ``sc_syncot.settings.figdir`` (default ``./figures``, or scanpy's ``figdir``), a string is appended to the
        name and may end with the file type: ``save="_rna.png"`` writes ``density_path_rna.png``. Without a type,
        scanpy's ``file_format_figs`` (``pdf``). A saved figure is closed unless ``return_fig``.

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    check_vmax(vmax)
    st = stored(adata, key, basis)
    ts = panel_times(st.flow, n_panels, times)
    drawn = np.concatenate([projected_density(st, t).ravel() for t in ts])
    positive = drawn[drawn > 1e-3 * drawn.max()] if drawn.max() > 0 else drawn
    # a 1-D grid is a curve on a y scale: cut at a percentile it would leave the plot (a number is kept)
    curve = st.ndim == 1 and not st.graph and isinstance(vmax, str)
    top = (float(drawn.max()) if curve else scale_top(positive, vmax)) or 1.0
    fig, axes = panels(len(ts), ax, ncols)
    for a, t in zip(axes, ts, strict=True):
        artist = draw_density(a, st, t, top, cmap, cells)
    if st.ndim > 1:
        ends = colorbar_ends(drawn, Normalize(0.0, top))
        fig.colorbar(artist, ax=axes, label="density", shrink=0.8, extend=ends)
    return finish(fig, axes, show, return_fig, save, "density_path")


def secondary_path(
    adata,
    key: str = "syncot",
    n_panels: int = 6,
    times: Sequence[float] | None = None,
    components: tuple[int, int] = (0, 1),
    n_arrows: int = 150,
    cells: bool = True,
    ncols: int = 3,
    cmap: str = "viridis",
    robust: bool = True,
    secondary: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | list[Axes] | None:
    """The path induced in the secondary space.

    With a Monge coupling: one panel of the paired cells in the secondary basis coloured by time, with arrows of
    the induced secondary velocity ``.obsm[f"{key}_velocity_secondary"]`` (directions and relative speeds; the
    fastest arrow spans a tenth of the cloud). With a Kantorovich coupling: small multiples over time of the
    secondary support points, sized and coloured by the induced secondary mass
    (``.uns[key]["coupling"]["secondary_density"]``), over the paired cells in grey. (On the graph a Kantorovich
    fit also writes the velocity it induces at the cells in ``.obsm``; the panels show what the coupling fitted.)

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` that has a secondary.
    key
        The result to plot.
    n_panels, times
        Times of the Kantorovich panels, as in :func:`density_path` (not used for a Monge coupling).
    components
        The two secondary coordinates drawn (0-based).
    n_arrows
        Largest number of velocity arrows (a random subset of cells, fixed seed).
    cells
        Draw the paired cells behind the Kantorovich support points.
    ncols, cmap
        Panels per row; colormap of time (Monge) or mass (Kantorovich).
    robust
        Fit the axes (and the arrow lengths) to the bulk of the cells, their 1st to 99th percentiles widened by
        15% on each side, so that a few outlying cells (common in LSI components) do not squeeze the rest into a
        corner; ``False`` shows every point.
    secondary
        A result of several secondaries: the basis drawn (its ``.obsm[f"{key}_velocity_{secondary}"]`` or
        ``.uns[key]["couplings"][secondary]``); results of one secondary take ``None`` (or that basis' key).
    ax
        Axes to draw into: one for a Monge coupling, one per panel for a Kantorovich coupling.
    show, return_fig, save
        As in :func:`density_path`.

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    st = stored(adata, key)
    basis, name, info = _chosen_secondary(st, secondary)
    velocity = f"{key}_velocity_{name}"
    # a graph fit writes the induced velocity for both couplings; a Kantorovich path is still its support masses
    if "secondary_density" in info:
        _refuse_unused(changed(secondary_path, n_arrows=n_arrows))
        ts = panel_times(st.flow, n_panels, times)
        fig, axes = _kantorovich_path(adata, st, info, basis, ts, components, cells, ncols, cmap, robust, ax)
    elif velocity in st.obsm:
        _refuse_unused(changed(secondary_path, n_panels=n_panels, times=times, cells=cells, ncols=ncols))
        fig, axes = _monge_path(adata, st, velocity, basis, components, n_arrows, cmap, robust, ax)
    else:
        raise ValueError(
            f"key={key!r}: the result has no secondary path (neither .obsm[{velocity!r}] from a "
            f"Monge coupling nor .uns[{key!r}]['coupling']['secondary_density'] from a Kantorovich one); run "
            "sc_syncot.tl.syncot with a secondary"
        )
    return finish(fig, axes, show, return_fig, save, "secondary_path")


def _chosen_secondary(st: Stored, secondary: str | None) -> tuple[str, str, Mapping]:
    """The basis drawn, the name its outputs carry and its coupling's ``.uns`` entry.

    One secondary's outputs are named ``"secondary"``; several ones' by their basis keys, and ``secondary`` picks.
    """
    given = st.params.get("secondary", "none")
    if "couplings" not in st.uns:
        if secondary is not None and secondary != given:
            raise ValueError(f"secondary={secondary!r}: the result was fitted with secondary={given!r} only")
        return given, "secondary", st.uns.get("coupling", {})
    keys = [str(k) for k in np.atleast_1d(given)]
    if secondary not in keys:
        raise ValueError(f"secondary={secondary!r}: the result has several secondaries {keys}; pass one of them")
    return secondary, secondary, st.uns["couplings"][secondary]


def _refuse_unused(given: list[str]) -> None:
    """Options the drawn path does not use (``"name=value"``, set away from their defaults) are refused."""
    if given:
        raise ValueError(
            f"{', '.join(given)}: not used by this result's secondary path (a Monge path is one panel of velocities "
            "at the cells, a Kantorovich path panels of support masses)"
        )


def _secondary_cells(adata, st: Stored, sec: str, components) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Secondary coordinates of the paired cells in basis ``sec`` (its own units), their mask and axis labels."""
    cells = result_cells(adata, st.params, sec)
    comps = list(components)
    if len(comps) != 2 or max(comps) >= cells.y.shape[1]:
        raise ValueError(f"components: expected two indices below {cells.y.shape[1]} (secondary={sec!r}), got {comps}")
    return cells.y[:, comps], cells.paired, [f"{sec} {c + 1}" for c in comps]


LIMIT_PAD = 0.15  # share of the cells' range added on each side of the secondary axes


def _limits(y: np.ndarray, robust: bool) -> np.ndarray:
    """``(2, 2)`` axis limits (rows x and y): the 1st-99th percentiles widened by 15% each side, or the full range."""
    lo, hi = np.percentile(y, [1, 99], axis=0) if robust else (y.min(0), y.max(0))
    pad = LIMIT_PAD * np.where(hi > lo, hi - lo, 1.0)
    return np.column_stack([lo - pad, hi + pad])


def _set_limits(ax: Axes, limits: np.ndarray) -> None:
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])


def _monge_path(adata, st: Stored, velocity: str, sec: str, components, n_arrows: int, cmap, robust: bool, ax):
    y, paired, labels = _secondary_cells(adata, st, sec, components)
    limits = _limits(y[paired], robust)
    vel = np.asarray(st.obsm[velocity])[:, list(components)]
    fig, axes = panels(1, ax)
    a = axes[0]
    sc = a.scatter(*y[paired].T, c=st.time[paired], cmap=cmap, s=point_size(paired.sum()), linewidths=0)
    fig.colorbar(sc, ax=a, label=st.params["time_key"], shrink=0.8)
    idx = np.flatnonzero(paired)
    idx = np.sort(np.random.default_rng(0).choice(idx, min(n_arrows, len(idx)), replace=False))
    # the fastest arrow spans a tenth of the cloud: a readable length whatever the units of time
    top = float(np.linalg.norm(vel[idx], axis=1).max()) or 1.0
    scale = top / (0.1 * float(np.ptp(limits, axis=1).max() / (1 + 2 * LIMIT_PAD) or 1.0))  # the cells' range
    a.quiver(*y[idx].T, *vel[idx].T, angles="xy", scale_units="xy", scale=scale, width=0.003, color="k", alpha=0.7)
    _set_limits(a, limits)
    several = "couplings" in st.uns  # name the basis among several
    label_axes(a, labels, f"secondary path ({f'{sec}, ' if several else ''}{_coupling_of(st, sec)})")
    return fig, axes


def _coupling_of(st: Stored, sec: str) -> str:
    """The coupling of secondary basis ``sec`` as the fit recorded it (one for all, or one per basis)."""
    couplings = [str(c) for c in np.atleast_1d(st.params.get("coupling", "monge"))]
    keys = [str(k) for k in np.atleast_1d(st.params.get("secondary", sec))]
    return couplings[keys.index(sec)] if len(couplings) == len(keys) and sec in keys else couplings[0]


def _kantorovich_path(adata, st: Stored, cpl, sec: str, ts, components, cells: bool, ncols: int, cmap, robust, ax):
    y, paired, labels = _secondary_cells(adata, st, sec, components)
    limits = _limits(y[paired], robust)
    support = np.asarray(cpl["support"], float)[:, list(components)]
    masses = [at_nodes(st.flow, np.asarray(cpl["secondary_density"], float), t) for t in ts]
    norm = Normalize(0, max(float(m.max()) for m in masses) or 1.0)
    fig, axes = panels(len(ts), ax, ncols)
    for a, t, m in zip(axes, ts, masses, strict=True):
        if cells:
            a.scatter(*y[paired].T, c="lightgrey", s=point_size(paired.sum()) / 3, linewidths=0)
        sc = a.scatter(*support.T, s=5 + 120 * norm(m), c=m, cmap=cmap, norm=norm, edgecolors="k", linewidths=0.3)
        _set_limits(a, limits)
        label_axes(a, labels, f"t = {t:.3g}, mass {m.sum():.2f}")
    fig.colorbar(sc, ax=axes, label="induced secondary mass", shrink=0.8)
    return fig, axes


def trajectories(
    adata,
    key: str = "syncot",
    color_by_weight: bool = True,
    trajectories_key: str | None = None,
    cells: bool = True,
    cmap: str = "viridis",
    basis: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | None:
    """Particle paths computed by :func:`sc_syncot.tl.trajectories`, over the cells.

    Each path is drawn on the first two primary axes (against time for a 1-D grid; a graph's in ``basis``),
    starting at a dot. Its weight,
    ``exp(int g dt)`` (expected descendants of the particle), colours every step of it (``color_by_weight``) or
    sets the width of the whole path after its final weight.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` and its trajectories.
    key
        The result the trajectories follow.
    color_by_weight
        Colour by weight along the path; ``False``: one colour, width after the final weight.
    trajectories_key
        ``.uns`` key of the trajectories (default ``f"{key}_trajectories"``).
    cells
        Draw all cells in grey behind the paths.
    cmap
        Colormap of the weights.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.
    ax, show, return_fig, save
        As in :func:`density_path` (one panel).

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    st = stored(adata, key, basis)
    tkey = trajectories_key or f"{key}_trajectories"
    if tkey not in st.table_uns:
        raise ValueError(f"trajectories_key={tkey!r}: not in .uns; run sc_syncot.tl.trajectories first")
    traj = st.table_uns[tkey]
    paths, weights = np.asarray(traj["paths"], float), np.asarray(traj["weights"], float)
    if st.graph:  # the particles' nodes, where the nodes are drawn
        paths = st.node_xy[np.asarray(traj["nodes"], np.int64)]
    elif st.ndim == 1:  # time on the x axis
        times = np.broadcast_to(np.asarray(traj["times"], float), paths.shape[:2])
        paths = np.stack([times, paths[..., 0]], axis=-1)
    paths = paths[..., :2]
    fig, axes = panels(1, ax)
    a = axes[0]
    if cells:
        xy = st.cell_xy()
        a.scatter(*xy.T, c="lightgrey", s=point_size(len(xy)) / 2, linewidths=0)
    _draw_paths(a, paths, weights, color_by_weight, cmap)
    a.scatter(*paths[:, 0].T, c="k", s=8, linewidths=0, zorder=3)
    a.autoscale_view()
    label_axes(a, st.labels(), f"trajectories ({len(paths)} particles)")
    return finish(fig, axes, show, return_fig, save, "trajectories")


def _draw_paths(ax: Axes, paths: np.ndarray, weights: np.ndarray, color_by_weight: bool, cmap) -> None:
    if color_by_weight:
        segments = np.stack([paths[:, :-1], paths[:, 1:]], axis=2).reshape(-1, 2, 2)
        seg_weight = 0.5 * (weights[:, :-1] + weights[:, 1:]).ravel()
        lines = LineCollection(segments, array=seg_weight, cmap=cmap, linewidths=1.2)
        ax.add_collection(lines)
        ax.figure.colorbar(lines, ax=ax, label="weight (expected descendants)", shrink=0.8)
        return
    final = weights[:, -1]
    widths = 0.3 + 2.7 * final / (final.max() or 1.0)
    ax.add_collection(LineCollection(list(paths), linewidths=widths, color="tab:blue", alpha=0.7))
