"""Held-out time point evaluation: refit without a time point and compare the prediction with its cells.

The protocol of TrajectoryNet, TIGON and the flow-matching literature: hold out an inner time point, predict
the population there from the rest, and report the Wasserstein-1 distance (POT ``ot.emd2``) between predicted
and held-out cells, in the primary and in the secondary space, next to baselines and the noise floor (W1
between two random halves of the held-out cells: no method can beat it by more than chance).

Every grid-based prediction reaches the secondary space through the same coupling fitted on the remaining
cells (the map ``T`` plus the residual of the nearest paired cell for Monge; for Kantorovich, the kernel ``K`` to
a support point, then one of the cells it stands for),
so that methods differ only in their paths. The ``grid_floor`` row is what a perfect path would score: the
held-out cells' own density on the fit's grid, smoothed with the fit's bandwidth, sampled and read out like the
predictions (the cost of the grid and the smoothing). The ``readout`` row applies the coupling to the held-out
cells' own primary positions: the secondary W1 that a perfect primary prediction would reach through it.

A fit on a graph of cell states (``geometry="graph"``) predicts cells drawn from its node densities: a drawn node
stands for one of its own cells, with both bases as measured (a path node, which has no cells, for the interpolant
of one cell of each of the two state nodes it was built between, at its fraction), so W1 is in every column of the
primary basis and in the secondary, as for the static-OT rows. Its
``graph_floor`` row replaces ``grid_floor``: the held-out cells mapped to their nearest nodes in the space the nodes
were built in (the primary and the secondaries, each scaled by its spread) and read out in the same way;
``readout`` goes through the node nearest in the primary alone (a perfect primary prediction).

With ``label_key`` (an ``.obs`` column of cell labels, such as a branch or a cell type), each prediction is also
scored by the label shares it implies, as moscot users read a held-out time point's cell-type proportions.
Predicted points are labelled by their ``SHARE_NEIGHBORS`` nearest held-out cells (the fraction of each label among
them, a soft vote), in the primary and the secondaries side by side, each divided by its spread over the held-out
cells so that each space counts alike; a prediction with the held-out cells' own distribution reads their shares.
The error is the total variation distance between the predicted and the held-out shares (for two labels, the
difference in the share of either). Where the secondary alone shows the labels (a secondary that leads), only
the predicted secondary separates them.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import ot
import pandas as pd
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from .. import pp
from .._settings import warn
from ..pp.cell_graph import SECONDARY_WEIGHT, _spread, joint_space
from ..pp.densities import key_time, sizes_by_label
from ..pp.inputs import check_key_added, check_writes, obs_column, observed_time, read_cells
from .flow import Flow
from .graph_fit import resolve_geometry
from .graph_flow import GraphFlow
from .syncot import Fitted, _growth_rates, _n_columns, default_graph_time, default_grid, fit, graph_options, syncot
from .time_warp import MIN_TIME_POINTS, TimeWarp, resolve_time_warp

METHODS = (
    "syncot",
    "primary_only",
    "static_ot",
    "syncot_warped",
    "primary_only_warped",
    "static_ot_warped",
    "static_uot",
    "nearest",
    "grid_floor",
    "graph_floor",
    "readout",
    "noise_floor",
)
WARPED = ("syncot", "primary_only", "static_ot")
# Held-out cells that label a predicted point (soft vote): enough to average over a neighbourhood's label mix,
# few against the hundreds of held-out cells a time point has.
SHARE_NEIGHBORS = 15


def _w1(a: np.ndarray, b: np.ndarray, wa=None, wb=None) -> float:
    wa = ot.unif(len(a)) if wa is None else wa / wa.sum()
    wb = ot.unif(len(b)) if wb is None else wb / wb.sum()
    return float(ot.emd2(wa, wb, cdist(a, b), numItermax=1_000_000))


@dataclass(frozen=True)
class _Labels:
    """Reads label shares off points: the soft vote of their nearest reference cells, in the scaled joint space."""

    categories: list[str]
    tree: cKDTree
    onehot: np.ndarray  # (n_reference, n_labels)
    spreads: tuple[float, float | None]  # primary, secondary (None: the primary alone)
    truth: np.ndarray  # the reference cells' own shares

    def shares(self, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Mean soft vote of the points (rows of ``y`` with NaN, unpaired cells, are left out)."""
        if self.spreads[1] is None:
            y = None
        elif y is not None:
            keep = np.isfinite(y).all(1)
            x, y = x[keep], y[keep]
        return self.vote(joint_space(x, y, 1.0, self.spreads))

    def vote(self, points: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
        """Mean soft vote of points (in the joint space) by the reference cells, or by those ``among`` them."""
        tree, onehot = self.tree, self.onehot
        if among is not None:
            tree, onehot = cKDTree(tree.data[among]), onehot[among]
        k = min(SHARE_NEIGHBORS, len(onehot))
        idx = tree.query(points, k=k)[1].reshape(len(points), k)
        return onehot[idx].mean(axis=(0, 1))


def _labels(x: np.ndarray, y: np.ndarray | None, labels: np.ndarray, categories: list[str]) -> _Labels:
    """A label reader with the cells ``(x, y)`` (labels ``labels``) as its reference."""
    onehot = (labels[:, None] == np.asarray(categories)[None, :]).astype(float)
    spreads = (_spread(x), None if y is None else _spread(y))
    return _Labels(categories, cKDTree(joint_space(x, y, 1.0, spreads)), onehot, spreads, onehot.mean(0))


def _subsample(rng, n: int, size: int, p=None) -> np.ndarray:
    """Indices of ``size`` draws (with replacement when weighted, without otherwise)."""
    if p is not None:
        return rng.choice(n, size, replace=True, p=p / p.sum())
    return rng.choice(n, min(size, n), replace=False)


def _grid_sample(rng, fitted: Fitted, density: np.ndarray, size: int):
    """Points drawn from a grid density, uniformly within cells; also the cells' flat indices."""
    grid = fitted.flow.grid
    flat = np.clip(density.ravel(), 0, None)
    idx = _subsample(rng, flat.size, size, flat)
    centres = grid.points().reshape(-1, grid.ndim)[idx]
    jitter = (rng.random(centres.shape) - 0.5) * np.array(grid.spacing)
    return centres + jitter, idx


def _secondary_of(rng, fitted: Fitted, points: np.ndarray, cells_idx: np.ndarray, size: int) -> np.ndarray:
    """Secondary coordinates (original units) of primary samples, through the fitted couplings (side by side)."""
    return np.hstack([_through(rng, fitted, cpl, points, cells_idx) for cpl in fitted.couplings])


def _through(rng, fitted: Fitted, cpl, points: np.ndarray, cells_idx: np.ndarray) -> np.ndarray:
    """One secondary's coordinates (original units) of primary samples, through its coupling."""
    scale = cpl.info["scale"]
    cells = fitted.cells
    if cpl.monge_map is not None:
        # A map sends a density to its image only; the cells scatter around it in the directions the map does
        # not explain. Each sample takes the residual y_c - T(x_c) of its nearest paired cell, so the predicted
        # population has the spread of the observed ones.
        x, y = cells.x[cells.paired], cells.y[cells.paired][:, cpl.columns]
        residual = y - cpl.monge_map(x) / scale
        nearest = cKDTree(x).query(points)[1]
        return cpl.monge_map(points) / scale + residual[nearest]
    # A sample in grid cell i picks a support point j by row i of the kernel, then one of the paired cells that
    # j stands for: the prediction keeps the spread of the cells within each support point's cluster.
    rows = cpl.secondary.kernel[cells_idx]
    picks = np.array([rng.choice(r.indices, p=r.data / r.data.sum()) for r in rows])
    y = cells.y[cells.paired][:, cpl.columns]
    members = [np.flatnonzero(cpl.labels == j) for j in range(len(cpl.secondary.support))]
    return np.stack([y[rng.choice(members[j])] for j in picks])


def _predict(rng, fitted: Fitted, flow, t: float, size: int, with_secondary: bool):
    """Points (and their secondary coordinates) drawn from the fitted density at ``t``, and its mass."""
    if isinstance(flow, GraphFlow):
        density = np.clip(flow.density_at(t), 0, None)
        nodes = rng.choice(flow.n_nodes, size, replace=True, p=density / density.sum())
        pts, sec = _read_nodes(rng, fitted, flow, nodes, with_secondary)
        return pts, sec, flow.mass(density)
    return _predict_grid(rng, fitted, flow, t, size, with_secondary)


def _read_nodes(rng, fitted: Fitted, flow: GraphFlow, nodes: np.ndarray, with_secondary: bool):
    """Cells standing for drawn nodes, in both bases; no grid and no smoothing.

    A state node stands for one of its own cells (as measured); a path node, at fraction ``f`` between two state
    nodes, for the interpolant ``(1 - f) c + f c'`` of one cell of each (the McCann interpolation it was built
    from, at the cells' spread rather than at the nodes' centres). A node without cells to draw keeps its own
    coordinates.
    """
    cells, own = fitted.cells, fitted.per_cell["node"]
    order = np.argsort(own, kind="stable")
    start = np.searchsorted(own[order], np.arange(flow.n_nodes + 1))

    def member(of: np.ndarray):
        """A random cell of each node (index into the cells) and whether the node has one."""
        size = start[of + 1] - start[of]
        pick = order[np.minimum(start[of] + (rng.random(len(of)) * size).astype(int), len(order) - 1)]
        return pick, size > 0

    graph = fitted.summary["graph"]
    ends = np.asarray(graph["path_ends"])[nodes]
    frac = (np.asarray(graph["node_time"], float) % 1.0)[nodes][:, None]
    own_cell, has = member(nodes)
    tail, has_tail = member(np.maximum(ends[:, 0], 0))
    head, has_head = member(np.maximum(ends[:, 1], 0))
    path = (ends[:, 0] >= 0) & has_tail & has_head

    def coordinates(values: np.ndarray, at_nodes: np.ndarray) -> np.ndarray:
        between = (1 - frac) * values[tail] + frac * values[head]
        return np.where(has[:, None], values[own_cell], np.where(path[:, None], between, at_nodes[nodes]))

    pts = coordinates(cells.x, flow.points)
    if not with_secondary or cells.y is None:
        return pts, None
    return pts, coordinates(cells.y, flow.secondary)


def _predict_grid(rng, fitted: Fitted, flow: Flow, t: float, size: int, with_secondary: bool):
    density = flow.density_at(t)
    pts, idx = _grid_sample(rng, fitted, density, size)
    sec = _secondary_of(rng, fitted, pts, idx, size) if with_secondary else None
    return pts, sec, float(fitted.flow.grid.mass(density))


def _grid_floor(rng, fitted: Fitted, hx: np.ndarray, size: int, with_secondary: bool):
    """The held-out cells' own density on the fit's grid, smoothed as the fit smooths, sampled as a prediction."""
    cells, h = fitted.cells, fitted.summary["params"]["bandwidth"]
    if isinstance(h, str):  # "none": the fit's default
        h = pp.pooled_bandwidth(cells.x, cells.time, cells.time_points)
    density = pp.kde_density(hx, fitted.flow.grid, bandwidth=h)
    pts, idx = _grid_sample(rng, fitted, density, size)
    return pts, _secondary_of(rng, fitted, pts, idx, size) if with_secondary else None


def _graph_floor(rng, fitted: Fitted, hx: np.ndarray, size: int, with_secondary: bool, hy=None):
    """The held-out cells mapped to their nearest nodes, read out as a prediction.

    What a perfect path on this graph scores: the cost of standing for cells by nodes and their cells. "Nearest" is
    measured as the nodes were built (:func:`sc_syncot.pp.cell_graph`): in the joint space of all columns of the
    primary basis and, given the held-out cells' secondary coordinates ``hy``, every secondary, each scaled as in
    the fit and then each basis divided by its spread. With the primary alone, cells that share a primary state but
    differ in the secondary (a secondary that leads) would all fall on the node of one of them.
    """
    flow = fitted.flow
    take = _subsample(rng, len(hx), size)
    if hy is None:
        nodes = cKDTree(flow.points).query(hx[take])[1]
    else:
        to_joint = _joint_space(fitted)
        nodes = cKDTree(to_joint(flow.points, flow.secondary)).query(to_joint(hx[take], hy[take]))[1]
    return _read_nodes(rng, fitted, flow, nodes, with_secondary)


def _joint_space(fitted: Fitted):
    """``(x, y) ->`` points in the fit's joint node space (:func:`sc_syncot.pp.cell_graph`), the spreads of its cells.

    The primary and the secondaries scaled as the fit scaled them, weighted as the state nodes' k-means weighs them
    (which divides by each time point's own spreads); the primary alone where the fit has no secondary term.
    """
    cells = fitted.cells
    couplings = [c for c in fitted.couplings if c.secondary is not None]
    if not couplings:
        return lambda x, y: x

    def scaled(values):
        return np.hstack([values[:, c.columns] * c.info["scale"] for c in couplings])

    spreads = (_spread(cells.x), _spread(scaled(cells.y[cells.paired])))
    return lambda x, y: joint_space(x, scaled(y), SECONDARY_WEIGHT, spreads)


def _readout(rng, fitted: Fitted, hx: np.ndarray, size: int) -> np.ndarray:
    """The held-out cells' own primary positions, read out in the secondary space through the fitted coupling."""
    if isinstance(fitted.flow, GraphFlow):  # through the nearest node: its cells' or its own secondary state
        return _graph_floor(rng, fitted, hx, size, True)[1]
    pts = hx[_subsample(rng, len(hx), size)]
    grid = fitted.flow.grid
    idx = cKDTree(grid.points().reshape(-1, grid.ndim)).query(pts)[1]  # the grid cell each cell falls in
    return _secondary_of(rng, fitted, pts, idx, size)


def secondary_spaces(cells) -> list[tuple[str, slice]]:
    """The secondary spaces scored, each with its columns of ``cells.y``: ``"secondary"`` for one, else by key."""
    if cells.y is None:
        return []
    return list(cells.blocks) or [("secondary", slice(None))]


def _static(rng, cells, t: float, masses: np.ndarray, size: int, unbalanced: bool, reg_m: float, warp=None):
    """Displacement interpolation of the OT plan between the neighbouring time points.

    The plan is computed in the primary space and applied to both spaces' coordinates of the same cells; the
    mass is interpolated linearly. ``t`` sits at its physical fraction of the interval, or at the fraction a time
    warp places it at.
    """
    tp = cells.time_points
    k = int(np.searchsorted(tp, t)) - 1
    s = (t - tp[k]) / (tp[k + 1] - tp[k]) if warp is None else warp.fraction(t, k)
    ia = np.flatnonzero(cells.time == tp[k])
    ib = np.flatnonzero(cells.time == tp[k + 1])
    ia, ib = rng.choice(ia, min(size, len(ia)), replace=False), rng.choice(ib, min(size, len(ib)), replace=False)
    a = np.full(len(ia), masses[k] / len(ia))
    b = np.full(len(ib), masses[k + 1] / len(ib))
    cost = cdist(cells.x[ia], cells.x[ib], "sqeuclidean")
    if unbalanced:  # the plan's marginals deviate from a, b: that is its estimate of growth and death
        plan = ot.unbalanced.mm_unbalanced(a, b, cost / cost.mean(), reg_m=reg_m, div="kl")
    else:
        plan = ot.emd(a / a.sum(), b / b.sum(), cost)
    ii, jj = np.nonzero(plan > 1e-12 * plan.max())
    weights = plan[ii, jj]
    x = (1 - s) * cells.x[ia[ii]] + s * cells.x[ib[jj]]
    y = None if cells.y is None else (1 - s) * cells.y[ia[ii]] + s * cells.y[ib[jj]]
    pick = _subsample(rng, len(weights), size, weights)
    mass = (1 - s) * masses[k] + s * masses[k + 1]  # no mass model in static interpolation: linear in time
    return x[pick], None if y is None else y[pick], float(mass)


def _nearest(rng, cells, t: float, masses: np.ndarray, size: int):
    tp = cells.time_points
    k = int(np.argmin(np.abs(tp - t)))  # ties go to the earlier time point
    idx = _subsample(rng, int(np.sum(cells.time == tp[k])), size)
    sel = np.flatnonzero(cells.time == tp[k])[idx]
    return cells.x[sel], None if cells.y is None else cells.y[sel], float(masses[k])


def evaluate_heldout(
    data,
    time_key: str,
    heldout: float,
    primary: str,
    secondary: str | None = None,
    n_sample: int = 500,
    n_repeats: int = 5,
    reg_m: float = 1.0,
    seed: int = 0,
    key_added: str = "syncot_heldout",
    label_key: str | None = None,
    **syncot_kwargs,
) -> pd.DataFrame:
    """Refit without a held-out time point and compare predictions of it with its cells, against baselines.

    Methods: ``syncot`` (the synchronized fit, ``syncot_kwargs`` as for :func:`sc_syncot.tl.syncot`),
    ``primary_only`` (the same with ``weight=0``), ``static_ot`` / ``static_uot`` (displacement interpolation of
    the balanced / KL-unbalanced OT plan between the neighbouring time points, POT ``emd`` / ``mm_unbalanced``
    with ``reg_m``), ``nearest`` (the cells of the nearest time point), ``grid_floor`` (the held-out cells' own
    density on the fit's grid, sampled like the predictions: what a perfect path scores; no mass, NaN
    ``mass_error``), ``readout`` (secondary only: the fitted coupling applied to the held-out cells' true
    primary positions, what a perfect primary prediction reaches through it; NaN ``mass_error``) and
    ``noise_floor`` (W1 between two random halves of the held-out cells). A graph fit has ``graph_floor`` in place
    of ``grid_floor`` (the held-out cells mapped to their nearest nodes and read out). The two floors measure
    different things: the noise floor is the distance between two independent samples of the same cells, the grid
    and graph floors start from the held-out cells themselves, so they do not pay that sampling noise and can come
    out below the noise floor where it dominates (sci-CAR's 1 h cells in 30 near-isotropic ATAC components:
    ``graph_floor`` 7.6 against ``noise_floor`` 8.8). Where ``syncot`` is clearly worse than ``primary_only`` in a
    space (its mean W1 over 5% and two standard errors of the difference above), a warning says so: the secondary
    then misleads the fit more than it informs it.

    These predictions place the held-out time at its physical fraction of the held-in interval (constant speed).
    With a time warp (``time_warp``, ``"auto"`` by default, see :func:`sc_syncot.tl.syncot`), ``syncot_warped``,
    ``primary_only_warped`` and ``static_ot_warped`` place it where a warp fitted on the held-in time points
    only puts it: the fits' own warps (from their interval lengths), and for static OT one fitted to the W2
    distances between consecutive held-in samples (or the user's callable for all three). A warp needs at least
    three held-in time points: with fewer, a warning says so and the warped rows are left out. How strongly each
    warps is chosen on the held-in time points too (leave-one-out, see :mod:`sc_syncot.tl.time_warp`): where
    that check finds no clear gain, the warped rows equal the unwarped ones (a warped prediction draws the same
    random numbers as its unwarped twin, so the two differ by the warp alone). The fractions used are in
    ``.uns[key_added]["fractions"]``, the strengths and the reasons for them in ``"warp_strengths"`` and
    ``"warp_reasons"``.

    Parameters
    ----------
    data
        AnnData (or MuData with ``"modality:key"`` bases).
    time_key, primary, secondary
        As for :func:`sc_syncot.tl.syncot` (``secondary``: one basis or several, each scored in its own space).
    heldout
        An observed time point with observed time points on both sides.
    n_sample
        Cells (or predicted points) per side in each W1 (exact ``ot.emd2`` on subsamples).
    n_repeats
        Rounds of fresh subsamples (and static plans); the table reports the mean W1 and its standard deviation
        over rounds (``w1_std``): differences between methods below it are noise.
    reg_m
        KL marginal weight of ``static_uot`` (costs scaled to mean 1).
    seed
        Seed of every subsample.
    key_added
        The table is also stored as columns in ``.uns[key_added]``.
    label_key
        An ``.obs`` column of cell labels (a branch, a cell type); the held-out cells need one each. Adds the
        columns ``share_error`` (total variation distance between the label shares a prediction implies and
        the held-out cells', see the module's text) and ``share_<label>`` (the predicted share of each label of
        the held-out cells); the held-out cells' own shares are in ``.uns[key_added]["label_shares"]``.
    **syncot_kwargs
        ``coupling``, ``weight``, ``delta``, ``n_bins``, ``n_time``, ``masses``, ``time_warp``, ... of the fit.

    Returns
    -------
    A DataFrame with columns ``method``, ``space`` (``primary``, ``secondary``; with several secondaries one
    space per basis, named by its key), ``w1`` and ``mass_error``
    (relative error of the predicted mass; the true one follows ``masses`` on all time points), the means over
    ``n_repeats`` rounds, and ``w1_std``; with ``label_key`` also the label shares (the same in every space of
    a method; NaN for ``readout``, which predicts the secondary alone).
    """
    n_dims = syncot_kwargs.get("n_dims")
    grid_options = {k: syncot_kwargs.get(k) for k in ("n_bins", "bandwidth")}
    n_columns = _n_columns(data, primary)
    wants_graph = graph_options(*(syncot_kwargs.get(k) for k in ("coupling", "n_nodes", "n_neighbors")))
    geometry, _ = resolve_geometry(syncot_kwargs.get("geometry", "auto"), n_columns, n_dims, grid_options, wants_graph)
    if geometry == "grid" and n_dims is None:
        n_dims = n_columns or None
    every = read_cells(data, time_key, primary, secondary, n_dims if geometry == "grid" else None)
    tp = every.time_points
    if (
        not isinstance(n_repeats, (int, np.integer, float))
        or not np.isfinite(n_repeats)
        or n_repeats != int(n_repeats)
        or n_repeats < 1
    ):
        raise ValueError(f"n_repeats: expected a positive integer, got {n_repeats}")
    if len(tp) < 3:
        raise ValueError(f"heldout: needs an observed time point on each side; {time_key!r} has only {tp.tolist()}")
    heldout = tp[1:-1][observed_time(heldout, tp[1:-1], "heldout", "the inner observed time points")]
    check_key_added(key_added)
    check_writes(data, [("uns", key_added)], {}, key_added)
    held = every.time == heldout
    labels = None if label_key is None else _label_reader(data, primary, label_key, every, held)
    sub = data[every.names[every.time != heldout]].copy()
    params = _fit_params(time_key, primary, secondary, syncot_kwargs, geometry, n_dims)
    params["masses"] = _held_in_masses(params["masses"], tp, heldout)
    fits = {"syncot": fit(sub, **params)}
    # without a secondary the two fits are the same problem: solve it once
    same = secondary is None or bool(np.all(np.asarray(params["weight"], dtype=float) == 0))
    fits["primary_only"] = fits["syncot"] if same else fit(sub, **(params | {"weight": 0.0}))
    truth_mass = _true_mass(data, every, heldout, fits["syncot"])
    warps = _warps(fits, params["time_warp"], n_sample, seed, params["seed"])
    hx = every.x[held]
    hy = None if every.y is None else every.y[held & every.paired]
    spaces = secondary_spaces(every)
    rows = []
    for r in range(n_repeats):  # fresh subsamples each round: W1 on a few hundred cells is a noisy estimate
        rng = np.random.default_rng([seed, r])
        rows += _round(rng, fits, warps, hx, hy, heldout, truth_mass, n_sample, reg_m, spaces, labels)
    table = _table(rows, labels)
    if not same:
        _warn_where_synchronizing_hurts(table, n_repeats)
    data.uns[key_added] = {c: table[c].to_numpy() for c in table.columns} | {
        "heldout": float(heldout),
        "fractions": _fractions(fits["syncot"].cells.time_points, heldout, warps),
        "warp_strengths": {name: float(warp.strength) for name, warp in warps.items()},
        "warp_reasons": {name: str(warp.reason) for name, warp in warps.items()},
    }
    if labels is not None:
        data.uns[key_added]["label_shares"] = dict(zip(labels.categories, labels.truth.tolist(), strict=True))
    return table


# syncot is called worse than its weight-0 fit in a space when its mean W1 exceeds that fit's by this share and by
# two standard errors of the difference (each mean's spread over the rounds over sqrt(n_repeats))
HURTS = 0.05


def _warn_where_synchronizing_hurts(table: pd.DataFrame, n_repeats: int) -> list[str]:
    """Warn about (and return) the spaces where the synchronized prediction is clearly worse than weight 0's."""
    rows = table.set_index(["method", "space"])
    worse = []
    for space in table.loc[table.method == "syncot", "space"]:
        sync, plain = rows.loc[("syncot", space)], rows.loc[("primary_only", space)]
        stds = np.nan_to_num([sync.w1_std, plain.w1_std])
        error = float(np.sqrt(np.sum(stds**2) / n_repeats))
        if sync.w1 > (1 + HURTS) * plain.w1 and sync.w1 - plain.w1 > 2 * error:
            worse.append(f"{space} (W1 {sync.w1:.3g} against {plain.w1:.3g} at weight 0)")
    if worse:
        warn(
            f"the synchronized fit predicts the held-out cells worse than its weight-0 fit in {', '.join(worse)}: "
            "here the secondary misleads more than it informs (it may change on a clock of its own, or hardly "
            "follow the primary); a lower weight, or weight 0, fits this course better"
        )
    return worse


def _table(rows: list, labels: _Labels | None) -> pd.DataFrame:
    """Means (and the W1's standard deviation) over the rounds, per method and space."""
    shares = [] if labels is None else ["share_error", *(f"share_{c}" for c in labels.categories)]
    raw = pd.DataFrame(rows, columns=["method", "space", "w1", "mass_error", *shares])
    means = {c: (c, "mean") for c in ["w1", "mass_error", *shares]}
    return raw.groupby(["method", "space"], sort=False).agg(**means, w1_std=("w1", "std")).reset_index()


def _label_reader(data, primary: str, label_key: str, every, held: np.ndarray) -> _Labels:
    """The held-out cells (their secondary too, where paired) as the reference that labels predictions."""
    ref = held & every.paired if every.y is not None else held
    col = obs_column(data, primary, label_key, "label_key").reindex(every.names[ref])
    if col.isna().any():
        missing = list(col.index[col.isna()][:3])
        raise ValueError(f"label_key={label_key!r}: every held-out cell needs a label; missing for {missing}")
    values = col.astype(str).to_numpy()
    order = col.cat.categories.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else np.unique(values)
    present = set(values)
    categories = [c for c in order if c in present]
    return _labels(every.x[ref], None if every.y is None else every.y[ref], values, categories)


def _warps(fits: dict, time_warp, n_sample: int, seed: int, fit_seed: int) -> dict[str, TimeWarp]:
    """The time warp of each warped method, fitted on the held-in time points only; empty without a warp.

    ``syncot`` and ``primary_only`` use their fits' warps (from their own interval lengths); ``static_ot`` one
    fitted to the W2 distances between consecutive held-in samples (or the user's callable). The strength of an
    ``"auto"`` warp is checked on the held-in cells with the fits' seed, so all three get the same one.
    """
    cells = fits["syncot"].cells
    tp = cells.time_points
    if time_warp is None:
        return {}
    if isinstance(time_warp, str) and len(tp) < MIN_TIME_POINTS:
        warn(
            f"no time warp can be fitted on {len(tp)} held-in time points (it needs {MIN_TIME_POINTS}): the "
            "held-out time point is predicted at constant speed only, and the table has no warped rows"
        )
        return {}
    lengths = None
    if isinstance(time_warp, str):
        rng = np.random.default_rng([seed, 2**31])  # a stream apart from those of the rounds
        lengths = _static_lengths(rng, cells, n_sample)
    return {
        "syncot": _recorded_warp(fits["syncot"]),
        "primary_only": _recorded_warp(fits["primary_only"]),
        "static_ot": resolve_time_warp(time_warp, tp, lengths, cells.x, cells.time, fit_seed),
    }


def _recorded_warp(fitted: Fitted) -> TimeWarp:
    """A fit's warp as recorded (with its strength and reason, also when it came out as the identity)."""
    return TimeWarp.from_uns(fitted.summary["time_warp"])


def _static_lengths(rng, cells, size: int) -> np.ndarray:
    """W2 between the samples of consecutive time points (exact ``ot.emd2`` on subsamples), in the primary."""
    out = []
    for t0, t1 in zip(cells.time_points[:-1], cells.time_points[1:], strict=True):
        a = cells.x[rng.choice(np.flatnonzero(cells.time == t0), min(size, np.sum(cells.time == t0)), replace=False)]
        b = cells.x[rng.choice(np.flatnonzero(cells.time == t1), min(size, np.sum(cells.time == t1)), replace=False)]
        out.append(np.sqrt(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cdist(a, b, "sqeuclidean"), numItermax=10**6)))
    return np.asarray(out)


