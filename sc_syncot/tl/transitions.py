"""A cells x cells Markov chain over the whole course of a graph fit, for CellRank's ``PrecomputedKernel``."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._settings import warn
from ..pp.inputs import check_key_added, check_writes, primary_table
from .fates import MAX_TRANSPORT_ENTRIES
from .flow import read_flow, result_cells
from .graph_flow import GraphFlow, cell_nodes

logger = logging.getLogger("sc_syncot")

SELF_TRANSITIONS = ("connectivities", "diagonal")


def transition_matrix(
    adata,
    key: str = "syncot",
    *,
    threshold: str | float | None = "auto",
    self_transitions: str = "connectivities",
    n_neighbors: int = 15,
    key_added: str | None = None,
    copy: bool = False,
):
    r"""Forward transition probabilities between the cells of consecutive time points, as CellRank reads them.

    Row ``c`` holds where cell ``c``'s descendants are at the next observed time point: the fit's flow carries
    each state node's mass forward as :func:`transport_matrix` does, and the row is normalized,

    .. math:: P_{c c'} = \frac{\pi_{c c'}}{\sum_{c''} \pi_{c c''}},

    with :math:`\pi` the transport matrix of the interval (growth cancels: the row says where a cell goes, not how
    many it becomes). All cells of a state node share their row. The blocks of consecutive time points make one
    row-stochastic ``n_obs x n_obs`` sparse matrix, ordered as ``.obs``: the layout of CellRank's
    ``RealTimeKernel`` (Klein et al., 2025), so that ``cellrank.kernels.PrecomputedKernel(adata,
    obsp_key=key_added)`` and its estimators (GPCCA: macrostates, fate probabilities) run on the fit.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``, fitted on the graph.
    key
        The result to use.
    threshold
        Small probabilities to drop before the rows are normalized again, as CellRank's ``RealTimeKernel``:
        ``"auto"``, the largest threshold that leaves every row its largest entry (the smallest row maximum over
        the course); a number in ``[0, 100]``, the percentage of each interval's nonzero entries to drop (the
        smallest ones); ``None``, none (each block dense: at most :data:`~sc_syncot.tl.fates.MAX_TRANSPORT_ENTRIES`
        entries per interval).
    self_transitions
        The last time point's block, whose cells have no next time point: ``"connectivities"``, a kNN graph
        (:func:`scanpy.pp.neighbors`, ``n_neighbors``) of those cells in the fit's primary basis, rows normalized;
        ``"diagonal"``, each cell stays (absorbing). CellRank's default is the former.
    n_neighbors
        Neighbours per cell for ``self_transitions="connectivities"``.
    key_added
        ``.obsp`` key to write; default ``f"{key}_transitions"``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The AnnData if ``copy``, else ``None``; writes ``.obsp[key_added]``, a CSR matrix whose rows sum to 1.

    Notes
    -----
    A source node whose mass reaches no cell of the next time point (it all dies, or lands on nodes without
    cells) has no row to normalize; its cells get a uniform row over the next time point's cells, with a
    warning, as in CellRank.

    References
    ----------
    Klein, D., et al. (2025). Mapping cells through time and space with moscot. *Nature* 638, 1065-1075.
    Weiler, P., Lange, M., Klein, M., Pe'er, D., Theis, F. (2024). CellRank 2: unified fate mapping in multiview
    single-cell data. *Nature Methods* 21, 1196-1205.
    """
    flow = read_flow(adata, key)
    if not isinstance(flow, GraphFlow):
        raise ValueError(
            f"key={key!r}: a grid fit holds densities, not cells; refit with geometry='graph' for cell-to-cell "
            "transitions, or use tl.cell_transition for groups"
        )
    _check_options(threshold, self_transitions, n_neighbors)
    params = adata.uns[key]["params"]
    table = primary_table(adata, params["primary"])
    key_added = check_key_added(f"{key}_transitions" if key_added is None else key_added)
    reads = {("obsp", "connectivities"): "scanpy's neighbours", ("obsp", "distances"): "scanpy's neighbours"}
    check_writes(table, [("obsp", key_added)], reads, key_added)
    cells = result_cells(adata, params)
    nodes = cell_nodes(adata, key, params["primary"], flow.n_nodes)
    tp = flow.time_points
    at = [np.flatnonzero(cells.time == t) for t in tp]
    node_rows = [_node_rows(flow, k, nodes[at[k]], nodes[at[k + 1]]) for k in range(len(tp) - 1)]
    cut = _threshold(node_rows, nodes, at, threshold)
    n = len(cells.time)
    blocks = [_block(rows, nodes[at[k]], nodes[at[k + 1]], cut[k], k) for k, rows in enumerate(node_rows)]
    last = _last_block(cells.x[at[-1]], self_transitions, n_neighbors)
    rows = np.concatenate([np.repeat(at[k], np.diff(b.indptr)) for k, b in enumerate([*blocks, last])])
    cols = np.concatenate([at[k + 1][b.indices] for k, b in enumerate(blocks)] + [at[-1][last.indices]])
    vals = np.concatenate([b.data for b in [*blocks, last]])
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    out = adata.copy() if copy else adata
    primary_table(out, params["primary"]).obsp[key_added] = matrix
    return out if copy else None


def _check_options(threshold, self_transitions, n_neighbors) -> None:
    if not (threshold is None or threshold == "auto" or _is_percent(threshold)):
        raise ValueError(f"threshold: expected 'auto', a percentage in [0, 100] or None, got {threshold!r}")
    if self_transitions not in SELF_TRANSITIONS:
        raise ValueError(f"self_transitions: expected one of {SELF_TRANSITIONS}, got {self_transitions!r}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
        raise ValueError(f"n_neighbors: expected a positive integer, got {n_neighbors!r}")


def _is_percent(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and 0 <= value <= 100


def _node_rows(flow: GraphFlow, k: int, source: np.ndarray, target: np.ndarray) -> dict:
    """Interval ``k`` at node level: transition probabilities from each source node to each target node.

    ``probs[a, b]`` is the probability that a cell of source node ``held[a]`` goes to one given cell of target node
    ``reached[b]``; a cell's row over the target cells sums to 1 (0 for nodes that reach no target cell).
    """
    held, which = np.unique(source, return_inverse=True)
    reached, column = np.unique(target, return_inverse=True)
    share = np.zeros((flow.n_nodes, len(held)))
    share[held, np.arange(len(held))] = 1.0
    share = flow.advect_share(share, k, +1)[reached].T  # (held, reached): each target node's share from each source
    per_cell = np.bincount(column, minlength=len(reached))
    total = share @ per_cell
    probs = np.divide(share, total[:, None], out=np.zeros_like(share), where=total[:, None] > 0)
    return {"probs": probs, "which": which, "column": column, "per_cell": per_cell}


def _threshold(node_rows: list[dict], nodes, at, threshold) -> list[float]:
    """Per interval, the probability below which entries are dropped (CellRank's ``threshold`` rule)."""
    if threshold is None:
        for k, rows in enumerate(node_rows):
            size = len(rows["which"]) * len(rows["column"])
            if size > MAX_TRANSPORT_ENTRIES:
                raise ValueError(
                    f"threshold=None: interval {k} would be a dense {len(rows['which'])} x {len(rows['column'])} "
                    f"block, more than {MAX_TRANSPORT_ENTRIES:,} entries; use threshold='auto' or a percentage"
                )
        return [0.0] * len(node_rows)
    if threshold == "auto":
        row_max = [r["probs"].max(axis=1) for r in node_rows]
        cut = min(m[m > 0].min() for m in row_max if (m > 0).any())
        logger.info("sc_syncot: transition_matrix drops probabilities below %.3g (threshold='auto')", cut)
        return [cut] * len(node_rows)
    return [_percentile(r, float(threshold)) for r in node_rows]


def _percentile(rows: dict, percent: float) -> float:
    """The ``percent``-th percentile of an interval's nonzero cell-level entries (a node pair counts per cell pair)."""
    n_source = np.bincount(rows["which"])
    weight = np.outer(n_source, rows["per_cell"])
    probs = rows["probs"]
    keep = probs > 0
    values, weight = probs[keep], weight[keep].astype(float)
    order = np.argsort(values)
    cum = np.cumsum(weight[order])
    # CellRank cuts at np.percentile of the cell-level entries; here the entries come in weighted ties (a node
    # pair's value repeats for its cell pairs), so the cut is the first value past the percentage: at most that
    # share of the nonzeros goes, and a tie is kept or dropped whole.
    i = int(np.searchsorted(cum, percent / 100 * cum[-1], side="right"))
    return float(values[order][min(i, len(values) - 1)]) if percent > 0 else 0.0


def _block(rows: dict, source: np.ndarray, target: np.ndarray, cut: float, k: int) -> sp.csr_matrix:
    """Interval ``k``'s cells x cells block: node probabilities above ``cut``, rows normalized again."""
    probs = np.where(rows["probs"] >= cut, rows["probs"], 0.0)
    total = probs @ rows["per_cell"]
    dead = total <= 0
    if dead.any():
        n_cells = int(np.isin(rows["which"], np.flatnonzero(dead)).sum())
        warn(
            f"transition_matrix: {n_cells} cells of time point {k} have no descendant among the next time point's "
            "cells (their mass dies or leaves the observed nodes); their rows are uniform over that time point",
            UserWarning,
        )
        probs[dead] = 1.0
        total[dead] = rows["per_cell"].sum()
    node_level = sp.csr_matrix(probs / total[:, None])
    spread_rows = sp.csr_matrix((np.ones(len(source)), (np.arange(len(source)), rows["which"])))
    spread_cols = sp.csr_matrix((np.ones(len(target)), (rows["column"], np.arange(len(target)))))
    return (spread_rows @ node_level @ spread_cols).tocsr()


def _last_block(x: np.ndarray, self_transitions: str, n_neighbors: int) -> sp.csr_matrix:
    """The last time point's cells among themselves."""
    n = len(x)
    if self_transitions == "diagonal" or n == 1:
        return sp.identity(n, format="csr")
    import scanpy as sc

    cells = ad.AnnData(obsm={"X_fit": x}, shape=(n, 0))
    sc.pp.neighbors(cells, n_neighbors=min(n_neighbors, n - 1), use_rep="X_fit")
    conn = sp.csr_matrix(cells.obsp["connectivities"], dtype=np.float64)  # scanpy stores float32
    total = np.asarray(conn.sum(axis=1)).ravel()
    isolated = total <= 0  # a cell no other cell lists among its neighbours stays where it is
    conn = conn + sp.diags(isolated.astype(float))
    return sp.csr_matrix(sp.diags(1.0 / np.where(isolated, 1.0, total)) @ conn)
