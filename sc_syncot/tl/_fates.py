"""Where a group of cells goes (``push``) and where it comes from (``pull``), along the computed flow."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import pp
from .._settings import warn
from ..pp.inputs import check_key_added, check_writes, obs_column, observed_time, primary_table
from .flow import Flow, read_flow, result_cells
from .graph_flow import GraphFlow, cell_nodes

MAX_TRANSPORT_ENTRIES = 50_000_000  # a dense float64 matrix of 400 MB
ROUNDING = 1e-9  # cell_transition: counts below this fraction of the target cells are rounding, set to 0


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
    present = set(col.dropna().unique())
    missing = [g for g in wanted if g not in present]
    if missing:
        shown = sorted(map(str, present))
        listed = shown if len(shown) <= 20 else [*shown[:20], f"... ({len(shown)} in all)"]
        raise ValueError(f"groups: {missing} not found in .obs[{groupby!r}] (its labels: {listed})")
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
    flow = read_flow(data, key)  # a missing or foreign result is named before anything else is checked
    params = data.uns[key]["params"]
    _check_column(data, params, key, key_added, groupby)
    cells = result_cells(data, params)
    result = _carried_shares(data, key, flow, cells, groupby, [groups], time, direction)[:, 0]
    out = data.copy() if copy else data
    primary_table(out, params["primary"]).obs[key_added] = result
    return out if copy else None


def _carried_shares(data, key, flow, cells, groupby, groups: list, time, direction, until=None) -> np.ndarray:
    """``(n_cells, len(groups))``: per cell of the fit, each group's share carried from ``time`` along the flow.

    ``flow`` and ``cells``: the result under ``key`` and its cells, as :func:`read_flow` and :func:`result_cells`
    read them (once, by the caller).

    Each entry of ``groups`` is a label or a list of labels of ``groupby``; NaN on the far side of ``time``.
    ``until``: the index of the last time point to carry to (default: the end of the course in ``direction``). On
    the graph every group travels in one pass (a matrix of shares); on the grid one field each.
    """
    params = data.uns[key]["params"]
    tp = flow.time_points
    k0 = (0 if direction > 0 else len(tp) - 1) if time is None else observed_time(
        _as_time(data, params, cells.time, time, "time"), tp
    )  # fmt: skip
    time = tp[k0]
    masks = np.stack([_group_mask(data, params["primary"], groupby, g) for g in groups], axis=1)
    at = cells.time == time
    for mask in masks.T:
        if not mask[at].any():
            seen = [f"{t:g}" for t in tp if mask[cells.time == t].any()]
            raise ValueError(
                f"groups: no cell of the group is observed at time {time:g}, where the group is taken "
                f"({'the first' if direction > 0 else 'the last'} time point unless time= is given); it has cells "
                f"at {', '.join(seen) or 'no time point of the fit'}: pass one of them as time="
            )
    if isinstance(flow, GraphFlow):
        nodes = cell_nodes(data, key, params["primary"], flow.n_nodes)
        share = np.stack([_node_share(flow, nodes[at], mask[at]) for mask in masks.T], axis=1)
        advect = lambda share, k: flow.advect_share(share, k, direction)  # noqa: E731
        read = lambda share, sel: share[nodes[sel]]  # noqa: E731
    else:
        bw = params.get("bandwidth", "none")
        h = None if isinstance(bw, str) else bw
        share = [_share(flow, cells.x[at], mask[at], h) for mask in masks.T]
        advect = lambda share, k: [flow.advect_share(f, k, direction) for f in share]  # noqa: E731
        read = lambda share, sel: np.stack([flow.sample(f, cells.x[sel]) for f in share], axis=1)  # noqa: E731
    result = np.full(masks.shape, np.nan)
    result[at] = masks[at].astype(float)
    if until is None:
        until = len(tp) - 1 if direction > 0 else 0
    intervals = range(k0, until) if direction > 0 else range(k0 - 1, until - 1, -1)
    for k in intervals:
        share = advect(share, k)
        nxt = k + 1 if direction > 0 else k
        sel = cells.time == tp[nxt]
        result[sel] = read(share, sel).clip(0, 1)
    return result


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
    time: float | str | None = None,
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
        Observed time point the group is taken at (default: the first): a number, or a label of the fit's time
        column where it holds text.
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
    time: float | str | None = None,
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


def cell_transition(
    adata,
    source: float | str,
    target: float | str,
    source_groups: str | Mapping,
    target_groups: str | Mapping | None = None,
    *,
    forward: bool = False,
    normalize: bool = True,
    key: str = "syncot",
    key_added: str | None = None,
) -> pd.DataFrame:
    """How the groups of cells at ``source`` and at ``target`` are linked by the computed flow (moscot's table).

    Each source group's share of the density is carried forward along the flow to ``target``, as :func:`push`
    carries it. Entry ``(a, b)`` first counts the cells of target group ``b`` that descend from source group
    ``a``: ``n_ab = sum_{c in b} s_a(c)``, with ``s_a(c)`` the share of cell ``c``'s mass that descends from ``a``.
    The fit's growth is in it: a group that the fit lets grow has more descendants. That is the fitted growth, not
    a measured one: with ``masses="equal"`` (the default) it only redistributes mass, and where the cells' own
    proliferation and death are known, give them as ``growth_prior`` (see the README's limitations). Then, as
    moscot's ``TemporalProblem.cell_transition``:

    - ``forward=True``: each row is divided by its sum, the fraction of ``a``'s descendants at ``target`` that
      are in ``b``;
    - ``forward=False`` (the default, as moscot's): each column is divided by its sum, the fraction of ``b``'s
      cells that descend from ``a``.

    Sums run over the groups shown (all the groups with cells at that time, unless a dict restricts them).

    A balanced fit (``delta=None``) on the graph reproduces the table of the exact static plan (POT's ``emd``
    between the two time points' cells) to 6e-5 on well separated clusters; on Schiebinger's reprogramming subset
    (30 PCs, the default fit with growth) it is within 0.01 of it on average (0.04 at most), the flow following
    the graph of cell states instead of straight lines. On a grid the shares are kernel estimates, blurred by the
    density bandwidth.

    Unlike moscot's: ``normalize=False`` gives counts of target cells (columns sum to the groups' sizes), not plan
    mass; ``target_groups`` defaults to the source's column; the table goes to ``.uns[key_added]``, which
    :func:`sc_syncot.pl.cell_transition` draws (moscot's plotting does not read it); entries below 1e-9 of the
    total are rounding and set to 0.

    Parameters
    ----------
    adata
        AnnData with a result of :func:`sc_syncot.tl.syncot` under ``key`` (either geometry).
    source, target
        Observed time points of the fit, ``source`` before ``target`` (any later one, not only the next): numbers,
        or labels of the fit's time column where it holds text (``"day2"``).
    source_groups
        An ``.obs`` column (its groups with cells at ``source``, in the column's category order), or a dict
        ``{column: [labels]}`` for some of its groups, in that order.
    target_groups
        The same at ``target``; default: ``source_groups``' column with all its groups at ``target``.
    forward
        Normalize rows (where the source groups go) instead of columns (where the target groups come from).
    normalize
        ``False``: return the counts ``n_ab`` themselves (cells of ``target``, fractional).
    key
        The result to use.
    key_added
        ``.uns`` key the table is stored under, with its parameters (default ``f"{key}_cell_transition"``), for
        :func:`sc_syncot.pl.cell_transition`.

    Returns
    -------
    pandas.DataFrame
        Source groups as the index, target groups as the columns. A row (``forward=True``) or column without any
        descent among the groups shown is NaN, with a warning.
    """
    flow = read_flow(adata, key)
    params = adata.uns[key]["params"]
    tp = flow.time_points
    cells = result_cells(adata, params)
    time = cells.time
    k_source, k_target = _interval_ends(adata, params, time, tp, source, target)
    key_added = check_key_added(f"{key}_cell_transition" if key_added is None else key_added)
    _check_table_key(adata, key_added)
    at_source, at_target = time == tp[k_source], time == tp[k_target]
    target_groups = _column_of(source_groups) if target_groups is None else target_groups
    s_col, s_labels = _groups_at(adata, params["primary"], source_groups, at_source, tp[k_source], "source_groups")
    t_col, t_labels = _groups_at(adata, params["primary"], target_groups, at_target, tp[k_target], "target_groups")
    t_values = obs_column(adata, params["primary"], t_col, "target_groups").to_numpy()[at_target]
    groups = [[g] for g in s_labels]
    shares = _carried_shares(adata, key, flow, cells, s_col, groups, tp[k_source], +1, until=k_target)
    in_target = np.stack([t_values == b for b in t_labels], axis=1).astype(float)  # (target cells, groups)
    counts = shares[at_target].T @ in_target
    counts[counts < ROUNDING * at_target.sum()] = 0.0  # left by the mixing's floor (1e-12 of a node's mass)
    table = pd.DataFrame(counts, index=pd.Index(s_labels, name=s_col), columns=pd.Index(t_labels, name=t_col))
    if normalize:
        table = _normalized(table, forward)
    adata.uns[key_added] = {  # plain arrays and text labels: any labels survive an .h5ad file
        "values": table.to_numpy(float),
        "source_labels": np.array([str(g) for g in s_labels]),
        "target_labels": np.array([str(g) for g in t_labels]),
        "params": {
            "key": key, "source": float(tp[k_source]), "target": float(tp[k_target]), "source_groups": s_col,
            "target_groups": t_col, "forward": bool(forward), "normalize": bool(normalize),
        },
    }  # fmt: skip
    return table


def transport_matrix(adata, source: float | str, target: float | str, key: str = "syncot") -> pd.DataFrame:
    """Cell-to-cell descent between two time points of a graph fit: moscot's transport matrix, growth included.

    Entry ``(c, c')`` is the share of target cell ``c'``'s mass that descends from source cell ``c``: every
    source node's share of the density is carried forward along the flow, as :func:`push` carries a group's, and
    split evenly among the node's cells at ``source``. So each column sums to 1 (a little less where mass was born
    at a node the flow had left nearly empty, whose share is taken as 0), and row ``c`` sums to the number of
    target cells that ``c`` becomes: more for cells that grow. Normalize its rows for forward transition
    probabilities; :func:`~sc_syncot.tl.transition_matrix` does, for the whole course in one matrix for CellRank.
    Summed over groups, it is :func:`cell_transition` with ``normalize=False``.

    Parameters
    ----------
    adata
        AnnData with a result of :func:`sc_syncot.tl.syncot` under ``key``, fitted on the graph.
    source, target
        Observed time points of the fit, ``source`` before ``target``.
    key
        The result to use.

    Returns
    -------
    pandas.DataFrame
        Cells observed at ``source`` as the index, at ``target`` as the columns (their ``obs_names``, in
        ``.obs`` order). Dense: at most 5e7 entries (400 MB).
    """
    flow = graph_flow(adata, key, "a cell-to-cell matrix")
    params = adata.uns[key]["params"]
    table = primary_table(adata, params["primary"])
    time = result_cells(adata, params).time
    k_source, k_target = _interval_ends(adata, params, time, flow.time_points, source, target)
    at_source, at_target = time == flow.time_points[k_source], time == flow.time_points[k_target]
    size = int(at_source.sum()) * int(at_target.sum())
    if size > MAX_TRANSPORT_ENTRIES:
        raise ValueError(
            f"source={source!r}, target={target!r}: a dense {at_source.sum()} x {at_target.sum()} matrix has more "
            f"than {MAX_TRANSPORT_ENTRIES:,} entries; use tl.cell_transition, or subset the cells before fitting"
        )
    nodes = cell_nodes(adata, key, params["primary"], flow.n_nodes)
    which, share = node_descent(flow, nodes[at_source], k_source, k_target)
    per_cell = share[nodes[at_target]][:, which] / np.bincount(which)[which]  # (target cells, source cells)
    return pd.DataFrame(per_cell.T, index=table.obs_names[at_source], columns=table.obs_names[at_target])


def graph_flow(adata, key: str, what: str) -> GraphFlow:
    """The graph fit under ``key``; a grid fit is refused, as it holds densities and not cells to give ``what``."""
    flow = read_flow(adata, key)
    if not isinstance(flow, GraphFlow):
        raise ValueError(
            f"key={key!r}: a grid fit holds densities, not cells; refit with geometry='graph' for {what}, or use "
            "tl.cell_transition for groups"
        )
    return flow


def node_descent(flow: GraphFlow, source: np.ndarray, k_source: int, k_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Every source node's share of each node's mass at time point ``k_target``, carried from ``k_source``.

    ``source``: the node of each source cell. Returns ``which`` (each source cell's column) and ``share``
    ``(n_nodes, n_source_nodes)``, all source nodes' indicators carried at once.
    """
    held, which = np.unique(source, return_inverse=True)
    share = np.zeros((flow.n_nodes, len(held)))
    share[held, np.arange(len(held))] = 1.0
    for k in range(k_source, k_target):
        share = flow.advect_share(share, k, +1)
    return which, share


def _interval_ends(data, params: dict, time: np.ndarray, tp: np.ndarray, source, target) -> tuple[int, int]:
    """Indices of ``source`` and ``target`` among the fit's time points, ``source`` first."""
    k_source = observed_time(_as_time(data, params, time, source, "source"), tp, "source", "the fit's time points")
    k_target = observed_time(_as_time(data, params, time, target, "target"), tp, "target", "the fit's time points")
    if k_source >= k_target:
        raise ValueError(f"source={source!r}, target={target!r}: expected source before target")
    return k_source, k_target


def _as_time(data, params: dict, time: np.ndarray, value, what: str):
    """``value`` as the fit's numeric time: a label of a text time column (``"day2"``) is the time read from it."""
    column = obs_column(data, params["primary"], params["time_key"], "time_key")
    if not isinstance(value, str) or pd.api.types.is_numeric_dtype(column):
        return value  # a number, or text for a numeric column: observed_time says it expects a number
    labels = column.astype(str).to_numpy()
    read = {str(label): float(t) for label, t in zip(labels, time, strict=True) if np.isfinite(t)}
    if value not in read:
        shown = ", ".join(f"{label!r} -> {t:g}" for label, t in sorted(read.items(), key=lambda kv: kv[1]))
        raise ValueError(f"{what}={value!r}: not a label of .obs[{params['time_key']!r}], read as times {shown}")
    return read[value]


TABLE_KEYS = {"values", "source_labels", "target_labels", "params"}  # what cell_transition stores in .uns


def _check_table_key(data, key_added: str) -> None:
    """``key_added`` may replace an earlier table, never other ``.uns`` data (a fit, scanpy's ``"pca"``, ...).

    ``data``: the object written into (a MuData's own ``.uns``, not its modality's).
    """
    old = data.uns.get(key_added)
    if old is not None and not (isinstance(old, Mapping) and set(old) == TABLE_KEYS):
        raise ValueError(
            f"key_added={key_added!r}: .uns[{key_added!r}] holds other data (not a cell_transition table); "
            "pass another key_added"
        )


def _column_of(groups) -> str:
    return next(iter(groups)) if isinstance(groups, Mapping) else groups


def _groups_at(data, primary: str, groups, at: np.ndarray, time: float, what: str) -> tuple[str, list]:
    """``(column, labels)`` of ``groups`` (a column name or ``{column: labels}``), each label with cells at ``at``."""
    if isinstance(groups, Mapping) and len(groups) == 1:
        column, wanted = next(iter(groups.items()))
        wanted = _wanted(wanted)
    elif isinstance(groups, str):
        column, wanted = groups, None
    else:
        raise ValueError(
            f"{what}: expected an .obs column or a {{column: [labels]}} dict of one column, got {groups!r}"
        )
    col = obs_column(data, primary, column, what)
    present = {_plain(g) for g in col[at].dropna().unique()}
    if wanted is None:
        order = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else _sorted(present)
        return column, [_plain(g) for g in order if _plain(g) in present]
    unknown = [g for g in wanted if g not in {_plain(v) for v in col.dropna().unique()}]
    if unknown:
        raise ValueError(
            f"{what}: {unknown} not labels of .obs[{column!r}], whose labels are "
            f"{sorted({_plain(v) for v in col.dropna().unique()}, key=str)} (mind numbers against text)"
        )
    absent = [g for g in wanted if g not in present]
    if absent:
        raise ValueError(
            f"{what}: {absent} of .obs[{column!r}] have no cells at time {time:g}; "
            f"groups there: {sorted(present, key=str)}"
        )
    return column, wanted


def _sorted(labels) -> list:
    """Labels in order: by value where all are numbers (2 before 10), else as text."""
    labels = list(labels)
    numbers = all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in labels)
    return sorted(labels) if numbers else sorted(labels, key=str)


def _plain(label):
    """A label as Python writes it (``2``, not ``np.int64(2)``), for messages and comparisons."""
    return label.item() if isinstance(label, np.generic) else label


def _normalized(table: pd.DataFrame, forward: bool) -> pd.DataFrame:
    """Rows (``forward``) or columns divided by their sums; empty ones NaN, with a warning."""
    sums = table.sum(axis=1 if forward else 0)
    empty = [_plain(g) for g in sums.index[sums <= 0]]
    if empty:
        side = "source group(s) reach" if forward else "target group(s) descend from"
        warn(f"cell_transition: {empty}: the {side} none of the groups shown; their fractions are NaN")
    sums = sums.where(sums > 0)
    return table.div(sums, axis=0) if forward else table.div(sums, axis=1)