def _fractions(tp: np.ndarray, heldout: float, warps: dict) -> dict:
    """Where each prediction places the held-out time point within its held-in interval."""
    k = int(np.searchsorted(tp, heldout)) - 1
    out = {"physical": float((heldout - tp[k]) / (tp[k + 1] - tp[k]))}
    out.update({f"{name}_warped": warp.fraction(heldout, k) for name, warp in warps.items()})
    return out


def _round(rng, fits, warps, hx, hy, heldout, truth_mass, n_sample, reg_m, spaces, labels=None) -> list:
    """One round of predictions and W1s for every method, in the primary and in each of the secondary ``spaces``.

    A warped prediction draws from a copy of the random state its unwarped twin starts from (the same held-out
    subsample, the same static plan, the same uniforms for sampling the density): the two differ by the warp
    alone, not by sampling noise, and a warp of strength 0 scores exactly as constant speed.
    """
    rows, warped = [], []
    with_sec = bool(spaces)

    def scored(rng, method, x, y, m):
        return _rows(rng, method, hx, hy, x, y, m, truth_mass, n_sample, spaces, labels)

    for name, fitted in fits.items():
        twin = copy.deepcopy(rng)
        x, y, m = _predict(rng, fitted, replace(fitted.flow, warp=None), heldout, n_sample, with_sec)
        rows += scored(rng, name, x, y, m)
        if warps:
            flow = replace(fitted.flow, warp=None if warps[name].is_identity else warps[name])
            x, y, m = _predict(twin, fitted, flow, heldout, n_sample, with_sec)
            warped += scored(twin, f"{name}_warped", x, y, m)
    cells = fits["syncot"].cells
    masses = fits["syncot"].summary["masses"]
    for name, unbalanced in (("static_ot", False), ("static_uot", True)):
        twin = copy.deepcopy(rng)
        x, y, m = _static(rng, cells, heldout, masses, n_sample, unbalanced, reg_m)
        rows += scored(rng, name, x, y, m)
        if warps and name == "static_ot":
            x, y, m = _static(twin, cells, heldout, masses, n_sample, False, reg_m, warps["static_ot"])
            warped += scored(twin, "static_ot_warped", x, y, m)
    rows += warped
    x, y, m = _nearest(rng, cells, heldout, masses, n_sample)
    rows += scored(rng, "nearest", x, y, m)
    graph = isinstance(fits["syncot"].flow, GraphFlow)
    if graph:
        x, y = _graph_floor(rng, fits["syncot"], hx, n_sample, with_sec, hy if with_sec else None)
    else:
        x, y = _grid_floor(rng, fits["syncot"], hx, n_sample, with_sec)
    rows += scored(rng, "graph_floor" if graph else "grid_floor", x, y, float("nan"))
    if with_sec and hy is not None:  # secondary only: its primary positions are the held-out cells themselves
        y = _readout(rng, fits["syncot"], hx, n_sample)
        hy_s = hy[_subsample(rng, len(hy), n_sample)]
        blank = _share_columns(labels, None)
        rows += [("readout", space, _w1(y[:, cols], hy_s[:, cols]), float("nan"), *blank) for space, cols in spaces]
    return rows + _noise_floor(rng, hx, hy, n_sample, spaces, labels)


