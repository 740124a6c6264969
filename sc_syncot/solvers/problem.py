"""Problem definitions: what to solve (Mathematics page, sections 1-2).

``SyncOTProblem`` holds pure arrays: the grid, the endpoint densities (optionally a batch of them, one per
interval of a time course), the growth scale ``delta`` and the secondary spaces. It knows nothing of how the
problem is solved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .graph import Graph
from .grid import Grid
from .kantorovich import KantorovichSecondary

MapLike = Callable[[np.ndarray], np.ndarray]


def _finite_array(x, name: str) -> np.ndarray:
    arr = np.array(x, dtype=float)  # a private copy: later changes to the caller's array do not leak in
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, found {int(np.sum(~np.isfinite(arr)))} NaN/inf entries")
    return arr


def _check_delta(delta, name: str) -> float | None:
    if delta is None:
        return None
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"{name}: expected a positive finite float or None, got {delta}")
    return delta


def jacobian_of_map(t_map: MapLike, grid: Grid, rel_step: float = 1e-6) -> np.ndarray:
    """Jacobian ``(*shape, dY, d)`` of a map ``T: (n, d) -> (n, dY)`` at the cell centres, by central differences.

    The step is ``rel_step`` times each axis' extent (second-order accurate, so ~1e-12 relative error on smooth
    maps, well below the discretization error of the grid).
    """
    pts = grid.points().reshape(-1, grid.ndim)
    cols = []
    for i, (lo, hi) in enumerate(grid.bounds):
        step = rel_step * (hi - lo)
        plus, minus = pts.copy(), pts.copy()
        plus[:, i] += step
        minus[:, i] -= step
        fp = np.asarray(t_map(plus), dtype=float)
        fm = np.asarray(t_map(minus), dtype=float)
        if fp.ndim != 2 or fp.shape[0] != pts.shape[0]:
            raise ValueError(f"jacobian: the map must send (n, {grid.ndim}) points to (n, dY), got {fp.shape}")
        cols.append((fp - fm) / (2 * step))
    jac = np.stack(cols, axis=-1)  # (n, dY, d)
    return _finite_array(jac, "jacobian").reshape(*grid.shape, jac.shape[1], grid.ndim)


@dataclass(frozen=True)
class MongeSecondary:
    """A secondary space linked to the primary one by a smooth map ``T`` (Monge type, Mathematics page, section 2).

    The induced dynamics ``rho_Y = T#rho``, ``v_Y = J v``, ``g_Y = g`` cost ``weight`` times their action, which
    folds into the primary action as the metric ``G = I + weight J^T J`` and ``alpha = delta_X^2 +
    weight delta_Y^2``.

    Parameters
    ----------
    jacobian
        On a :class:`Grid`: the Jacobian ``J`` of ``T`` at the grid's cell centres, ``(*shape, dY, d)`` or ``(B,
        *shape, dY, d)`` (one per problem of a batch). On a :class:`Graph`: the nodes' secondary coordinates ``T(x_i)``,
        ``(n, dY)`` or ``(B, n, dY)``; each edge then costs ``(1 + weight |y_j - y_i|^2 / l_e^2) m_e^2 / rho_e``
        (Mathematics page, section 7). On both: the map ``T`` itself, a callable ``(n, d) -> (n, dY)``, differentiated
        numerically on the grid or evaluated at the nodes.
    weight
        ``lambda >= 0``.
    delta
        Growth length scale ``delta_Y`` of the secondary space; ``None`` takes the problem's ``delta``.
    """

    jacobian: np.ndarray | MapLike
    weight: float = 1.0
    delta: float | None = None
    name: str | None = None

    def __post_init__(self):
        weight = float(self.weight)
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight: expected a finite float >= 0, got {self.weight}")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "delta", _check_delta(self.delta, "delta"))
        if not callable(self.jacobian):
            object.__setattr__(self, "jacobian", _finite_array(self.jacobian, "jacobian"))

    def coordinates_on(self, graph: Graph, batch: int) -> np.ndarray:
        """The nodes' secondary coordinates as an array ``(B or 1, n, dY)``, validated against the graph."""
        y = self.jacobian(graph.points) if callable(self.jacobian) else self.jacobian
        y = _finite_array(y, "jacobian")
        if y.ndim == 2:
            y = y[None]
        n = graph.n_nodes
        if y.ndim != 3 or y.shape[1] != n:
            expected = f"({n}, dY) or ({batch}, {n}, dY)"
            raise ValueError(f"jacobian: on a graph, expected node coordinates {expected}, got {y.shape}")
        if y.shape[0] not in (1, batch):
            raise ValueError(f"jacobian: batch size {y.shape[0]} does not match the {batch} problems")
        return y

    def on(self, geometry, batch: int) -> np.ndarray:
        """:meth:`jacobian_on` on a grid, :meth:`coordinates_on` on a graph."""
        if isinstance(geometry, Graph):
            return self.coordinates_on(geometry, batch)
        return self.jacobian_on(geometry, batch)

    def jacobian_on(self, grid: Grid, batch: int) -> np.ndarray:
        """``J`` as an array ``(B or 1, *shape, dY, d)``, validated against the grid."""
        jac = jacobian_of_map(self.jacobian, grid) if callable(self.jacobian) else self.jacobian
        n = grid.ndim + 2
        if jac.ndim == n:
            jac = jac[None]
        expected = f"(*{grid.shape}, dY, {grid.ndim}) or ({batch}, *{grid.shape}, dY, {grid.ndim})"
        if jac.ndim != n + 1 or jac.shape[1:-2] != grid.shape or jac.shape[-1] != grid.ndim:
            raise ValueError(f"jacobian: expected shape {expected}, got {np.shape(jac)}")
        if jac.shape[0] not in (1, batch):
            raise ValueError(f"jacobian: batch size {jac.shape[0]} does not match the {batch} problems")
        return jac


