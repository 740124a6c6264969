"""``tl.syncot``: reconstruct the dynamics of a time course, synchronized with a secondary space, into AnnData."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import anndata as ad
import numpy as np

from .. import pp
from .._options import changed
from .._settings import warn
from ..pp.inputs import (
    CellData,
    basis_width,
    check_key_added,
    check_writes,
    is_fit,
    is_mudata,
    located,
    primary_table,
    read_cells,
    secondary_keys,
)
from ..solvers import Grid, MongeSecondary, SyncOTProblem, SyncOTResult, solve
from ..solvers.grid import is_integer
from ..solvers.kantorovich import (
    DISCRETIZATIONS,
    EPSILON_CAP,
    KantorovichSecondary,
    cost_scales,
    default_epsilon,
)
from ..solvers.problem import check_tau
from ..solvers.solve import resolve_device
from . import graph_fit
from .flow import Flow
from .graph_flow import GraphFlow
from .time_warp import TimeWarp, resolve_time_warp, warp_from_callable

logger = logging.getLogger("sc_syncot")

COUPLINGS = ("kantorovich", "monge", "paired")
MAP_LIKE = ("monge", "paired")  # a secondary position per node (or grid cell): no support, no entropic smoothing
# Peak memory of a solve, in scalar grid fields of (n_time + 1) x n_cells doubles: measured 80-100 on the
# oracles of benchmarks/solver.py (64^2 and 128^2 space cells, 32 time steps), rounded up.
FIELDS_PER_SOLVE = 120


@dataclass
class Coupling:
    """The secondary term of the problem and what the write-back needs from it."""

    secondary: MongeSecondary | KantorovichSecondary | None
    info: dict
    monge_map: pp.MongeMap | None = None
    labels: np.ndarray | None = None  # Kantorovich: the support point of each paired cell
    name: str = "secondary"  # names its outputs: "secondary" for a single secondary, else its basis key
    columns: slice = field(default_factory=lambda: slice(None))  # its columns of CellData.y


@dataclass(frozen=True)
class SecondarySpec:
    """One secondary basis and its own settings, as :func:`syncot` takes them (one value or one per basis)."""

    key: str
    name: str
    coupling: str
    weight: float
    delta: float | None
    n_support: int
    epsilon: float | None


# Names the solver gives its own costs: a secondary named like one would mix its cost with them
RESERVED_NAMES = ("primary_transport", "primary_growth", "total", "start_penalty", "end_penalty")
PER_SECONDARY = ("coupling", "weight", "secondary_delta", "n_support", "epsilon")


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _per_secondary(value, n: int, what: str) -> list:
    """One value for all ``n`` secondaries, or one each (a sequence of length ``n``)."""
    if not _is_sequence(value):
        return [value] * n
    values = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
    if len(values) != n:
        raise ValueError(f"{what}: expected one value or one per secondary ({n}), got {len(values)}: {value!r}")
    return values


def secondary_specs(primary, secondary, coupling, weight, secondary_delta, n_support, epsilon) -> list[SecondarySpec]:
    """The secondaries of a fit, each with its settings; refuses duplicates, the primary and mismatched lengths.

    One secondary (a key, or a list of one) is named ``"secondary"``, as its outputs are; several are named by
    their basis keys.
    """
    keys = secondary_keys(secondary)
    values = dict(zip(PER_SECONDARY, (coupling, weight, secondary_delta, n_support, epsilon), strict=True))
    if not keys:
        return []
    if len(set(keys)) < len(keys):
        raise ValueError(f"secondary: expected different bases, got duplicates in {list(keys)!r}")
    if primary in keys:
        raise ValueError(f"secondary={primary!r}: the primary basis itself; pass another basis or none")
    reserved = [k for k in keys if k in RESERVED_NAMES] if len(keys) > 1 else []
    if reserved:
        raise ValueError(f"secondary={reserved[0]!r}: names a cost of the fit ({RESERVED_NAMES}); rename the basis")
    per = {k: _per_secondary(v, len(keys), k) for k, v in values.items()}
    for c in per["coupling"]:
        if not isinstance(c, str) or c not in COUPLINGS:
            raise ValueError(f"coupling: expected one of {COUPLINGS}, got {c!r}")
    names = ["secondary"] if len(keys) == 1 else keys
    return [
        SecondarySpec(k, name, *(per[p][i] for p in PER_SECONDARY))
        for i, (k, name) in enumerate(zip(keys, names, strict=True))
    ]


def _single(value):
    """A list of one value as that value (one secondary given as a list keeps the one-secondary outputs)."""
    return value[0] if _is_sequence(value) and len(value) == 1 else value


def _secondary_scale(x: np.ndarray, y: np.ndarray) -> float:
    """One factor for the secondary coordinates so that their total variance equals the primary's.

    ``weight`` then compares spaces of the same overall spread, whatever units each embedding comes in.
    """
    vy = float(np.var(y, axis=0).sum())
    return float(np.sqrt(np.var(x, axis=0).sum() / vy)) if vy > 0 else 1.0


def _columns(cells: CellData, specs: list[SecondarySpec]) -> list[slice]:
    """Each secondary's columns of ``cells.y`` (all of them for a single one)."""
    blocks = dict(cells.blocks)
    return [blocks.get(s.key, slice(None)) if len(specs) > 1 else slice(None) for s in specs]


def _label(spec: SecondarySpec) -> str:
    """The secondary in a warning: by its key when there are several."""
    return "the secondary" if spec.name == "secondary" else f"the secondary {spec.key!r}"


def _scaled_secondary(cells: CellData, seed: int, columns: slice, spec: SecondarySpec):
    """The paired cells' primary and scaled secondary coordinates (the basis in ``columns`` of ``cells.y``).

    Also the scale and predictability for ``.uns``. Each secondary is scaled on its own, to the primary's spread.
    A secondary at weight 0 does not act on the fit: its predictability is recorded but not warned about.
    """
    x, y = cells.x[cells.paired], cells.y[cells.paired][:, columns]
    scale = _secondary_scale(x, y)
    y = y * scale
    info = {"scale": scale, "n_paired": int(len(x))}
    info.update(_predictability(x, y, cells.time[cells.paired], seed, spec))
    return x, y, info


def _couplings(cells: CellData, grid: Grid, specs: list[SecondarySpec], seed: int) -> list[Coupling]:
    """The grid coupling of every secondary, each on its own columns (one without a term when there is none)."""
    if not specs:
        return [Coupling(None, {})]
    return [_coupling(cells, grid, spec, cols, seed) for spec, cols in zip(specs, _columns(cells, specs), strict=True)]


def _coupling(cells: CellData, grid: Grid, spec: SecondarySpec, columns: slice, seed: int) -> Coupling:
    x, y, info = _scaled_secondary(cells, seed, columns, spec)
    named = {"name": spec.name, "columns": columns}
    if spec.coupling == "monge":
        fitted = _monge_map(x, y, spec, info, seed)
        jac = fitted.jacobian_on(grid)
        sec = MongeSecondary(jac, spec.weight, delta=spec.delta, name=spec.name)
        return Coupling(sec, info, fitted, **named)
    support, labels = pp.secondary_support(y, n_support=min(spec.n_support, len(y)), seed=seed)
    kernel = pp.kantorovich_kernel(x, labels, grid, n_support=len(support))
    sec = KantorovichSecondary(kernel, support, spec.weight, delta=spec.delta, epsilon=spec.epsilon, name=spec.name)
    info.update(support=support / info["scale"], n_support=len(support))  # epsilon: recorded by fit once resolved
    return Coupling(sec, info, labels=labels, **named)


def _monge_map(x: np.ndarray, y: np.ndarray, spec: SecondarySpec, info: dict, seed: int) -> pp.MongeMap:
    """The map of a Monge coupling, fitted on the paired cells (its R^2 and bandwidth recorded in ``info``)."""
    fitted = pp.fit_monge_map(x, y, seed=seed)
    if fitted.r2 < 0.2:
        warn(
            f"{_label(spec)} is poorly explained by a map of the primary basis (leave-one-out R^2 = "
            f"{fitted.r2:.2f}); coupling='kantorovich' is the better choice"
        )
    info.update(r2=fitted.r2, bandwidth=fitted.bandwidth)
    return fitted