def _held_in_masses(masses, time_points: np.ndarray, heldout: float):
    """Population sizes given for every time point, without the held-out one's (the refit does not see it)."""
    if isinstance(masses, str):
        return masses
    masses = sizes_by_label(masses)
    if isinstance(masses, Mapping):
        return {k: v for k, v in masses.items() if key_time(k) != heldout}
    sizes = np.asarray(masses, dtype=float)
    if sizes.shape != time_points.shape:  # time_point_masses says what is wrong, on the full list
        pp.time_point_masses(time_points, np.ones(len(time_points)), sizes)
    return sizes[time_points != heldout]


def _fit_params(time_key, primary, secondary, kwargs, geometry: str, n_dims) -> dict:
    # the fit's settings are those of syncot, read from its signature (no second copy of its defaults), except
    # that the refits show no progress bar and write nothing
    signature = inspect.signature(syncot).parameters
    defaults = {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty}
    for name in ("secondary", "key_added", "copy"):
        del defaults[name]
    defaults["progress"] = False
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise ValueError(f"syncot_kwargs: unknown parameter(s) {sorted(unknown)}")
    params = defaults | kwargs | {"time_key": time_key, "primary": primary, "secondary": secondary}
    params["geometry"] = geometry
    if geometry == "graph":
        params["n_time"] = default_graph_time(params["coupling"], secondary, params["weight"], params["n_time"])
        return params
    # one grid for every method (primary_only has weight 0, which alone would take the larger default grid)
    grid = default_grid(params["coupling"], secondary, params["weight"], params["n_bins"], params["n_time"], n_dims)
    params["n_bins"], params["n_time"] = grid
    params["n_dims"] = n_dims
    return params