@dataclass(frozen=True, init=False)
class SyncOTProblem:
    """Unbalanced (or balanced) dynamic transport on a grid or a graph, synchronized with secondary spaces.

    Minimizes over ``(rho, m, zeta)`` with ``d_t rho + div m = zeta``, ``rho(0) = rho0``, ``rho(1) = rho1``,
    no flux through the box boundary,

        int_0^1 int  (m^T G(x) m + alpha zeta^2) / rho  dx dt,
        G = M(x) + sum_k lambda_k J_k^T J_k,   alpha = delta^2 + sum_k lambda_k delta_k^2,

    where ``M`` is the primary metric (identity unless given). ``delta=None`` is balanced transport
    (``zeta = 0``, squared W2 when ``G = I``); a float is the Wasserstein-Fisher-Rao action ``WFR_delta^2``.

    On a :class:`Graph` the same problem lives on nodes and edges (Mathematics page, section 7): node masses, edge
    momenta, node sources, the action ``sum_k dt [sum_e omega_e g_e m_e^2 / rho_e + sum_i alpha zeta_i^2 / rho_i]``.

    Parameters
    ----------
    geometry
        The space-time :class:`Grid` or :class:`Graph`.
    rho0, rho1
        On a grid: densities at the cell centres, ``grid.shape`` or ``(B, *grid.shape)`` for a batch of ``B``
        problems on the same grid (mass = ``sum * grid.cell_volume``). On a graph: masses per node, ``(n,)`` or
        ``(B, n)``.
    delta
        Growth length scale ``delta_X``, or ``None`` for balanced transport.
    secondaries
        :class:`MongeSecondary` and :class:`~sc_syncot.solvers.kantorovich.KantorovichSecondary` terms, mixed
        freely; several add up. Monge terms fold into ``G`` and ``alpha``; each Kantorovich term adds
        ``lambda sum_k HK^2(K^T rho_k, K^T rho_{k+1}) / dt`` (Mathematics page, section 2). A Kantorovich secondary with
        ``delta=None`` on an unbalanced problem takes the problem's ``delta`` (Hellinger-Kantorovich, as
        :class:`MongeSecondary` does): the balanced W2 secondary needs equal masses at consecutive time nodes, which
        growth breaks. On a balanced problem it is the balanced W2 secondary.
    metric
        Optional primary metric field ``M(x)``, ``(*shape, d, d)``, symmetric positive definite everywhere (grids only).
    growth_prior
        Unbalanced problems: prior growth rates ``g_0`` (per unit of the problem's time, which runs over ``[0, 1]``),
        shaped like ``rho0``: per grid cell, ``grid.shape`` or ``(B, *grid.shape)``; per node, ``(n,)`` or ``(B, n)``.
        The growth term becomes ``delta^2 int (g - g_0)^2 rho`` instead of ``delta^2 int g^2 rho`` (and so do the
        Monge secondaries' growth terms, whose rate is the primary one): growth costs by its departure from the
        prior (rates from proliferation and apoptosis genes, as Waddington-OT uses them), so that where the data
        allow either, the fit keeps the prior's rates instead of the most uniform ones. ``None``: ``g_0 = 0``.
    tau
        Soft endpoints (:mod:`.endpoints`): ``None`` (the default) fixes ``rho(0) = rho0`` and ``rho(1) = rho1``; a
        positive ``tau`` replaces each by the penalty ``tau KL(rho(e) | rho_e)`` (``KL(p|q) = sum p log(p/q) - p +
        q``, integrated over the cells), so the path need not reproduce noise and sampling in the observed densities.
        ``(tau_start, tau_end)`` sets the ends apart (``None`` for a hard one); each may also be an array of ``B``
        values, one per problem of a batch. Large ``tau`` tends to the hard constraint. The objective is the
        action plus these penalties; with ``delta=None`` the masses need not agree (the path's mass is chosen).

    References
    ----------
    J.-D. Benamou, Y. Brenier (2000); L. Chizat, G. Peyre, B. Schmitzer, F.-X. Vialard, "An interpolating distance
    between optimal transport and Fisher-Rao metrics", Found. Comput. Math. (2018); Z. Cang, Y. Zhao,
    "Synchronized optimal transport for joint modeling of dynamics across multiple spaces" (2024).
    """

    geometry: Grid | Graph
    rho0: np.ndarray
    rho1: np.ndarray
    delta: float | None = None
    secondaries: Sequence[MongeSecondary | KantorovichSecondary] = ()
    metric: np.ndarray | None = None
    growth_prior: np.ndarray | None = None
    tau: tuple = (None, None)
    _jacobians: tuple = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        geometry: Grid | Graph | None = None,
        rho0: np.ndarray | None = None,
        rho1: np.ndarray | None = None,
        delta: float | None = None,
        secondaries: Sequence[MongeSecondary | KantorovichSecondary] = (),
        metric: np.ndarray | None = None,
        *,
        grid: Grid | None = None,
        growth_prior: np.ndarray | None = None,
        tau=None,
    ):
        # ``grid=`` is the keyword from when grids were the only geometry; it still works
        if grid is not None and geometry is not None:
            raise ValueError("geometry, grid: expected one of them, got both")
        values = {"geometry": grid if geometry is None else geometry, "rho0": rho0, "rho1": rho1}
        for name, value in values.items():
            if value is None:
                raise ValueError(f"{name}: required")
        others = {
            "delta": delta, "secondaries": secondaries, "metric": metric, "growth_prior": growth_prior, "tau": tau
        }  # fmt: skip
        for name, value in (values | others).items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __post_init__(self):
        grid = self.geometry
        if not isinstance(grid, (Grid, Graph)):
            raise ValueError(f"geometry: expected a Grid or a Graph, got {type(grid).__name__}")
        rho0 = self._density(self.rho0, "rho0")
        rho1 = self._density(self.rho1, "rho1")
        if rho0.shape != rho1.shape:
            raise ValueError(f"rho0, rho1: expected the same batch size, got {rho0.shape[0]} and {rho1.shape[0]}")
        delta = _check_delta(self.delta, "delta")
        tau = check_tau(self.tau, rho0.shape[0])
        m0, m1 = grid.mass(rho0), grid.mass(rho1)
        if np.any(m0 <= 0) or np.any(m1 <= 0):
            raise ValueError("rho0, rho1: expected a positive mass in every problem")
        soft = any(t is not None for t in tau)  # a soft end chooses the path's mass: balanced needs no equal masses
        if delta is None and not soft and not np.allclose(m0, m1, rtol=1e-6, atol=0):
            raise ValueError(
                f"rho0, rho1: balanced transport (delta=None) needs equal masses, got {m0} and {m1}; "
                "normalize the densities or pass delta for unbalanced transport"
            )
        if delta is None and not soft and isinstance(grid, Graph):
            _check_component_masses(grid, rho0, rho1)
        secondaries = tuple(self._secondary(s, delta) for s in self.secondaries)
        jacobians = tuple(s.on(grid, rho0.shape[0]) for s in secondaries if isinstance(s, MongeSecondary))
        metric = self.metric
        if metric is not None and isinstance(grid, Graph):
            raise ValueError("metric: a primary metric field is supported on grids only; on a graph, set edge_weights")
        if metric is not None:
            metric = _finite_array(metric, "metric")
            if metric.shape != (*grid.shape, grid.ndim, grid.ndim):
                raise ValueError(f"metric: expected shape {(*grid.shape, grid.ndim, grid.ndim)}, got {metric.shape}")
            if not np.allclose(metric, np.swapaxes(metric, -1, -2), rtol=1e-10, atol=1e-12):
                raise ValueError("metric: expected a symmetric matrix at every cell")
            if np.linalg.eigvalsh(metric).min() <= 0:
                raise ValueError("metric: expected a positive definite matrix at every cell")
        object.__setattr__(self, "growth_prior", self._growth_prior(delta, rho0.shape[0]))
        object.__setattr__(self, "rho0", rho0)
        object.__setattr__(self, "rho1", rho1)
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "secondaries", secondaries)
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "tau", tau)
        object.__setattr__(self, "_jacobians", jacobians)

    def _growth_prior(self, delta: float | None, batch: int) -> np.ndarray | None:
        """``growth_prior`` checked and shaped ``(B | 1, *shape)``: rates per grid cell or per node, as ``rho0``."""
        prior = self.growth_prior
        if prior is None:
            return None
        if delta is None:
            raise ValueError("growth_prior: a growth prior needs an unbalanced problem (set delta)")
        prior = _finite_array(prior, "growth_prior")
        shape = self.geometry.shape
        if prior.shape == shape:
            prior = prior[None]
        if prior.shape[1:] != shape or prior.shape[0] not in (1, batch):
            where = "node" if isinstance(self.geometry, Graph) else "grid cell"
            dims = ", ".join(str(n) for n in shape)
            raise ValueError(
                f"growth_prior: expected {shape} or ({batch}, {dims}) rates per {where}, got {prior.shape}"
            )
        return prior

    def _secondary(self, s, delta: float | None):
        """Validate one secondary against the problem; resolve a Kantorovich ``delta=None`` (see the class)."""
        if isinstance(s, MongeSecondary):
            if delta is None and s.delta is not None:
                raise ValueError("secondaries: a secondary delta needs an unbalanced problem (set delta)")
            return s
        if not isinstance(s, KantorovichSecondary):
            raise ValueError(
                f"secondaries: expected MongeSecondary or KantorovichSecondary entries, got {type(s).__name__}"
            )
        n_cells = self.geometry.n_cells
        if s.kernel.shape[0] != n_cells:
            where = "node" if isinstance(self.geometry, Graph) else f"grid cell (grid shape {self.geometry.shape})"
            raise ValueError(f"kernel: expected {n_cells} rows, one per {where}, got {s.kernel.shape[0]}")
        if s.delta is None and delta is not None:
            s = replace(s, delta=delta)
        return s

    def _density(self, rho, name: str) -> np.ndarray:
        rho = _finite_array(rho, name)
        shape = self.geometry.shape
        if rho.shape == shape:
            rho = rho[None]
        if rho.ndim != len(shape) + 1 or rho.shape[1:] != shape:
            kind = "graph's nodes" if isinstance(self.geometry, Graph) else "grid"
            raise ValueError(f"{name}: expected shape {shape} or (B, *{shape}) to match the {kind}, got {rho.shape}")
        if np.any(rho < 0):
            raise ValueError(f"{name}: expected nonnegative densities, min is {rho.min():.3g}")
        return rho

    @property
    def grid(self) -> Grid | Graph:
        """The geometry (the name from when grids were the only one)."""
        return self.geometry

    @property
    def on_graph(self) -> bool:
        """Whether the geometry is a :class:`Graph`."""
        return isinstance(self.geometry, Graph)

    @property
    def batch_size(self) -> int:
        """Number of problems ``B`` solved together."""
        return self.rho0.shape[0]

    @property
    def soft_ends(self) -> tuple[bool, bool]:
        """Whether the start and the end are soft (``tau`` set for them)."""
        return self.tau[0] is not None, self.tau[1] is not None

    @property
    def balanced(self) -> bool:
        """Whether the source is fixed at zero."""
        return self.delta is None

    @property
    def monge_secondaries(self) -> tuple[tuple[int, MongeSecondary], ...]:
        """``(index, secondary)`` of the Monge secondaries (index in :attr:`secondaries`)."""
        return tuple((k, s) for k, s in enumerate(self.secondaries) if isinstance(s, MongeSecondary))

    @property
    def kantorovich_secondaries(self) -> tuple[tuple[int, KantorovichSecondary], ...]:
        """``(index, secondary)`` of the Kantorovich secondaries (index in :attr:`secondaries`)."""
        return tuple((k, s) for k, s in enumerate(self.secondaries) if isinstance(s, KantorovichSecondary))

    @property
    def alpha(self) -> float | None:
        """Weight ``alpha`` of ``zeta^2 / rho`` in the folded action (``None`` when balanced)."""
        if self.delta is None:
            return None
        monge = [s for _, s in self.monge_secondaries]
        deltas = [self.delta if s.delta is None else s.delta for s in monge]
        return self.delta**2 + sum(s.weight * dy**2 for s, dy in zip(monge, deltas, strict=True))

    def jacobians(self) -> tuple[np.ndarray, ...]:
        """Each Monge secondary's ``J``, ``(B or 1, *shape, dY, d)``; on a graph, node coordinates ``(B|1, n, dY)``."""
        return self._jacobians

    def edge_stretch(self) -> tuple[np.ndarray, ...]:
        """On a graph, each Monge secondary's ``|y_j - y_i|^2 / l_e^2`` per edge, ``(B or 1, E)``."""
        g = self.geometry
        return tuple(
            np.sum((y[:, g.edges[:, 1]] - y[:, g.edges[:, 0]]) ** 2, axis=-1) / g.lengths**2 for y in self._jacobians
        )

    def metric_field(self) -> np.ndarray:
        """The folded metric ``G(x)``, ``(B or 1, *shape, d, d)`` (grids only)."""
        d = self.grid.ndim
        base = np.broadcast_to(np.eye(d), (*self.grid.shape, d, d)) if self.metric is None else self.metric
        g = base[None].copy()
        for (_, s), jac in zip(self.monge_secondaries, self._jacobians, strict=True):
            g = g + s.weight * np.einsum("...ki,...kj->...ij", jac, jac)
        return g

    def masses(self) -> tuple[np.ndarray, np.ndarray]:
        """Masses of ``rho0`` and ``rho1`` per problem."""
        return self.grid.mass(self.rho0), self.grid.mass(self.rho1)


