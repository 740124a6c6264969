"""A cells x cells Markov chain over the whole course of a graph fit, for CellRank's ``PrecomputedKernel``."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .._settings import warn
from ..pp.inputs import check_key_added, check_writes, primary_table
from ._fates import MAX_TRANSPORT_ENTRIES, graph_flow, node_descent
from .flow import result_cells
from .graph_flow import GraphFlow, cell_nodes

logger = logging.getLogger("sc_syncot")

SELF_TRANSITIONS = ("connectivities", "diagonal")


def transition_matrix(
    adata,
    key: str = "syncot",
    *,
    threshold: str | float | None = None,
    self_transitions: str = "connectivities",
    n_neighbors: int = 15,
    key_added: str | None = None,
    copy: bool = False,
):
    r"""Forward transition probabilities between the cells of consecutive time points, as CellRank reads them.

    Row ``c`` holds where cell ``c``'s descendants are at the next observed time point: the transport matrix
    :math:`\pi` of the interval (:func:`~sc_syncot.tl.transport_matrix`: the fit's flow carries each state node's
    mass forward), normalized,

    .. math:: P_{c c'} = \frac{\pi_{c c'}}{\sum_{c''} \pi_{c c''}},

    so growth cancels: a row says where a cell goes, not how many cells it becomes. All cells of a state node share
    their row. The blocks of consecutive time points make one row-stochastic ``n_obs x n_obs`` sparse matrix in
    ``.obs`` order, laid out as CellRank's ``RealTimeKernel`` (Weiler et al., 2024) lays out moscot's couplings
    (Klein et al., 2025), so that ``cellrank.kernels.PrecomputedKernel(adata, obsp_key=key_added)`` and its
    estimators (GPCCA: macrostates, fate probabilities) run on the fit.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``, fitted on the graph.
    key
        The result to use.
    threshold
        ``None`` (default): every entry is kept, each block dense; refused above 5e7 entries over the course
        (600 MB). Otherwise CellRank's rule for
        ``RealTimeKernel``, applied to the transport matrices :math:`\pi` before the rows are normalized:
        ``"auto"``, drop entries below the smallest row maximum over the course (rows without descendants left
        out), so every row keeps its largest entry; ``"auto_local"``, the same per interval; a number in
        ``[0, 100]``, drop each interval's entries below that percentile of its entries (``numpy.percentile``).
        Thinning is not free: where fates differ by small shares spread over many cells it erases them (Notes).
    self_transitions
        The last time point's block, whose cells have no next time point: ``"connectivities"``, a kNN graph of
        those cells (:func:`scanpy.pp.neighbors` with ``n_neighbors``, in the fit's primary basis), density
        normalized and rows normalized as CellRank's ``ConnectivityKernel`` does by default; ``"diagonal"``, each
        cell stays (absorbing).
    n_neighbors
        Neighbours per cell for ``self_transitions="connectivities"`` (at least 2).
    key_added
        ``.obsp`` key to write; default ``f"{key}_transitions"``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    The AnnData if ``copy``, else ``None``; writes ``.obsp[key_added]``, a CSR matrix whose rows sum to 1, into the
    table of the fit's primary basis (for a MuData, the primary modality: pass that modality to CellRank).

    Notes
    -----
    A cell with no entry left in its row (its mass dies or lands on nodes without cells of the next time point, or
    a percentage threshold dropped its row) gets a uniform row over the next time point's cells, with a warning,
    as in CellRank.

    On the simulated course of ``benchmarks/fates.py`` (branch A divides, B dies; ``docs/benchmarks/
    fates_cellrank.md``), CellRank's fate probabilities on this matrix tell the progenitors' true fates at t = 1.2
    with AUROC 0.86 (default fit; 0.99 with ``coupling="paired"``) without a threshold, but 0.53 with ``"auto"``
    (0.75 against 0.89-0.91 on two more seeds): the fates differ there by a few percent of each row, spread thinly
    over the next time point's cells, which the cut removes. Through CellRank's ``RealTimeKernel`` on moscot's
    plans: 0.57 (``"auto"``), 0.46 (none).

    References
    ----------
    Weiler, P., Lange, M., Klein, M., Pe'er, D., Theis, F. (2024). CellRank 2: unified fate mapping in multiview
    single-cell data. *Nature Methods* 21, 1196-1205.
    Klein, D., et al. (2025). Mapping cells through time and space with moscot. *Nature* 638, 1065-1075.
    """
    flow = graph_flow(adata, key, "cell-to-cell transitions")
    check_options(threshold, self_transitions, n_neighbors)
    params = adata.uns[key]["params"]
    table = primary_table(adata, params["primary"])
    key_added = check_key_added(f"{key}_transitions" if key_added is None else key_added)
    reads = {("obsp", "connectivities"): "scanpy's neighbours", ("obsp", "distances"): "scanpy's neighbours"}
    check_writes(table, [("obsp", key_added)], reads, key_added)
    cells = result_cells(adata, params)
    nodes = cell_nodes(adata, key, params["primary"], flow.n_nodes)
    tp = flow.time_points
    at = _cells_per_time_point(cells.time, tp, key, params["time_key"])
    if threshold is None:
        check_size([len(i) for i in at])
    couplings = [_node_coupling(flow, k, nodes[at[k]], nodes[at[k + 1]]) for k in range(len(tp) - 1)]
    cuts = _cuts(couplings, threshold)
    blocks = [_block(c, cut, tp[k]) for k, (c, cut) in enumerate(zip(couplings, cuts, strict=True))]
    blocks.append(_last_block(cells.x[at[-1]], self_transitions, n_neighbors))
    targets = [*at[1:], at[-1]]
    rows = np.concatenate([np.repeat(at[k], np.diff(b.indptr)) for k, b in enumerate(blocks)])
    cols = np.concatenate([targets[k][b.indices] for k, b in enumerate(blocks)])
    vals = np.concatenate([b.data for b in blocks])
    n = len(cells.time)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    out = adata.copy() if copy else adata
    primary_table(out, params["primary"]).obsp[key_added] = matrix
    return out if copy else None


def check_options(threshold, self_transitions, n_neighbors) -> None:
    if not (threshold is None or threshold in ("auto", "auto_local") or _is_percent(threshold)):
        raise ValueError(
            f"threshold: expected None, 'auto', 'auto_local' or a percentage in [0, 100], got {threshold!r}"
        )
    if self_transitions not in SELF_TRANSITIONS:
        raise ValueError(f"self_transitions: expected one of {SELF_TRANSITIONS}, got {self_transitions!r}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 2:
        raise ValueError(
            f"n_neighbors: expected an integer of at least 2 (the cell itself is one), got {n_neighbors!r}"
        )


def _is_percent(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and 0 <= value <= 100


def _cells_per_time_point(time: np.ndarray, tp: np.ndarray, key: str, time_key: str) -> list[np.ndarray]:
    """Indices of each fitted time point's cells; refuses cells that no longer match the fit."""
    at = [np.flatnonzero(time == t) for t in tp]
    stray = ~np.isin(time, tp)
    empty = [f"{t:g}" for t, i in zip(tp, at, strict=True) if len(i) == 0]
    if stray.any() or empty:
        found = ", ".join(f"{t:g}" for t in np.unique(time))
        raise ValueError(
            f"key={key!r}: the cells no longer match the fit (its time points {', '.join(f'{t:g}' for t in tp)}; "
            f".obs[{time_key!r}] now reads {found}); refit with tl.syncot on these cells"
        )
    return at


def check_size(
    counts: list[int], hint: str = "pass threshold='auto' or a percentage to keep only the larger ones"
) -> None:
    """Refuse dense blocks (``threshold=None``) above ``MAX_TRANSPORT_ENTRIES`` for these cells per time point."""
    size = sum(a * b for a, b in zip(counts[:-1], counts[1:], strict=True))
    if size > MAX_TRANSPORT_ENTRIES:
        raise ValueError(
            f"threshold=None: the dense blocks between consecutive time points hold {size:,} entries, more than "
            f"{MAX_TRANSPORT_ENTRIES:,}; {hint}"
        )


def _node_coupling(flow: GraphFlow, k: int, source: np.ndarray, target: np.ndarray) -> dict:
    """Interval ``k``'s transport matrix at node level.

    ``pi[a, b]`` is the entry of :func:`transport_matrix` between any cell of the ``a``-th source node and any cell
    of target node ``reached[b]``: the target node's share that descends from the source node, split evenly among
    the source node's cells. ``which`` and ``column`` give each source and target cell its node's index.
    """
    which, share = node_descent(flow, source, k, k + 1)
    reached, column = np.unique(target, return_inverse=True)
    share = share[reached].T  # (source nodes, reached)
    n_source = np.bincount(which, minlength=len(share))
    n_target = np.bincount(column, minlength=len(reached))
    return {"pi": share / n_source[:, None], "which": which, "column": column, "n_source": n_source,
            "n_target": n_target}  # fmt: skip


def _cuts(couplings: list[dict], threshold) -> list[float]:
    """Per interval, the entry of ``pi`` below which entries are dropped (CellRank's ``RealTimeKernel`` rule)."""
    if threshold is None:
        return [0.0] * len(couplings)
    if threshold == "auto":
        cut = _smallest_row_max([c["pi"] for c in couplings])
        logger.info("sc_syncot: transition_matrix drops entries below %.3g (threshold='auto')", cut)
        return [cut] * len(couplings)
    if threshold == "auto_local":
        return [_smallest_row_max([c["pi"]]) for c in couplings]
    return [_percentile(c, float(threshold)) for c in couplings]


def _smallest_row_max(pis: list[np.ndarray]) -> float:
    """The smallest row maximum, rows without descendants (all zero) left out: a cut that empties no other row."""
    row_max = np.concatenate([pi.max(axis=1) for pi in pis])
    return float(row_max[row_max > 0].min()) if (row_max > 0).any() else 0.0


def _percentile(coupling: dict, percent: float) -> float:
    """``numpy.percentile`` (linear) of the interval's cell-level entries, without expanding the node pairs.

    A node pair's entry repeats once per cell pair, so the sorted cell-level entries are the sorted node-level ones
    with those counts; entry ``i`` of it is found by a search in the cumulative counts.
    """
    values = coupling["pi"].ravel()
    counts = np.outer(coupling["n_source"], coupling["n_target"]).ravel()
    order = np.argsort(values)
    values, cum = values[order], np.cumsum(counts[order])
    position = percent / 100 * (cum[-1] - 1)
    low, high = (int(np.searchsorted(cum, i, side="right")) for i in (np.floor(position), np.ceil(position)))
    return float(values[low] + (position - np.floor(position)) * (values[high] - values[low]))


def _block(coupling: dict, cut: float, time: float) -> sp.csr_matrix:
    """One interval's cells x cells block: the entries of ``pi`` not below ``cut``, rows normalized."""
    pi = np.where(coupling["pi"] >= cut, coupling["pi"], 0.0)
    total = pi @ coupling["n_target"]
    empty = total <= 0
    if empty.any():
        n_cells = int(coupling["n_source"][empty].sum())
        warn(
            f"transition_matrix: {n_cells} cells at time {time:g} have no descendant left among the next time "
            "point's cells (their mass dies or leaves the observed nodes, or the threshold dropped their row); "
            "their rows are uniform over that time point, as CellRank makes them",
            UserWarning,
        )
        pi[empty] = 1.0
        total[empty] = coupling["n_target"].sum()
    node_level = sp.csr_matrix(pi / total[:, None])
    which, column = coupling["which"], coupling["column"]
    spread_rows = sp.csr_matrix((np.ones(len(which)), (np.arange(len(which)), which)), shape=(len(which), len(pi)))
    spread_cols = sp.csr_matrix(
        (np.ones(len(column)), (column, np.arange(len(column)))), shape=(pi.shape[1], len(column))
    )
    return (spread_rows @ node_level @ spread_cols).tocsr()


def _last_block(x: np.ndarray, self_transitions: str, n_neighbors: int) -> sp.csr_matrix:
    """The last time point's cells among themselves."""
    n = len(x)
    if self_transitions == "diagonal":
        return sp.identity(n, format="csr")
    import scanpy as sc

    cells = ad.AnnData(obsm={"X_fit": x}, shape=(n, 0))
    # exact kNN (scikit-learn): scanpy's approximate default, taken from 8,192 cells on (Euclidean), fails there with
    # SciPy 1.17 (AttributeError: 'csr_array' has no 'getnnz'); exact search costs 5 s at 9,000 cells in 10-D
    sc.pp.neighbors(cells, n_neighbors=min(n_neighbors, n - 1), use_rep="X_fit", transformer="sklearn")
    conn = sp.csr_matrix(cells.obsp["connectivities"], dtype=np.float64)  # scanpy stores float32
    # CellRank's ConnectivityKernel(density_normalize=True): Q A Q with Q the inverse degrees, then rows normalized
    degree = np.asarray(conn.sum(axis=0)).ravel()
    isolated = degree <= 0  # a cell that no other cell lists among its neighbours stays where it is
    inverse = sp.diags(1.0 / np.where(isolated, 1.0, degree))
    weights = inverse @ conn @ inverse + sp.diags(isolated.astype(float))
    total = np.asarray(weights.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / total) @ weights)