def _predictability(
    x: np.ndarray, y: np.ndarray, time: np.ndarray, seed: int, spec: SecondarySpec, n_max: int = 5000
) -> dict:
    """Cross-validated kNN R^2 of the secondary on the primary (pooled and within time points).

    Warned about when low, unless ``spec`` is at weight 0 (it then does not act on the fit); the warning says what a
    low R^2 means for ``spec``'s coupling.
    """
    if len(x) > n_max:  # keep it a second or two
        keep = np.random.default_rng(seed).choice(len(x), n_max, replace=False)
        x, y, time = x[keep], y[keep], time[keep]
    k = max(1, min(50, len(x) // 20))
    r2 = pp.secondary_predictability(x, y, time, k=k, seed=seed)
    if spec.weight > 0 and np.isfinite(r2["within_time"]) and r2["within_time"] < 0.05:
        warn(
            f"{_label(spec)} is hardly predictable from the primary state within a time point (cross-validated kNN "
            f"R^2 = {r2['within_time']:.2f}; pooled over time {r2['pooled']:.2f}): "
            + (
                "with coupling='paired' that is what lets it tell cells of one primary state apart (a secondary "
                "that leads), but noise reads the same: check with tl.evaluate_heldout, or against a weight-0 fit"
                if spec.coupling == "paired"
                else "the synchronization can smooth the secondary path but adds little information to the primary one"
            )
        )
    return {"r2_within_time": r2["within_time"], "r2_pooled": r2["pooled"]}


def _check_memory(grid, n_intervals: int, device: str) -> None:
    """Refuse a solve that would not fit: about ``FIELDS_PER_SOLVE`` fields of the geometry's unknowns per time node."""
    per_node = grid.n_cells + getattr(grid, "n_edges", 0)  # a graph also has a momentum per edge
    need = FIELDS_PER_SOLVE * n_intervals * (grid.n_time + 1) * per_node * 8
    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        index = dev.index if dev.index is not None else torch.cuda.current_device()  # torch < 2.5 needs one
        # memory torch has cached but not handed out is free for this solve, though the driver counts it as used
        free = (
            torch.cuda.mem_get_info(index)[0] + torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        )
    else:
        free = _available_ram()
    if free is not None and need > 0.8 * free:
        graph = hasattr(grid, "n_edges")
        names, label = (
            ("n_nodes, n_time", f"the graph of {grid.n_cells} nodes")
            if graph
            else ("n_bins, n_time", f"the grid {grid.shape}")
        )
        raise ValueError(
            f"{names}: {label} x {grid.n_time} time steps for {n_intervals} interval(s) needs "
            f"about {need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB are available on {dev}; lower "
            f"{names.replace(', ', ' or ')}"
        )


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# Below this many unknowns per field, torch's CPU worker threads cost more than they save: a 32^2 x 8 solve of
# three intervals took 13 s on one thread and 107 s on two on a 2-core machine with other work running.
SMALL_PROBLEM = 2**18


@contextmanager
def _threads_for(grid: Grid, n_intervals: int, device: str):
    """Run small CPU solves on one thread, restoring the caller's setting afterwards."""
    import torch

    small = n_intervals * (grid.n_time + 1) * grid.n_cells < SMALL_PROBLEM
    before = torch.get_num_threads()
    if small and resolve_device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _auto_delta(x: np.ndarray) -> float:
    """Half the largest extent of the cells.

    Mass can be transported up to ``pi delta`` (~1.6 extents) away, so moves are explained by transport, while
    local changes of mass are explained by growth. A smaller ``delta`` makes growth cheaper and soaks up part of
    the transport: a blob translated by a third of the extent gets 12% of its displacement explained by
    destruction and creation at ``0.3`` extents, 4% at ``0.5`` and 1% at ``1``.
    """
    return 0.5 * float(np.ptp(x, axis=0).max())


def syncot(
    data,
    time_key: str,
    primary: str,
    secondary: str | Sequence[str] | None = None,
    coupling: str | Sequence[str] = "kantorovich",
    weight: float | Sequence[float] = 1.0,
    delta: float | str | None = "auto",
    secondary_delta: float | Sequence[float | None] | None = None,
    geometry: str = "auto",
    n_dims: int | None = None,
    n_bins: int | tuple[int, ...] | None = None,
    n_time: int | None = None,
    n_nodes: int = 2000,
    n_neighbors: int = 10,
    masses="equal",
    growth_key: str | None = None,
    growth_prior: bool = False,
    tau: float | tuple | None = None,
    bandwidth: float | None = None,
    n_support: int | Sequence[int] = 200,
    epsilon: float | Sequence[float | None] | None = None,
    kantorovich_discretization: str = "pairs",
    tol: float = 1e-6,
    max_iter: int = 5000,
    sinkhorn_sweeps: int | str = 1,
    time_warp="auto",
    device: str = "auto",
    progress: bool = True,
    seed: int = 0,
    key_added: str = "syncot",
    copy: bool = False,
):
    r"""Reconstruct growth-aware dynamics in the primary basis, synchronized with a secondary one.

    Every interval ``[t_k, t_{k+1}]`` of the time course is an unbalanced dynamic transport problem between the
    cells observed at its ends (Mathematics page, sections 1-4 and 7); all intervals are solved in one batched call, on
    one of two geometries:

    - ``"graph"``: a graph of cell states in every column of the primary basis (:func:`sc_syncot.pp.cell_graph`):
      cluster centres of each time point's cells in the joint primary + secondary space, so that cells sharing a
      primary state but differing in the secondary are different nodes, plus nodes on the static-OT paths between
      consecutive time points (without them every path would have to run through other times' cells). Each time
      point's cells are node masses as observed (no smoothing); each node carries its own secondary coordinates.
    - ``"grid"``: kernel densities on a grid over the first ``n_dims`` (1 to 3) columns.

    ``"auto"`` takes the graph when the primary basis has more than 3 columns and no grid option (``n_dims``,
    ``n_bins``, ``bandwidth``) is given, or when a graph option is (``n_nodes``, ``n_neighbors``,
    ``coupling="paired"``), and logs which and why. With a secondary basis, the path also pays
    ``weight`` times the action it induces there: through a smooth map fitted on the paired cells (``"monge"``; on
    the graph, the change of the map's value between the two nodes of each edge), the nodes' own secondary states
    (``"paired"``, graph only: each edge pays the secondary displacement between its two nodes, so cells that share
    a primary state but differ in the secondary, such as chromatin primed toward a fate, are told apart), or a
    Markov kernel to k-means support points of the secondary basis (``"kantorovich"``; on the graph, each node's
    row is the support labels of its cells, on the grid a kernel from grid cells).

    Parameters
    ----------
    data
        AnnData with the bases in ``.obsm``, or MuData with bases named ``"modality:obsm_key"`` (paired cells are
        matched by name).
    time_key
        ``.obs`` column of times: numbers, or an ordered categorical, whose labels give the times when they start
        with increasing numbers (``"0h" < "1h" < "3h"`` is 0, 1, 3) and equally spaced steps otherwise (with a
        warning that says which), or text labels holding numbers (``"day0"``). Labels in different units are read
        in one: ``"0"``, ``"8h"``, ``"1d"`` is 0, 1/3, 1 (days; hours under a column name such as ``time_h``).
        Categories that no cell has are left out, with a warning; every time point needs at least 3 cells.
    primary, secondary
        ``.obsm`` keys of the primary basis (all columns on the graph, the first ``n_dims`` on a grid) and of the
        secondary basis (all columns; ``None``: primary space only), or a list of several secondary bases, each
        paying its own action (see ``key_added`` for where each one's results go). Each secondary is scaled by one
        factor so that its total variance equals that of the primary columns used (recorded in ``.uns``). On the
        graph, the nodes are clustered in the joint space of the primary and every secondary.
    coupling
        ``"kantorovich"``, ``"monge"`` or ``"paired"`` (graph only); with several secondaries one for all or a list
        of one per secondary, as for ``weight``, ``secondary_delta``, ``n_support`` and ``epsilon``. Of the
        couplings, ``"paired"`` tells fates earliest where the secondary leads (``benchmarks/fates.py``), but it
        follows the secondary's noise too: where that is large, the map (``"monge"``) averages it away.
    weight
        ``lambda``, the weight of the secondary action (one per secondary, or one for all).
    delta
        Growth length scale in primary units; ``"auto"`` is half the cells' largest extent on a grid, and on the
        graph the larger of that and twice the largest W2 distance between consecutive time points
        (:func:`sc_syncot.tl.graph_fit.auto_delta`; in many columns the time points are often further apart than
        half the extent along one axis); ``None``: balanced transport (no growth; needs equal masses). The value
        used is in ``.uns[key_added]["params"]["delta"]``.
    secondary_delta
        Growth length scale of the secondary (default: ``delta``).
    geometry
        ``"auto"``, ``"graph"`` or ``"grid"`` (see above).
    n_dims
        Grid only: dimensions of the primary grid (1 to 3), the first columns of the basis; ``None``: all columns
        (a basis of more than 3 columns then needs ``n_dims`` or the graph).
    n_bins, n_time
        Grid only (``n_bins``): space cells per axis. Time steps per interval. ``None``: with a Kantorovich
        secondary (whose iterations cost more and grow with the steps: about 2-7x the iterations of the same fit at
        weight 0, see the README) 4 steps on the graph, 32 cells and 4 steps on a grid; otherwise 8 steps on the
        graph, 64 cells and 16 steps on a grid. A 3-D grid takes half the cells per axis, and 8 steps instead of
        16 (32^3 cells and 8 steps: about 2 minutes for TIGON's four EMT intervals on 2 CPU cores).
    n_nodes, n_neighbors
        Graph only: nodes (half from the cells, half on the paths between time points) and ``k`` of the symmetric
        kNN edges. 2,000 nodes keep a fit of a few intervals within about a minute on 2 CPU cores (5,000 paired
        cells, four time points, a 30-D primary: 53-62 s, ``benchmarks/graph_fit.py``); ``n_nodes`` trades speed
        for resolution. The graph's isotropic edge weights use the nodes' intrinsic dimension
        (:func:`sc_syncot.solvers.graph.intrinsic_dimension`, in ``.uns[key_added]["graph"]["dimension"]``).
    masses
        Population size per time point: ``"equal"``, ``"counts"``, ``"growth_prior"`` (from ``.obs[growth_key]``,
        see :func:`sc_syncot.pp.growth_prior`), or sizes (a sequence, or a mapping time -> size).
    growth_key
        ``.obs`` column of per-cell growth rates (per unit of the time key) for ``masses="growth_prior"`` and
        ``growth_prior=True`` (default ``"growth_prior"``, as :func:`sc_syncot.pp.growth_prior` writes it, in the
        unit its ``time_unit`` names; the unit it stored in ``.uns[growth_key]`` is logged, and a warning says when
        it was given another ``time_key`` than this fit's).
    growth_prior
        Unbalanced fits: growth pays by its departure from the cells' prior rates in ``.obs[growth_key]``,
        ``delta^2 int (g - g_0)^2 rho`` instead of ``delta^2 int g^2 rho``. On the graph a node's prior is the mean
        of its cells' rates, a path node's the interpolation of its two state nodes'; on a grid the rates are
        smoothed as the densities are, a grid cell's prior being the kernel-weighted mean of the rates of the
        interval's cells (each weighted by its mass, :func:`sc_syncot.pp.kde_rates`) and the overall mean beyond
        their reach. The masses set each interval's mean growth and the prior who grows faster than whom: the rates
        are shifted per interval so that they chain to the masses (:func:`sc_syncot.pp.prior_shifts`; the shifts,
        per unit of the time key, are in ``.uns[key_added]["growth_prior_shift"]``; zero with
        ``masses="growth_prior"``). Without a prior the fit prefers the most uniform growth that meets the masses,
        so a dying branch that receives cells can come out growing.
    tau
        Soft endpoints: ``None`` (default) makes each interval's path start and end exactly at the observed
        (smoothed) densities; a positive number replaces both by the penalty ``tau KL(fitted | observed)``, and
        ``(tau_start, tau_end)`` sets them apart (``None`` for a hard end), as moscot's ``tau_a`` / ``tau_b``: a
        time point of few or noisy cells then need not be reproduced. ``tau`` is in units of the transport cost of
        an interval, squared primary distances (``W2^2`` between its time points; Mathematics page, section 4),
        independent of the time unit. ``"auto"`` takes the mean squared W2 distance between consecutive time
        points (exact OT on at most 1,000 cells of each, in the fitted columns); the value used is in
        ``params["tau"]``. Each interval relaxes its own ends, as moscot's consecutive pairs do, so the fitted
        density at an inner time point may differ slightly between its two intervals. From moscot (whose cost is
        scaled by its mean, ``scale_cost="mean"``): ``tau = epsilon tau_a / (1 - tau_a) x mean cost``. The
        penalties are in ``.uns[key_added]["costs"]`` (``start_penalty``, ``end_penalty``).
    bandwidth
        Grid only: kernel density bandwidth in primary units (default: Scott's rule, see
        :func:`sc_syncot.pp.interval_densities`).
    n_support
        Secondary support points of a Kantorovich coupling.
    epsilon
        Entropic smoothing of a Kantorovich coupling, in units of its cost (dimensionless for HK); ``None``:
        :func:`~sc_syncot.solvers.kantorovich.default_epsilon`, twice the support's nearest-neighbour cost, at most
        0.3 times the median support cost (above it, fits in many near-isotropic dimensions cycled); below 0.01 times
        it a warning gives the value to pass if the fit does not converge (coupled coordinates of unpaired views
        needed 0.3 times it). The
        secondary is the debiased divergence, which has no additive bias; the value used and its ratio to the
        median support cost are in ``.uns[key_added]["coupling"]`` (``epsilon``, ``epsilon_ratio``), warned above
        0.5 (where the smoothing is as wide as the support's spread; see ``SMOOTHING_WARNING``).
    kantorovich_discretization
        How a Kantorovich secondary's induced curve is priced in time: ``"pairs"`` (default), the debiased entropic
        ``HK^2`` between consecutive time steps; ``"graph"``, a dynamic problem of its own on the kNN graph of the
        support points, solved together with the primary's by one projection
        (:class:`~sc_syncot.solvers.KantorovichSecondary`, ``discretization``). The second has no entropic
        smoothing (``epsilon`` is then unused) and its iterations do not grow with ``n_time``; its transport runs
        along the support graph's edges. Needs an unbalanced fit (``delta``).
    time_warp
        Where times between samples sit on each interval's path (see :mod:`sc_syncot.tl.time_warp`): ``"auto"``
        fits a monotone map from physical to path time to the lengths of the fitted intervals (the speed of the
        course, smooth across intervals; needs at least three time points, else constant speed), shrunk towards
        constant speed by a strength chosen by leave-one-out over the time points (four or more; with three,
        the full warp); ``None``:
        constant speed, each time at its physical fraction of the interval; a callable: the user's own monotone
        map of physical time (a pseudotime, or a fitted :class:`~sc_syncot.tl.time_warp.TimeWarp`). Used by
        :func:`interpolate`, :func:`trajectories` and the plots; recorded in ``.uns[key_added]["time_warp"]``.
        The fit itself does not depend on it.
    tol, max_iter, sinkhorn_sweeps, device, progress
        Passed to :func:`sc_syncot.solvers.solve` (``tol``: 1e-6 by default, where the velocities are within 1-4%
        (median) of a solve at 1e-8 on the demo course and scGEM; at 1e-5 the costs are within 0.2% but the
        velocities 1-7% off, 30% at the 90th percentile of the demo's cells; ``progress``: a bar over the
        iterations in notebooks and on terminals, off at ``sc_syncot.settings.verbosity`` 0;
        ``sinkhorn_sweeps="auto"`` when the solve warns that the Kantorovich secondary's Sinkhorn state lagged).
    seed
        Seed of the subsampling and k-means steps.
    key_added
        Where results go: ``.uns[key_added]`` (parameters, grid, time points, masses, and per interval and time
        node the densities, velocity and growth fields in physical units, costs per interval and space,
        convergence), ``.obsm[f"{key_added}_velocity"]`` (in the columns fitted), ``.obs[f"{key_added}_growth"]``
        (each cell's rate relative to its time point's cells, levelled so that their mean is the population's
        growth over the adjacent intervals: :meth:`~sc_syncot.tl.flow.TimeAxis.cell_growth`; the fields in
        ``.uns`` keep the instantaneous rates) and ``.obsm[f"{key_added}_velocity_secondary"]`` (in the secondary
        basis' own units: the map's Jacobian times the velocity for a Monge coupling; on the graph, for a
        Kantorovich or a paired one, the change of the nodes' secondary coordinates along the flow; on a grid, for
        a Monge coupling only). On the graph,
        ``.uns[key_added]["graph"]`` holds the nodes (``points``, ``secondary``, ``edges``, ``omega``, ``node_time``),
        ``.uns[key_added]["edge_flow"]`` the mass flow along each edge per interval and time step, the densities,
        velocities and growth rates are per node, and ``.obs[f"{key_added}_node"]`` is each cell's node. With
        several secondaries, each one's outputs are named by its basis key ``b`` instead of ``"secondary"``:
        ``.obsm[f"{key_added}_velocity_{b}"]`` (as for one), ``.uns[key_added]["couplings"][b]`` (scale,
        diagnostics, Kantorovich support and induced masses, in place of ``"coupling"``),
        ``.uns[key_added]["costs"][b]``, ``.uns[key_added]["secondary_actions"][b]`` (in place of
        ``"secondary_action"``) and on the graph
        ``.uns[key_added]["graph"]["secondaries"][b]``; ``params`` holds ``secondary``, ``coupling``, ``weight``,
        ``secondary_delta``, ``n_support`` and ``epsilon`` as arrays in the order of ``secondary`` (NaN for
        ``None``). One secondary, also given as a list of one, keeps the names above.
    copy
        Return a new object with the results instead of writing into ``data``.

    Returns
    -------
    ``None``, or the new object when ``copy=True``. Nothing is written unless the whole computation succeeds.

    Raises
    ------
    ValueError
        For bad parameters or data (missing keys, NaN or inf coordinates, fewer than two time points or fewer
        than 3 cells at one, duplicated cell names, a grid too large for the memory available, ...), before
        anything is fitted; the message names the argument or key.
    FloatingPointError
        When the solve diverges (non-finite iterates or results).
    """
    params = {k: v for k, v in locals().items() if k not in ("data", "key_added", "copy")}
    check_outputs(data, key_added, time_key, primary, secondary, growth_key)
    fitted = fit(data, **params)
    out = data.copy() if copy else data
    _write(out, primary, key_added, fitted.summary, fitted.per_cell)
    return out if copy else None


@dataclass
class Fitted:
    """What :func:`syncot` computes before writing.

    The ``.uns`` summary, per-cell values and the pieces (cells, coupling, flow) that evaluations reuse.
    """

    summary: dict
    per_cell: dict
    cells: CellData
    coupling: Coupling  # the first secondary's (an empty one without a secondary)
    flow: Flow
    couplings: list[Coupling]  # every secondary's, in the order given


# Warned above (epsilon over the median support cost). On the Mathematics page's oracle 5 (2-D, 1024 support points) the
# debiased secondary fell below HK^2 by 1% at a ratio of 0.015, 7% at 0.11 and 19% at 0.37, as the smoothing
# approaches the support's spread and the divergence tends to a kernel distance. k-means supports of a few hundred
# points in 10 or more dimensions have ratios of 0.2-0.36 by the nearest-neighbour rule (sim. course 0.23, scGEM
# 0.36, capped at 0.3: see default_epsilon), as their nearest neighbours are nearly as far as the median pair; the
# warning is kept for ratios where the smoothing is as wide as the spread itself (a given epsilon).
SMOOTHING_WARNING = 0.5
# Warned below, with EPSILON_CAP times the median cost to pass: scNMT's accessibility and methylation coupled to RNA
# by pp.couple_views (200 support points on near-1-D curves) had 0.0015 and 0.0004 and did not converge in 5,000
# iterations (370 s); on the graph fit of the accessibility 0.1 did not either (96 s), while 0.3 (EPSILON_CAP)
# converged in 1,000-2,400 iterations (21-46 s). The default is not moved: a 2-D secondary of a few hundred points
# (scGEM's first two methylation components, 0.004) runs well where the ratio is as small, because its points are
# many for the dimension, not because they repeat, and the ratio alone does not tell the two apart.
FINE_SMOOTHING = 0.01


def _resolve_epsilon(secondary: KantorovichSecondary, delta, info: dict) -> KantorovichSecondary:
    """``secondary`` with its epsilon set (given, or the default); epsilon and its relative size go to ``info``.

    ``epsilon_ratio`` is epsilon over the median cost between support points: the smoothing of the debiased
    divergence relative to the support's spread, which sets how far it falls below ``HK^2`` (see
    :data:`SMOOTHING_WARNING`). It is large when the support is coarse (few points, many dimensions), since the
    default epsilon is twice the nearest-neighbour cost (capped at ``EPSILON_CAP`` times the median cost); warned
    above :data:`SMOOTHING_WARNING`.
    """
    sec_delta = secondary.delta if secondary.delta is not None else delta  # as SyncOTProblem resolves delta=None
    scales = cost_scales(secondary.support, sec_delta)
    eps = secondary.epsilon
    if eps is None:
        eps = default_epsilon(secondary.support, sec_delta, scales=scales)
    ratio = eps / scales[0]
    if ratio > SMOOTHING_WARNING:
        warn(
            f"the Kantorovich secondary's entropic smoothing (epsilon {eps:.3g} with {len(secondary.support)} "
            f"support points) is {ratio:.2g} x the median cost between support points: the debiased secondary cost "
            "is then closer to a kernel distance than to HK^2 and under-estimates it. Raise n_support (a finer "
            "support allows a smaller default epsilon), pass a smaller epsilon (slower), or use coupling='monge' "
            "when the secondary is a smooth function of the primary"
        )
    if ratio < FINE_SMOOTHING:
        why = (
            "as given"
            if secondary.epsilon is not None
            else "by default, as the support points are close to their neighbours (points on curves, as coupled "
            "coordinates of unpaired views, or many points in few dimensions)"
        )
        warn(
            f"the Kantorovich secondary's epsilon ({eps:.3g}) is only {ratio:.2g} x the median cost between its "
            f"{len(secondary.support)} support points, {why}: its Sinkhorn solves may be slow and may not converge. "
            f"If the fit does not converge, pass epsilon={EPSILON_CAP * scales[0]:.3g} ({EPSILON_CAP:g} x the median "
            "cost), or use coupling='monge' (coupled coordinates of unpaired views are a function of the primary)"
        )
    info.update(epsilon=eps, epsilon_ratio=ratio)
    how = "given"
    if secondary.epsilon is None:
        how = "default: twice the support's nearest-neighbour cost"
        if eps < 2.0 * scales[1]:
            how = f"default, capped: twice the nearest-neighbour cost is {2.0 * scales[1] / scales[0]:.2g} x the median"
    logger.info("sc_syncot: Kantorovich epsilon %.3g (%s; %.2g x the median support cost)", eps, how, ratio)
    return replace(secondary, epsilon=eps)


def _weighted_kantorovich(coupling, secondary, weight) -> bool:
    """Whether a Kantorovich secondary enters the fit (weight not 0): its iterations set the default sizes."""
    n = len(secondary_keys(secondary))
    pairs = zip(_per_secondary(coupling, n, "coupling"), _per_secondary(weight, n, "weight"), strict=True)
    return any(c == "kantorovich" and w != 0 for c, w in pairs)


def default_grid(coupling: str, secondary, weight, n_bins, n_time, n_dims: int | None = None) -> tuple:
    """``n_bins`` and ``n_time`` where ``None``: 32 and 4 with a Kantorovich secondary, else 64 and 16.

    On a 3-D grid (``n_dims`` 3), 16 and 4 with a Kantorovich secondary, else 32 and 8: 64^3 cells and 16 steps
    took 3.8 s per iteration on 2 CPU cores (TIGON's EMT course, 4 intervals); 32^3 and 8 steps fit it in 141 s.
    """
    kantorovich = _weighted_kantorovich(coupling, secondary, weight)
    if n_dims == 3:
        bins, steps = (16, 4) if kantorovich else (32, 8)
    else:
        bins, steps = (32, 4) if kantorovich else (64, 16)
    return (bins if n_bins is None else n_bins), (steps if n_time is None else n_time)


def fit(
    data,
    time_key: str,
    primary: str,
    secondary: str | None,
    coupling: str,
    weight: float,
    delta,
    secondary_delta,
    geometry: str,
    n_dims,
    n_bins,
    n_time,
    n_nodes: int,
    n_neighbors: int,
    masses,
    growth_key,
    growth_prior: bool,
    tau,
    bandwidth,
    n_support: int,
    epsilon: float | None,
    kantorovich_discretization: str,
    tol: float,
    max_iter: int,
    sinkhorn_sweeps: int | str,
    time_warp,
    device: str,
    progress: bool,
    seed: int,
) -> Fitted:
    """The computation of :func:`syncot` (same parameters), without writing anything."""
    specs = secondary_specs(primary, secondary, coupling, weight, secondary_delta, n_support, epsilon)
    if len(specs) <= 1:  # one secondary given as lists of one: recorded as one value each, as for a key
        secondary, coupling, weight, secondary_delta, n_support, epsilon = map(
            _single, (secondary, coupling, weight, secondary_delta, n_support, epsilon)
        )
    if not specs and (_is_sequence(coupling) or coupling not in COUPLINGS):
        raise ValueError(f"coupling: expected one of {COUPLINGS}, got {coupling!r}")
    grid_options = {"n_bins": n_bins, "bandwidth": bandwidth}
    n_columns = _n_columns(data, primary)
    wants_graph = graph_options(coupling, n_nodes, n_neighbors)
    geometry, why = graph_fit.resolve_geometry(geometry, n_columns, n_dims, grid_options, wants_graph)
    if geometry == "graph":
        n_time = default_graph_time(coupling, secondary, weight, n_time)
        _check_graph_params(n_nodes, n_neighbors)
    else:
        n_dims = (n_columns or None) if n_dims is None else n_dims  # <= 3 (resolve_geometry)
        n_bins, n_time = default_grid(coupling, secondary, weight, n_bins, n_time, n_dims)
        _check_bins_per_axis(n_bins, n_dims)
    for spec in specs if len(specs) > 1 else [None]:  # one secondary or none: the arguments as given
        own = (coupling, weight, secondary_delta, epsilon, n_support) if spec is None else (
            spec.coupling, spec.weight, spec.delta, spec.epsilon, spec.n_support
        )  # fmt: skip
        _check_params(own[0], own[1], delta, own[2], own[3], bandwidth, n_bins, n_time, own[4], tol, max_iter, seed)
    chained = isinstance(masses, str) and masses == "growth_prior"  # sizes chained from the growth rates
    if kantorovich_discretization not in DISCRETIZATIONS:
        raise ValueError(
            f"kantorovich_discretization: expected one of {DISCRETIZATIONS}, got {kantorovich_discretization!r}"
        )
    if kantorovich_discretization == "graph" and delta is None:
        raise ValueError("kantorovich_discretization='graph': needs an unbalanced fit (delta=None fits balanced ones)")
    _check_unused(
        (geometry, why), specs, coupling, weight, secondary_delta, epsilon, n_support, sinkhorn_sweeps, n_nodes,
        n_neighbors, growth_key, chained or _wants(growth_prior), kantorovich_discretization,
    )  # fmt: skip
    cells = read_cells(data, time_key, primary, secondary, n_dims if geometry == "grid" else None)
    logger.info("sc_syncot: fitting on the %s (%s)", geometry, why)
    _check_time_warp(time_warp, cells.time_points)
    tp = cells.time_points
    if isinstance(delta, str) and delta == "auto":
        delta = _auto_delta(cells.x) if geometry == "grid" else graph_fit.auto_delta(cells.x, cells.time, tp, seed)
    counts = np.array([np.sum(cells.time == t) for t in tp])
    _check_growth_prior(growth_prior, delta)
    tau = _check_tau(tau)
    if isinstance(tau, str):  # "auto": the mean squared W2 between consecutive time points, for both ends
        w2 = float(np.mean(graph_fit.interval_w2(cells.x, cells.time, tp, seed)))
        logger.info("sc_syncot: tau %.4g (auto: the mean squared W2 between consecutive time points)", w2)
        tau = (w2, w2)
    rates = None
    if chained or _wants(growth_prior):
        rates = _growth_rates(data, primary, growth_key or "growth_prior", time_key)
    rel_mass = pp.time_point_masses(tp, counts, masses, *((rates, cells.time) if chained else ()))
    if delta is not None and not _wants(growth_prior) and not np.allclose(rel_mass, rel_mass[0]):
        logger.info(
            "sc_syncot: the masses change and no growth_prior is given: the fit meets them with the most uniform "
            "growth, so a dying branch that receives cells can come out growing (README, Limitations)"
        )
    shifts = pp.prior_shifts(tp, rel_mass, rates, cells.time) if _wants(growth_prior) else None
    if delta is None and not np.allclose(rel_mass, rel_mass[0]):
        raise ValueError("delta=None (balanced) needs equal masses at every time point; use masses='equal'")
    build = _build_graph if geometry == "graph" else _build_grid
    problem, cpls, extra = build(
        cells, rel_mass, specs, delta, seed, device,
        n_bins=n_bins, n_time=n_time, bandwidth=bandwidth, n_nodes=n_nodes, n_neighbors=n_neighbors,
        prior_rates=None if shifts is None else _interval_priors(rates, shifts), tau=tau,
        discretization=kantorovich_discretization,
    )  # fmt: skip
    with _threads_for(problem.geometry, len(tp) - 1, device):
        sinkhorn = {"sinkhorn_sweeps": sinkhorn_sweeps} if problem.kantorovich_secondaries else {}
        result = solve(problem, tol=tol, max_iter=max_iter, device=device, progress=progress, **sinkhorn)  # warns
    if tau is not None:
        _warn_lost_mass(problem, result, tau)
    params = locals_params(locals()) | (_spec_params(specs) if len(specs) > 1 else {})
    summary = _summary(result, problem.geometry, tp, rel_mass, cpls, params)
    # the cells let "auto" choose how strongly to warp (a leave-one-out check over the time points)
    warp = resolve_time_warp(time_warp, tp, interval_lengths(summary["costs"]["total"], tp), cells.x, cells.time, seed)
    summary["time_warp"] = warp.to_uns()
    if shifts is not None:  # what the masses added to the prior on each interval (per unit of the time key)
        summary["growth_prior_shift"] = shifts
    if geometry == "graph":
        cg = extra
        summary["graph"] = graph_fit.summary(cg, cpls)
        summary["edge_flow"] = (graph_fit.batched(result.flux, result) / _per_interval(tp, 2)).astype(np.float32)
        flow = GraphFlow.from_summary(summary, _active(warp))
        per_cell = graph_fit.per_cell(flow, cells, cg, cpls)
        # a Monge secondary moves as its map does (J v, as on the grid), not as the nodes' secondary coordinates
        per_cell |= _map_velocities(cells, cpls, per_cell["velocity"])
    else:
        flow = Flow(problem.geometry, tp, summary["density"], summary["velocity"], summary["growth"], _active(warp))
        per_cell = _per_cell(flow, cells, cpls)
    # the solution itself (the history and the coupling's diagnostics may hold inf or NaN for "not measured")
    _check_finite({**{k: summary[k] for k in ("density", "velocity", "growth", "costs")}, "per_cell": per_cell})
    return Fitted(summary, per_cell, cells, cpls[0] if cpls else Coupling(None, {}), flow, cpls)


def _n_columns(data, primary: str) -> int:
    """Columns of the primary basis; a missing key is named here, bad values by read_cells (0: not an AnnData)."""
    try:
        return basis_width(data, primary, "primary")
    except (AttributeError, TypeError):  # not an AnnData: read_cells says so
        return 0


def graph_options(coupling, n_nodes=None, n_neighbors=None) -> list[str]:
    """The options given away from :func:`syncot`'s defaults that only the graph has (they ask ``"auto"`` for it).

    ``coupling``: one coupling or one per secondary; ``None``: an option not given.
    """
    couplings = coupling if _is_sequence(coupling) else [coupling]
    paired = ["coupling='paired'"] if any(isinstance(c, str) and c == "paired" for c in couplings) else []
    given = {k: v for k, v in {"n_nodes": n_nodes, "n_neighbors": n_neighbors}.items() if v is not None}
    return changed(syncot, **given) + paired


def _per_interval(tp, n_trailing: int) -> np.ndarray:
    """Interval durations shaped to divide ``(K-1, ...)`` arrays with ``n_trailing`` further axes."""
    return np.diff(tp).reshape((-1,) + (1,) * n_trailing)


def _build_grid(cells, rel_mass, specs, delta, seed, device, **kw):
    """The grid problem: densities on a grid over the first ``n_dims`` columns, the coupling to its cells."""
    grid = pp.primary_grid(cells.x, kw["n_bins"], kw["n_time"])
    tp = cells.time_points
    _check_memory(grid, len(tp) - 1, device)
    h = pp.pooled_bandwidth(cells.x, cells.time, tp) if kw["bandwidth"] is None else kw["bandwidth"]
    dens = pp.interval_densities(cells.x, cells.time, tp, grid, rel_mass, h)
    prior = None if kw["prior_rates"] is None else _grid_prior(cells, grid, rel_mass, kw["prior_rates"], h)
    cpls = _couplings(cells, grid, specs, seed)
    logger.info(
        "sc_syncot: grid of %s cells over the first %d columns, %d time steps per interval, delta %s",
        " x ".join(map(str, grid.shape)), grid.ndim, grid.n_time, _shown(delta),
    )  # fmt: skip
    return _problem(grid, dens, delta, cpls, prior, kw["tau"], kw["discretization"]), cpls, None


def _shown(delta) -> str:
    """``delta`` in a log line: four significant digits, or "None (balanced)"."""
    return "None (balanced)" if delta is None else f"{delta:.4g}"


def _grid_prior(cells, grid, rel_mass: np.ndarray, rates: np.ndarray, bandwidth) -> np.ndarray:
    """Per grid cell, ``(K - 1, *grid.shape)``: each interval's per-cell prior rates ``(K - 1, n)``, per path time.

    Smoothed with the densities' kernel and bandwidth over the cells of the interval's two time points, each
    weighted by its mass in its time point's density (:func:`sc_syncot.pp.kde_rates`); grid cells beyond every
    kernel take the mean rate.
    """
    tp = cells.time_points
    k = np.searchsorted(tp, cells.time)
    per_cell = np.asarray(rel_mass, dtype=float)[k] / np.bincount(k, minlength=len(tp))[k]
    fields = []
    for j, r in enumerate(rates):  # interval j: its two time points' cells (others may sit where it has none)
        sel = (k == j) | (k == j + 1)
        fields.append(pp.kde_rates(cells.x[sel], r[sel], grid, bandwidth=bandwidth, weights=per_cell[sel]))
    return np.diff(tp).reshape(-1, *[1] * grid.ndim) * np.stack(fields)  # per unit of the time key -> path time


def _interval_priors(rates: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``(K - 1, n)``: each interval's per-cell prior, shifted to agree with the masses (:func:`pp.prior_shifts`)."""
    return rates[None] + shifts[:, None]


def _build_graph(cells, rel_mass, specs, delta, seed, device, **kw):
    """The graph problem: each time point's cells as node masses on the cell graph, the nodes' own secondaries.

    The graph is built in the joint space of the primary and every secondary (each scaled to the primary's spread,
    side by side); each secondary's term then reads its own columns of the nodes' secondary coordinates.
    """
    columns = _columns(cells, specs)
    # read_cells refuses unpaired cells: the paired cells are all of them
    scaled = [_scaled_secondary(cells, seed, cols, s) for s, cols in zip(specs, columns, strict=True)]
    y = np.hstack([part[1] for part in scaled]) if scaled else None
    n_time, k = kw["n_time"], kw["n_neighbors"]
    cg = graph_fit.build(cells, y, n_nodes=kw["n_nodes"], n_neighbors=k, n_time=n_time, seed=seed)
    _check_memory(cg.graph, len(cells.time_points) - 1, device)
    rho = graph_fit.node_masses(cg, rel_mass)
    prior = None
    if kw["prior_rates"] is not None:  # per unit of the time key -> per unit of each interval's path time
        nodes = np.stack([graph_fit.node_rates(cg, r) for r in kw["prior_rates"]])
        prior = np.diff(cells.time_points)[:, None] * nodes
    cpls = [
        _graph_coupling(cg, y, spec, cols, part, seed, k)
        for spec, cols, part in zip(specs, columns, scaled, strict=True)
    ] or [Coupling(None, {"n_nodes": cg.n_nodes, "n_edges": cg.graph.n_edges, "dimension": cg.graph.dimension})]
    logger.info(
        "sc_syncot: graph of %d nodes (%d edges, intrinsic dimension %d), %d time steps per interval, delta %s",
        cg.n_nodes, cg.graph.n_edges, cg.graph.dimension, n_time, _shown(delta),
    )  # fmt: skip
    return _problem(cg.graph, rho, delta, cpls, prior, kw["tau"], kw["discretization"]), cpls, cg


def _graph_coupling(cg, y_scaled, spec: SecondarySpec, columns: slice, scaled: tuple, seed: int, k: int) -> Coupling:
    """One secondary's term on the graph: the map at the nodes (Monge), or a kernel from the nodes' cells.

    ``scaled``: the paired cells' primary and scaled secondary coordinates in this basis, and its ``info``.
    """
    x, y, info = scaled
    info.update(n_nodes=cg.n_nodes, n_edges=cg.graph.n_edges, dimension=cg.graph.dimension)
    if spec.coupling == "monge":
        fitted = _monge_map(x, y, spec, info, seed)
        sec = MongeSecondary(fitted(cg.graph.points), spec.weight, delta=spec.delta, name=spec.name)
        return Coupling(sec, info, fitted, name=spec.name, columns=columns)
    if spec.coupling == "paired":  # math.md section 7: each node's own y_i (path nodes: interpolated)
        sec = MongeSecondary(cg.secondary[:, columns], spec.weight, delta=spec.delta, name=spec.name)
        return Coupling(sec, info, name=spec.name, columns=columns)
    sec, support, labels = graph_fit.kantorovich_secondary(
        cg, y_scaled[:, columns], spec.weight, spec.delta, spec.n_support, spec.epsilon, seed, k, spec.name, columns
    )
    info.update(support=support / info["scale"], n_support=len(support))
    return Coupling(sec, info, labels=labels, name=spec.name, columns=columns)


def _check_growth_prior(growth_prior, delta) -> None:
    if not isinstance(growth_prior, (bool, np.bool_)):
        raise ValueError(f"growth_prior: expected True or False, got {growth_prior!r}")
    if growth_prior and delta is None:
        raise ValueError("growth_prior=True: needs growth (delta=None fits balanced transport)")


def _problem(
    geometry, dens, delta, cpls: list[Coupling], growth_prior=None, tau=None, discretization: str = "pairs"
) -> SyncOTProblem:
    # a secondary at weight 0 changes nothing in the solve (a Monge one's metric term vanishes, a Kantorovich one
    # stays out of the iteration) and measures what the path costs in the secondary (the trade-off's weight-0 point)
    secondaries = []
    for cpl in cpls:
        sec = cpl.secondary
        if isinstance(sec, KantorovichSecondary) and discretization == "graph":  # no entropic smoothing to resolve
            cpl.info.update(discretization=discretization)
            secondaries.append(replace(sec, discretization=discretization))
        elif isinstance(sec, KantorovichSecondary):
            secondaries.append(_resolve_epsilon(sec, delta, cpl.info))
        elif isinstance(sec, MongeSecondary):
            secondaries.append(sec)
    return SyncOTProblem(
        geometry, dens[:-1], dens[1:], delta=delta, secondaries=secondaries, growth_prior=growth_prior, tau=tau
    )


# Warned below: soft ends that keep less than half of an observed mass (tau small against the transport cost).
LOST_MASS_WARNING = 0.5


def _warn_lost_mass(problem: SyncOTProblem, result: SyncOTResult, tau) -> None:
    """Warn when soft ends dropped most of an observed mass: ``tau`` is then small against the transport cost."""
    rho = result.rho if problem.batch_size > 1 else result.rho[None]
    geometry = problem.geometry
    kept = [geometry.mass(rho[:, face]) / geometry.mass(obs) for face, obs in ((0, problem.rho0), (-1, problem.rho1))]
    worst = float(np.min(kept))
    if worst < LOST_MASS_WARNING:
        shown = tau[0] if tau[0] == tau[1] else tau
        warn(
            f"tau={shown}: the soft ends kept only {worst:.0%} of an observed mass, so tau is small against the "
            "transport cost and the fit drops cells rather than move them. Raise tau to about the costs of a fit "
            "with hard ends (tau=None; .uns[key_added]['costs']['total'], squared primary units) or above",
            RuntimeWarning,
        )


def _check_tau(tau) -> tuple | str | None:
    """``tau`` checked as the solver reads it: ``(start, end)``, each a float or ``None``; or ``"auto"``."""
    if tau is None or (isinstance(tau, str) and tau == "auto"):
        return tau
    start, end = check_tau(tau, 1)
    return tuple(None if t is None else float(t[0]) for t in (start, end))


def default_graph_time(coupling: str, secondary, weight, n_time) -> int:
    """Time steps per interval on a graph where ``None``: 4 with a Kantorovich secondary, else 8.

    A Kantorovich secondary's iterations grow with the steps (the Benchmarks page), and with every graph fit at 4
    steps the held-out benchmark predicted as well as at 8 (median syncot / static OT over its 19 graph rows 0.954
    against 0.958, branch shares within 0.02) in half the time.
    """
    steps = 4 if _weighted_kantorovich(coupling, secondary, weight) else 8
    return steps if n_time is None else n_time


def _check_graph_params(n_nodes, n_neighbors) -> None:
    if not is_integer(n_nodes) or n_nodes < 8:
        raise ValueError(f"n_nodes: expected an integer >= 8 graph nodes, got {n_nodes!r}")
    if not is_integer(n_neighbors) or n_neighbors < 1:
        raise ValueError(f"n_neighbors: expected a positive integer (k of the kNN graph), got {n_neighbors!r}")


def _check_finite(tree, path: str = "") -> None:
    """Refuse to hand on NaN or inf (a solve that diverged without being caught): nothing is written then."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            _check_finite(v, f"{path}/{k}" if path else str(k))
        return
    arr = np.asarray(tree)
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise FloatingPointError(f"the fit produced NaN or inf in {path!r}: the solve diverged; nothing was written")


def _is_length(value) -> bool:
    """A finite number > 0 (not a bool, not a string)."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and bool(np.isfinite(value) and value > 0)
    )


def _check_unused(
    geometry_why, specs, coupling, weight, secondary_delta, epsilon, n_support, sinkhorn_sweeps, n_nodes, n_neighbors,
    growth_key, uses_rates: bool, kantorovich_discretization: str = "pairs",
) -> None:  # fmt: skip
    """Refuse options this fit would not use that are set away from :func:`syncot`'s defaults (every argument acts)."""
    geometry, why = geometry_why
    sec = changed(
        syncot, coupling=coupling, weight=weight, n_support=n_support, sinkhorn_sweeps=sinkhorn_sweeps,
        secondary_delta=secondary_delta, epsilon=epsilon, kantorovich_discretization=kantorovich_discretization,
    )  # fmt: skip
    if not specs and sec:
        raise ValueError(f"{', '.join(sec)}: act on a secondary basis, and secondary=None; pass one or leave them out")
    kantorovich_only = changed(
        syncot, n_support=n_support, sinkhorn_sweeps=sinkhorn_sweeps, epsilon=epsilon,
        kantorovich_discretization=kantorovich_discretization,
    )  # fmt: skip
    if specs and all(s.coupling in MAP_LIKE for s in specs) and kantorovich_only:
        given = sorted({s.coupling for s in specs})
        raise ValueError(f"{', '.join(kantorovich_only)}: act on coupling='kantorovich' only, not on coupling={given}")
    if geometry == "grid" and any(s.coupling == "paired" for s in specs):
        raise ValueError(
            f"coupling='paired': needs the graph (geometry='graph'), whose nodes carry their own secondary states, "
            f"and this fit is on the grid ({why}); on a grid use 'monge' or 'kantorovich'"
        )
    graph_only = changed(syncot, n_nodes=n_nodes, n_neighbors=n_neighbors)
    if geometry == "grid" and graph_only:
        raise ValueError(f"{', '.join(graph_only)}: graph options, and this fit is on the grid ({why})")
    if growth_key is not None and not uses_rates:
        raise ValueError(
            f"growth_key={growth_key!r}: read with masses='growth_prior' or growth_prior=True only; pass one of "
            "them or leave it out"
        )


def _wants(flag) -> bool:
    """A boolean option that is on (``True`` or numpy's ``True_``; anything else is checked elsewhere)."""
    return isinstance(flag, (bool, np.bool_)) and bool(flag)


def _check_bins_per_axis(n_bins, n_dims) -> None:
    """``n_bins``: one count for every axis, or one per axis of the grid."""
    bins = np.atleast_1d(np.asarray(n_bins, dtype=object))
    if n_dims is not None and bins.ndim == 1 and len(bins) not in (1, n_dims):
        raise ValueError(
            f"n_bins: expected one count or {n_dims} (one per axis of the {n_dims}-D grid, n_dims={n_dims}), "
            f"got {n_bins!r}"
        )


def _check_params(
    coupling, weight, delta, secondary_delta, epsilon, bandwidth, n_bins, n_time, n_support, tol, max_iter, seed=0
) -> None:
    """Refuse bad numbers before any data is read or anything is fitted (the coupling alone can take a while)."""
    number = isinstance(weight, (int, float, np.integer, np.floating)) and not isinstance(weight, (bool, np.bool_))
    if not (number and np.isfinite(weight) and weight >= 0):  # a bool is refused, as pp.inputs.as_number does
        raise ValueError(f"weight: expected a finite float >= 0, got {weight!r}")
    if not (delta is None or (isinstance(delta, str) and delta == "auto") or _is_length(delta)):
        raise ValueError(f"delta: expected a positive finite float, 'auto' or None, got {delta!r}")
    if secondary_delta is not None and not _is_length(secondary_delta):
        raise ValueError(f"secondary_delta: expected a positive finite float or None, got {secondary_delta!r}")
    if secondary_delta is not None and delta is None and coupling in MAP_LIKE:  # folded into the primary's source
        raise ValueError(f"secondary_delta: with coupling={coupling!r} it needs an unbalanced fit; set delta too")
    if epsilon is not None and not _is_length(epsilon):
        raise ValueError(f"epsilon: expected a positive finite float or None, got {epsilon!r}")
    if bandwidth is not None and not all(_is_length(h) for h in np.atleast_1d(np.asarray(bandwidth, dtype=object))):
        raise ValueError(f"bandwidth: expected a positive finite float (or one per axis) or None, got {bandwidth!r}")
    if not is_integer(n_time) or n_time < 1:
        raise ValueError(f"n_time: expected a positive integer (time steps per interval), got {n_time!r}")
    bins = np.atleast_1d(np.asarray(2 if n_bins is None else n_bins, dtype=object))  # None: a graph fit
    if bins.ndim != 1 or not all(is_integer(b) and b >= 2 for b in bins):
        raise ValueError(f"n_bins: expected an integer >= 2 grid cells per axis (or one per axis), got {n_bins!r}")
    if not is_integer(n_support) or n_support < 2:
        raise ValueError(f"n_support: expected an integer >= 2 support points, got {n_support!r}")
    if not _is_length(tol):
        raise ValueError(f"tol: expected a positive finite float, got {tol!r}")
    if not is_integer(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
    if not is_integer(seed) or seed < 0:  # scanpy's random_state=None has no equivalent: fits are reproducible
        raise ValueError(f"seed: expected an integer >= 0 (fits are reproducible; pick any number), got {seed!r}")


def _check_time_warp(time_warp, time_points) -> None:
    """Refuse a bad ``time_warp`` before the solve (a callable is tabulated once here, cheaply)."""
    if time_warp is None or (isinstance(time_warp, str) and time_warp == "auto"):
        return
    if not callable(time_warp):
        raise ValueError(f"time_warp: expected 'auto', None or a callable, got {time_warp!r}")
    warp_from_callable(time_warp, time_points)


def interval_lengths(costs, time_points) -> np.ndarray:
    """Metric length of each interval's path: ``sqrt`` of its unit-time action, from the action per unit time.

    A geodesic of unit duration has action equal to its squared length; the stored costs are divided by the
    interval's duration (see :func:`_physical`).
    """
    return np.sqrt(np.clip(np.asarray(costs, float) * np.diff(time_points), 0, None))


def _active(warp: TimeWarp) -> TimeWarp | None:
    return None if warp.is_identity else warp


def locals_params(env: dict) -> dict:
    """The call's parameters as h5ad-writable values (``None`` becomes the string ``"none"``)."""
    keys = (
        "time_key primary secondary coupling weight delta secondary_delta geometry n_dims n_bins n_time n_nodes "
        "n_neighbors bandwidth n_support epsilon kantorovich_discretization tol max_iter sinkhorn_sweeps seed "
        "growth_key growth_prior"
    ).split()
    tau = env["tau"]  # (start, end) with NaN at a hard end: h5ad stores no None inside an array
    out_tau = "none" if tau is None else np.array([np.nan if t is None else t for t in tau])
    out = {}
    for k in keys:
        v = env[k]
        # a copy of sequences and arrays: the stored parameters must not change with the caller's objects
        out[k] = "none" if v is None else (np.array(v) if isinstance(v, (tuple, list, np.ndarray)) else v)
    m = env["masses"]
    out["masses"] = m if isinstance(m, str) else "given"
    w = env["time_warp"]
    out["time_warp"] = "none" if w is None else (w if isinstance(w, str) else "callable")
    out["tau"] = out_tau
    return out


def _spec_params(specs: list[SecondarySpec]) -> dict:
    """Several secondaries' settings for ``.uns``: arrays in the order of ``secondary`` (NaN for ``None``)."""

    def floats(values):
        return np.array([np.nan if v is None else float(v) for v in values])

    return {
        "secondary": np.array([s.key for s in specs]),
        "coupling": np.array([s.coupling for s in specs]),
        "weight": floats(s.weight for s in specs),
        "secondary_delta": floats(s.delta for s in specs),
        "n_support": np.array([int(s.n_support) for s in specs]),
        "epsilon": floats(s.epsilon for s in specs),
    }


def _growth_rates(data, primary: str, key: str, time_key: str) -> np.ndarray:
    table = primary_table(data, primary)
    if key not in table.obs:
        raise ValueError(f"growth_key={key!r}: not in .obs; run sc_syncot.pp.growth_prior first or pass masses")
    rates = table.obs[key].to_numpy(dtype=float)
    if not np.all(np.isfinite(rates)):
        raise ValueError(f"growth_key={key!r}: expected finite growth rates")
    _check_rate_unit(table.uns.get(key), key, time_key)
    return rates


def _check_rate_unit(written, key: str, time_key: str) -> None:
    """Log the unit :func:`sc_syncot.pp.growth_prior` wrote the rates in; warn if that was for another time column.

    The fit uses the rates per unit of its own time key; ``.uns[key]`` says what pp.growth_prior wrote them for.
    """
    if not isinstance(written, Mapping) or "days_per_unit" not in written:
        return  # rates of another origin (tl.gaussian_growth, the user's): per unit of the time key as made
    unit = written.get("time_unit")
    unit = unit if isinstance(unit, str) else f"{float(written['days_per_unit']):.6g} days"
    logger.info("sc_syncot: growth rates .obs[%r] are per %s (pp.growth_prior's time_unit)", key, unit)
    other = written.get("time_key")
    if isinstance(other, str) and other != time_key:
        warn(
            f"growth_key={key!r}: pp.growth_prior wrote these rates per {unit}, the unit of time_key={other!r}, "
            f"and the fit reads its times from time_key={time_key!r}: the rates are used per unit of "
            f"{time_key!r}; if its unit differs, rerun pp.growth_prior with time_key={time_key!r} or its time_unit",
            UserWarning,
        )


def _physical(result: SyncOTResult, durations: np.ndarray, grid):
    """Unit-time solutions back to physical time: ``v / Delta``, ``g / Delta``, action ``/ Delta``."""
    shape = (-1,) + (1,) * (len(grid.shape) + 1)
    velocity = result.velocity / durations.reshape(*shape, 1)
    growth = result.growth / durations.reshape(shape)
    costs = {k: np.asarray(v, float) / durations for k, v in result.costs.items()}
    return velocity, growth, costs


def _summary(result: SyncOTResult, grid, tp, rel_mass, cpls: list[Coupling], params: dict) -> dict:
    durations = np.diff(tp)
    velocity, growth, costs = _physical(result, durations, grid)
    conv = {"converged": bool(result.converged), "n_iter": int(result.n_iter), "device": result.device}
    conv["history"] = {k: np.asarray(v, float) for k, v in result.history.items() if len(v)}
    out = {
        "params": params,
        "time_points": np.asarray(tp, float),
        "masses": np.asarray(rel_mass, float),
        "density": graph_fit.batched(result.rho, result).astype(np.float32),
        "velocity": velocity.astype(np.float32),
        "growth": growth.astype(np.float32),
        "costs": costs,
        "convergence": conv,
    }
    if isinstance(grid, Grid):
        out["grid"] = {"bounds": np.asarray(grid.bounds), "shape": np.asarray(grid.shape), "n_time": grid.n_time}
    infos = {cpl.name: {k: v for k, v in cpl.info.items()} for cpl in cpls}
    # Kantorovich secondaries report their induced masses in order
    solved = [c.name for c in cpls if isinstance(c.secondary, KantorovichSecondary)]
    for name, induced in zip(solved, result.secondary_density, strict=True):
        induced = np.asarray(induced, np.float32)  # induced masses on the support, (intervals, nodes, n_support)
        infos[name]["secondary_density"] = induced if induced.ndim == 3 else induced[None]
        infos[name]["entropic_cost"] = np.asarray(result.entropic_costs[name], float) / durations
    # what the path costs in each secondary, without the weight
    actions = {k: np.asarray(v, float) / durations for k, v in result.secondary_actions.items()}
    if len(cpls) > 1:
        out["couplings"] = infos
        if actions:
            out["secondary_actions"] = actions
    else:
        out["coupling"] = infos[cpls[0].name]
        if "secondary" in actions:
            out["secondary_action"] = actions["secondary"]
    return out


def _per_cell(flow: Flow, cells: CellData, cpls: list[Coupling]) -> dict[str, np.ndarray]:
    n, d = cells.x.shape
    velocity, growth = np.zeros((n, d)), np.zeros(n)
    for k, t in enumerate(cells.time_points):
        sel = cells.time == t
        velocity[sel] = flow.cell_values(flow.velocity, cells.x[sel], k)
        growth[sel] = flow.cell_growth(flow.cell_values(flow.growth, cells.x[sel], k), k)
    # on a grid a Monge map carries the velocity over; a Kantorovich kernel has no velocity
    return {"velocity": velocity, "growth": growth} | _map_velocities(cells, cpls, velocity)


def _map_velocities(cells: CellData, cpls: list[Coupling], velocity: np.ndarray) -> dict[str, np.ndarray]:
    """Each Monge secondary's velocity at the cells, ``J(x) v`` with the map's Jacobian, in the basis' own units."""
    out = {}
    for cpl in cpls:
        if cpl.monge_map is not None:
            jac = cpl.monge_map.jacobian(cells.x) / cpl.info["scale"]  # back to the secondary's own units
            out[f"velocity_{cpl.name}"] = np.einsum("nki,ni->nk", jac, velocity)
    return out


def output_names(key: str, secondary=None) -> list[tuple[str, str]]:
    """``(part, name)`` of everything :func:`syncot` writes under ``key`` into the primary table.

    One secondary (or none) writes ``f"{key}_velocity_secondary"``; several one ``f"{key}_velocity_{basis}"`` each.
    """
    keys = secondary_keys(secondary)
    names = [f"velocity_{k}" for k in keys] if len(keys) > 1 else ["velocity_secondary"]
    return [
        ("uns", key),
        ("obsm", f"{key}_velocity"),
        *(("obsm", f"{key}_{name}") for name in names),
        ("obs", f"{key}_growth"),
        ("obs", f"{key}_node"),
    ]


def _written_secondaries(table, key: str) -> list[str]:
    """The ``.obsm`` names of secondary velocities an earlier fit under ``key`` wrote (replaced by this one)."""
    earlier = table.uns.get(key)
    if not is_fit(earlier):
        return []
    return [name for part, name in output_names(key, earlier["params"].get("secondary")) if part == "obsm"][1:]


def check_outputs(data, key: str, time_key, primary, secondary, growth_key) -> None:
    """Refuse a ``key_added`` that h5ad cannot hold, or whose names would replace data the fit did not write.

    The inputs (bases, time and growth columns) are named as such; other existing entries are replaced only when
    they belong to an earlier fit under the same key.
    """
    check_key_added(key)
    if not isinstance(data, ad.AnnData) and not is_mudata(data):
        return  # read_cells names the problem
    table, name = located(data, primary)
    reads = {("obsm", name): f"the primary basis primary={primary!r}", ("obs", time_key): f"time_key={time_key!r}"}
    keys = secondary_keys(secondary)
    for sec in keys:
        sec_table, sec_name = located(data, sec)
        if sec_table is table:
            reads["obsm", sec_name] = f"the secondary basis secondary={sec!r}"
    reads["obs", growth_key or "growth_prior"] = f"the growth rates growth_key={growth_key or 'growth_prior'!r}"
    check_writes(table, output_names(key, secondary), reads, key, fit=True)
    if is_mudata(data):  # the result is also stored in the MuData's own .uns
        check_writes(data, [("uns", key)], {}, key, fit=True)


def _write(out, primary: str, key: str, summary: dict, per_cell: dict) -> None:
    table = primary_table(out, primary)
    stale = [f"{key}_velocity_secondary", *_written_secondaries(table, key)]  # before the new summary replaces it
    table.uns[key] = summary
    if is_mudata(out):
        out.uns[key] = summary
    table.obsm[f"{key}_velocity"] = per_cell["velocity"]
    table.obs[f"{key}_growth"] = per_cell["growth"]
    if "node" in per_cell:  # graph fits: each cell's state node, for push / pull and the plots
        table.obs[f"{key}_node"] = per_cell["node"]
    elif f"{key}_node" in table.obs:  # left by an earlier graph fit under the same key
        del table.obs[f"{key}_node"]
    # secondary velocities left by an earlier fit under the same key are not this one's
    for name in stale:
        if name in table.obsm:
            del table.obsm[name]
    for name, values in per_cell.items():
        if name.startswith("velocity_"):
            table.obsm[f"{key}_{name}"] = values
