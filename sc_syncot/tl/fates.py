"""Where a group of cells goes (``push``) and where it comes from (``pull``), along the computed flow."""

from __future__ import annotations

import numpy as np

from .. import pp
from ..pp.inputs import check_key_added, check_writes, obs_column, observed_time, primary_table
from .flow import Flow, read_flow, result_cells
from .graph_flow import GraphFlow, cell_nodes


def _wanted(groups) -> list:
    """``groups`` as a list: one label (a string, a number, a numpy scalar as ``.unique()`` gives) or several."""
    if groups is None:
        raise ValueError("groups: expected a label of .obs[groupby] or a list of them, got None")
    if np.ndim(groups) == 0:
        return [groups.item() if isinstance(groups, np.generic) else groups]
    wanted = [g.item() if isinstance(g, np.generic) else g for g in np.asarray(groups, dtype=object).ravel()]
    if not wanted:
        raise ValueError("groups: expected at least one label, got an empty list")
    return wanted


def _group_mask(data, primary: str, groupby: str, groups) -> np.ndarray:
    wanted = _wanted(groups)
    col = obs_column(data, primary, groupby, "groupby")
    missing = [g for g in wanted if g not in set(col.unique())]
    if missing:
        raise ValueError(f"groups: {missing} not found in .obs[{groupby!r}]")
    return col.isin(wanted).to_numpy()


def _share(flow: Flow, x: np.ndarray, in_group: np.ndarray, bandwidth) -> np.ndarray:
    """Fraction of the local density that belongs to the group, in ``[0, 1]``.

    The ratio of two kernel estimates with one bandwidth (masses proportional to the cell counts), zero where
    there are no cells.
    """
    h = pp.scott_bandwidth(x) if bandwidth is None else bandwidth
    everyone = pp.kde_density(x, flow.grid, mass=len(x), bandwidth=h)
    group = pp.kde_density(x[in_group], flow.grid, mass=int(in_group.sum()), bandwidth=h)
    floor = 1e-6 * everyone.max()
    return np.where(everyone > floor, group / np.maximum(everyone, floor), 0.0).clip(0, 1)


def _carry(data, groupby, groups, time, key, key_added, direction, copy):
    flow = read_flow(data, key)
    params = data.uns[key]["params"]
    cells = result_cells(data, params)
    tp = flow.time_points
    k0 = (0 if direction > 0 else len(tp) - 1) if time is None else observed_time(time, tp)
    time = tp[k0]
    mask = _group_mask(data, params["primary"], groupby, groups)
    _check_column(data, params, key, key_added, groupby)
    at = cells.time == time
    if not mask[at].any():
        seen = [f"{t:g}" for t in tp if mask[cells.time == t].any()]
        raise ValueError(
            f"groups: no cell of the group is observed at time {time:g}, where the group is taken "
            f"({'the first' if direction > 0 else 'the last'} time point unless time= is given); it has cells at "
            f"{', '.join(seen) or 'no time point of the fit'}: pass one of them as time="
        )
    if isinstance(flow, GraphFlow):
        nodes = cell_nodes(data, key, params["primary"], flow.n_nodes)
        share = _node_share(flow, nodes[at], mask[at])
        read = lambda share, sel: share[nodes[sel]]  # noqa: E731
    else:
        bw = params.get("bandwidth", "none")
        share = _share(flow, cells.x[at], mask[at], None if isinstance(bw, str) else bw)
        read = lambda share, sel: flow.sample(share, cells.x[sel])  # noqa: E731
    result = np.full(len(cells.x), np.nan)
    result[at] = mask[at].astype(float)
    intervals = range(k0, len(tp) - 1) if direction > 0 else range(k0 - 1, -1, -1)
    for k in intervals:
        share = flow.advect_share(share, k, direction)
        nxt = k + 1 if direction > 0 else k
        sel = cells.time == tp[nxt]
        result[sel] = read(share, sel).clip(0, 1)
    out = data.copy() if copy else data
    primary_table(out, params["primary"]).obs[key_added] = result
    return out if copy else None


def _check_column(data, params: dict, key: str, key_added, groupby: str) -> None:
    """``key_added`` must be a valid name that replaces neither the groups, the times nor the fit's columns."""
    check_key_added(key_added)
    reads = {
        ("obs", groupby): f"the groups groupby={groupby!r}",
        ("obs", params["time_key"]): f"the fit's time_key={params['time_key']!r}",
        ("obs", f"{key}_growth"): f"the growth rates of the fit {key!r}",
        ("obs", f"{key}_node"): f"the graph nodes of the fit {key!r}",
    }
    check_writes(primary_table(data, params["primary"]), [("obs", key_added)], reads, key_added)


def _node_share(flow: GraphFlow, nodes: np.ndarray, in_group: np.ndarray) -> np.ndarray:
    """Fraction of each node's cells (at one time point) that belong to the group; 0 at nodes without cells."""
    everyone = np.bincount(nodes, minlength=flow.n_nodes).astype(float)
    group = np.bincount(nodes, weights=in_group.astype(float), minlength=flow.n_nodes)
    return np.where(everyone > 0, group / np.maximum(everyone, 1.0), 0.0)


def push(
    adata,
    groupby: str,
    groups,
    time: float | None = None,
    key: str = "syncot",
    key_added: str | None = None,
    copy: bool = False,
):
    """Where a group of cells goes: for every later cell, the share of its mass that descends from the group.

    The group's share of the density at ``time`` is carried forward along the computed velocity (a share is
    transported without source: growth scales the group and the whole population alike). Writes
    ``adata.obs[key_added]`` (default ``f"{key}_push_{groups}"``): 1/0 membership at ``time``, the descending
    share in ``[0, 1]`` at later time points, NaN before.

    Parameters
    ----------
    adata
        AnnData with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    groupby, groups
        ``.obs`` column and the group(s) of it to follow.
    time
        Observed time point the group is taken at (default: the first).
    key
        The result to use.
    key_added
        ``.obs`` column written.
    copy
        Return a modified copy instead of writing in place.
    """
    key_added = f"{key}_push_{_label(groups)}" if key_added is None else key_added
    return _carry(adata, groupby, groups, time, key, key_added, +1, copy)


def pull(
    adata,
    groupby: str,
    groups,
    time: float | None = None,
    key: str = "syncot",
    key_added: str | None = None,
    copy: bool = False,
):
    """Where a group of cells comes from: for every earlier cell, the share of its descendants in the group.

    The group's share of the density at ``time`` (default: the last time point) is carried backward along the
    flow. Writes ``adata.obs[key_added]`` (default ``f"{key}_pull_{groups}"``); NaN after ``time``. Parameters as
    in :func:`push`.
    """
    key_added = f"{key}_pull_{_label(groups)}" if key_added is None else key_added
    return _carry(adata, groupby, groups, time, key, key_added, -1, copy)


def _label(groups) -> str:
    """The groups in a default column name (``"/"``, which .h5ad keys cannot hold, becomes ``"_"``)."""
    return "_".join(map(str, _wanted(groups))).replace("/", "_")