def _true_mass(data, every, heldout: float, fitted: Fitted) -> float:
    """The held-out time point's mass, on the scale of the fit (its neighbours' masses as fitted).

    NaN when the masses were given as sizes (the held-out one is not known then).
    """
    p = fitted.summary["params"]
    if p["masses"] == "given":
        return float("nan")
    counts = np.array([np.sum(every.time == t) for t in every.time_points])
    chained = ()
    if p["masses"] == "growth_prior":
        key = p["growth_key"] if p["growth_key"] != "none" else "growth_prior"
        chained = (_growth_rates(data, p["primary"], key), every.time)
    full = pp.time_point_masses(every.time_points, counts, p["masses"], *chained)
    k = int(np.flatnonzero(every.time_points == heldout)[0])
    fitted_tp = fitted.summary["time_points"]
    j = int(np.searchsorted(fitted_tp, heldout))
    ratio = (fitted.summary["masses"][j - 1] + fitted.summary["masses"][j]) / (full[k - 1] + full[k + 1])
    return float(full[k] * ratio)


def _rows(rng, method, hx, hy, x, y, mass, truth_mass, size, spaces, labels=None) -> list:
    err = abs(mass / truth_mass - 1)
    shares = _share_columns(labels, (x[:size], None if y is None else y[:size]))
    if y is not None:  # unpaired cells of a MuData have no secondary coordinates
        y = y[np.isfinite(y).all(1)]
    hx_s = hx[_subsample(rng, len(hx), size)]
    rows = [(method, "primary", _w1(x[:size], hx_s), err, *shares)]
    if hy is not None and y is not None:
        hy_s = hy[_subsample(rng, len(hy), size)]
        rows += [(method, space, _w1(y[:size][:, cols], hy_s[:, cols]), err, *shares) for space, cols in spaces]
    return rows


