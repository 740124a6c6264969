"""Fates: shares of descent per cell (``push`` / ``pull``) and between groups (``cell_transition``).

:func:`fates` draws the shares written by :func:`sc_syncot.tl.push` and :func:`sc_syncot.tl.pull`, one panel per
group; :func:`cell_transition` the group-to-group table of :func:`sc_syncot.tl.cell_transition`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figure import finish, label_axes, panels, point_size, scatter_values
from ._result import stored


def _title(column: str, key: str) -> str:
    """A readable title for a push / pull column, as the functions define the share.

    ``pull``: each earlier cell's share of descendants in the group; ``push``: each later cell's share of mass that
    descends from the group.
    """
    for kind, what in (("pull", "descendants in {}"), ("push", "descent from {}")):
        prefix = f"{key}_{kind}_"
        if column.startswith(prefix):
            return f"share of {what.format(column[len(prefix) :])} ({kind})"
    return column


def fates(
    adata,
    keys: str | Sequence[str],
    key: str = "syncot",
    times: float | Sequence[float] | None = None,
    size: float | None = None,
    ncols: int = 3,
    cmap: str = "viridis",
    basis: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | list[Axes] | None:
    """Cells coloured by the share of their mass that descends from (push) or leads to (pull) a group.

    One panel per ``.obs`` column, on the first two primary axes (against time for a 1-D grid), with a common
    ``[0, 1]`` colour scale; cells without a value (before a push, after a pull) are grey.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    keys
        ``.obs`` column(s) written by :func:`sc_syncot.tl.push` / :func:`sc_syncot.tl.pull`, e.g.
        ``"syncot_push_up"``.
    key
        The result whose primary basis places the cells.
    times
        Draw only the cells observed at these time points (all by default): where time points overlap in the
        primary basis, the later cells would otherwise hide the earlier ones.
    size
        Marker area of the cells.
    ncols, cmap
        Panels per row; colormap of the share.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.
    ax
        Axes to draw into: one per column in ``keys``.
    show, return_fig, save
        As in :func:`sc_syncot.pl.density_path`.

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    st = stored(adata, key, basis)
    for k in keys:
        if k not in st.obs:
            raise ValueError(f"keys: {k!r} is not in .obs; run sc_syncot.tl.push or sc_syncot.tl.pull first")
    shown = np.ones(len(st.time), bool)
    if times is not None:
        wanted = np.atleast_1d(np.asarray(times, float))
        observed = np.unique(st.time)
        missing = [float(t) for t in wanted if not np.isclose(observed, t).any()]
        if missing:
            raise ValueError(f"times: {missing} are not observed time points {observed.tolist()}")
        shown = np.isclose(st.time[:, None], wanted[None, :]).any(1)
    xy = st.cell_xy()[shown]
    fig, axes = panels(len(keys), ax, ncols)
    suffix = "" if times is None else f" (t = {', '.join(f'{t:g}' for t in np.atleast_1d(times))})"
    for a, k in zip(axes, keys, strict=True):
        values = st.obs[k].to_numpy(dtype=float)[shown]
        scatter_values(a, xy, values, size or point_size(len(xy)), cmap=cmap, label="share", vmin=0, vmax=1)
        label_axes(a, st.labels(), _title(k, key) + suffix)
    return finish(fig, axes, show, return_fig, save, "fates")


def cell_transition(
    data,
    key: str = "syncot_cell_transition",
    cmap: str = "viridis",
    annotate: bool = True,
    fmt: str = ".2f",
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | None:
    """Heatmap of a :func:`sc_syncot.tl.cell_transition` table: source groups as rows, target groups as columns.

    Parameters
    ----------
    data
        AnnData holding the table under ``.uns[key]`` (as :func:`sc_syncot.tl.cell_transition` stores it), or the
        returned DataFrame itself.
    key
        ``.uns`` key of the stored table (the ``key_added`` of :func:`sc_syncot.tl.cell_transition`, by default
        ``f"{fit key}_cell_transition"``), not of the fit.
    cmap
        Colormap; fractions are drawn on ``[0, 1]``, counts (``normalize=False``) from 0 to their largest.
    annotate, fmt
        Write each value in its cell, with this format.
    ax, show, return_fig, save
        As in :func:`sc_syncot.pl.density_path`.

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    table, params = _transition_table(data, key)
    values = table.to_numpy(float)
    normalized = params.get("normalize", True)
    fig, (a,) = panels(1, ax)
    vmax = 1.0 if normalized else max(float(np.nanmax(values, initial=0.0)), 1e-300)
    image = a.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    a.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    a.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            dark = np.isfinite(v) and v < 0.6 * vmax
            a.text(j, i, "" if np.isnan(v) else format(v, fmt), ha="center", va="center", color="w" if dark else "k")
    timed = "source" in params
    a.set_xlabel(f"{table.columns.name or 'target'} " + (f"at {params['target']:g}" if timed else "(target)"))
    a.set_ylabel(f"{table.index.name or 'source'} " + (f"at {params['source']:g}" if timed else "(source)"))
    titles = {True: "fraction of descendants (rows)", False: "fraction of ancestry (columns)", None: "fraction"}
    a.set_title(titles[params.get("forward")] if normalized else "cells descending (counts)")
    fig.colorbar(image, ax=a, shrink=0.8, label="fraction" if normalized else "target cells")
    return finish(fig, [a], show, return_fig, save, "cell_transition")


def _transition_table(data, key: str) -> tuple[pd.DataFrame, dict]:
    """The table and its parameters; for a bare DataFrame, read off which of its axes sums to 1."""
    if isinstance(data, pd.DataFrame):
        values = data.to_numpy(float)
        ones = [bool(np.allclose(np.nansum(values, axis), 1.0)) for axis in (1, 0)]  # rows, columns
        forward = {(True, False): True, (False, True): False}.get(tuple(ones))
        return data, {"forward": forward, "normalize": any(ones) or bool(np.nanmax(values, initial=0.0) <= 1.0)}
    stored_table = getattr(data, "uns", {}).get(key)
    if not isinstance(stored_table, dict) or "values" not in stored_table:
        raise ValueError(f"key={key!r}: no cell_transition table in .uns; run sc_syncot.tl.cell_transition first")
    params = dict(stored_table.get("params", {}))
    table = pd.DataFrame(
        np.asarray(stored_table["values"], float),
        index=pd.Index([str(g) for g in stored_table["source_labels"]], name=params.get("source_groups")),
        columns=pd.Index([str(g) for g in stored_table["target_labels"]], name=params.get("target_groups")),
    )
    return table, params