def check_tau(tau, batch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``tau`` as ``(start, end)``, each ``None`` or positive finite weights ``(B | 1,)``."""
    if tau is None:
        return None, None
    pair = tuple(tau) if isinstance(tau, (tuple, list)) else (tau, tau)
    if len(pair) != 2:
        raise ValueError(f"tau: expected None, a positive float or a pair (tau_start, tau_end), got {tau!r}")
    out = []
    for value in pair:
        if value is None:
            out.append(None)
            continue
        if isinstance(value, (bool, str)) or np.asarray(value).dtype.kind not in "iuf":
            raise ValueError(f"tau: expected positive finite numbers or None (a hard end), got {value!r}")
        arr = np.atleast_1d(np.asarray(value, dtype=float)).copy()
        if arr.ndim != 1 or arr.shape[0] not in (1, batch):
            raise ValueError(f"tau: expected a number or {batch} values (one per problem), got shape {arr.shape}")
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"tau: expected positive finite numbers or None (a hard end), got {value!r}")
        out.append(arr)
    return out[0], out[1]


def _check_component_masses(graph: Graph, rho0: np.ndarray, rho1: np.ndarray) -> None:
    """Balanced transport cannot move mass between connected components: their masses must agree at both ends."""
    labels = graph.components()
    n_comp = labels.max() + 1
    if n_comp == 1:
        return
    m0 = np.stack([np.bincount(labels, weights=r, minlength=n_comp) for r in rho0])
    m1 = np.stack([np.bincount(labels, weights=r, minlength=n_comp) for r in rho1])
    if not np.allclose(m0, m1, rtol=1e-6, atol=1e-12 * max(m0.max(), 1e-300)):
        raise ValueError(
            f"rho0, rho1: the graph has {n_comp} connected components and balanced transport (delta=None) keeps "
            f"each one's mass, but they differ (masses per component {m0[0].round(6).tolist()} and "
            f"{m1[0].round(6).tolist()}); connect the graph (more neighbours) or pass delta for unbalanced transport"
        )