def _share_columns(labels: _Labels | None, points) -> tuple:
    """``(share_error, *shares)`` of predicted ``points`` ``(x, y)``; NaN without points, nothing without labels."""
    if labels is None:
        return ()
    if points is None:
        return (float("nan"),) * (1 + len(labels.categories))
    return _share_row(labels.shares(*points), labels.truth)


def _share_row(shares: np.ndarray, truth: np.ndarray) -> tuple:
    """``(share_error, *shares)``: the total variation distance between two label shares, then the first."""
    return (float(0.5 * np.abs(shares - truth).sum()), *shares.tolist())


def _halves_shares(labels: _Labels, a: np.ndarray, b: np.ndarray, n_held: int) -> tuple:
    """Shares of half ``a`` of the held-out cells read off half ``b`` (NaN where some cells are unpaired)."""
    if len(labels.onehot) != n_held:  # the reference holds the paired cells only: a, b index all held-out cells
        return _share_columns(labels, None)
    return _share_row(labels.vote(labels.tree.data[a], b), labels.onehot[b].mean(0))


def _noise_floor(rng, hx, hy, size, spaces, labels=None) -> list:
    """W1 between two random halves of the held-out cells (with labels: one half's shares read off the other)."""
    perm = rng.permutation(len(hx))
    half = len(hx) // 2
    a, b = perm[:half][:size], perm[half:][:size]
    shares = () if labels is None else _halves_shares(labels, a, b, len(hx))
    rows = [("noise_floor", "primary", _w1(hx[a], hx[b]), 0.0, *shares)]
    if hy is not None:
        rows += [("noise_floor", space, _w1(hy[a][:, cols], hy[b][:, cols]), 0.0, *shares) for space, cols in spaces]
    return rows
