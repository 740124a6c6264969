"""The computed flow as stored in ``adata.uns[key]``, and what follows from it.

Density at any time, per-cell values, fate shares carried along the flow (``push`` / ``pull``) and particle
trajectories.

All of it works on the grid arrays in ``.uns`` (h5ad-serializable), so it also runs on a file read back from
disk, and never builds anything of size cells x cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..pp.inputs import read_cells
from ..solvers import Grid
from .time_warp import TimeWarp


def read_flow(adata, key: str):
    """The result under ``key``: a :class:`Flow` (grid) or a :class:`~sc_syncot.tl.graph_flow.GraphFlow`."""
    if key not in adata.uns or "velocity" not in adata.uns[key]:
        raise ValueError(f"key={key!r}: no sc_syncot result in .uns (run sc_syncot.tl.syncot first)")
    if "graph" in adata.uns[key]:
        from .graph_flow import GraphFlow  # noqa: PLC0415 (it builds on this module)

        return GraphFlow.from_uns(adata, key)
    return Flow.from_uns(adata, key)


def result_cells(adata, params: dict, secondary: str | None = None):
    """The cells of a stored result, read as the fit read them (the grid's ``n_dims`` columns, or all on a graph)."""
    n_dims = params["n_dims"]
    n_dims = None if isinstance(n_dims, str) else int(n_dims)
    return read_cells(adata, params["time_key"], params["primary"], secondary, n_dims)


class TimeAxis:
    """Time of a solved course: observed time points, ``n_time`` steps per interval, and the optional warp.

    Shared by the grid's :class:`Flow` and the graph's :class:`~sc_syncot.tl.graph_flow.GraphFlow`; a subclass has
    ``time_points``, ``n_time``, ``warp`` and ``density`` ``(K-1, n_time + 1, ...)``.
    """

    @property
    def durations(self) -> np.ndarray:
        """Length of each interval."""
        return np.diff(self.time_points)

    def locate(self, t: float) -> tuple[int, float]:
        """Interval index and position ``s`` in ``[0, 1]`` along its path of physical time ``t``.

        ``s`` is the physical fraction of the interval, or the warp's path fraction when the flow has one.
        """
        tp = self.time_points
        if not tp[0] <= t <= tp[-1]:
            raise ValueError(
                f"time: expected a time within the observed range [{float(tp[0])}, {float(tp[-1])}], got {t}"
            )
        k = int(min(np.searchsorted(tp, t, side="right") - 1, len(tp) - 2))
        if self.warp is not None:
            return k, float(np.clip(self.warp.fraction(t, k), 0.0, 1.0))
        return k, float((t - tp[k]) / (tp[k + 1] - tp[k]))

    def physical_time(self, k: int, s: float) -> float:
        """Physical time at path fraction ``s`` of interval ``k`` (the inverse of :meth:`locate`)."""
        tp = self.time_points
        path_time = tp[k] + s * (tp[k + 1] - tp[k])
        return float(path_time if self.warp is None else self.warp.inverse(path_time))

    def density_at(self, t: float) -> np.ndarray:
        """Density (on the grid cells or graph nodes) at time ``t``, linear between time nodes."""
        k, s = self.locate(t)
        pos = s * self.n_time
        j = int(min(np.floor(pos), self.n_time - 1))
        w = pos - j
        return (1 - w) * self.density[k, j] + w * self.density[k, j + 1]

    def cell_growth(self, rate: np.ndarray, k: int) -> np.ndarray:
        """Per-cell growth rates at observed time point ``k``: the fit's rates ``rate`` there, levelled.

        A transport path between two samples loses mass early and regains it late (Wasserstein-Fisher-Rao
        geodesics do, even between equal masses), so the instantaneous rate at a time point carries the path's
        phase: negative at an interval's start, positive at its end, for every cell alike. What the samples
        determine is the population's growth over an interval, ``log(M_end / M_start) / T``. So the rates keep
        their differences between the cells of a time point, and their mean is set to the population's rate over
        the adjacent intervals (their mean at inner time points). Pure growth by a factor ``c`` over an interval
        then reads ``log(c) / T`` at both ends, the constant rate of exponential growth, where the geodesic's
        rate runs from ``2 (sqrt(c) - 1) / T`` to ``2 (1 - 1 / sqrt(c)) / T``. A balanced fit has no growth: 0.
        """
        rate = np.asarray(rate, float)
        if not np.any(self.growth):
            return rate
        mass = self.density.sum(axis=tuple(range(2, self.density.ndim)), dtype=float)  # (K-1, n_time + 1)
        population = np.log(np.maximum(mass[:, -1], 1e-300) / np.maximum(mass[:, 0], 1e-300)) / self.durations
        return rate - rate.mean() + np.mean(population[max(k - 1, 0) : k + 1])

    def at_time_point(self, k: int) -> list[tuple[int, int]]:
        """(interval, time centre) pairs next to observed time point ``k``.

        The last centre of the interval that ends there and the first of the interval that starts there.
        """
        out = []
        if k > 0:
            out.append((k - 1, self.n_time - 1))
        if k < len(self.time_points) - 1:
            out.append((k, 0))
        return out


@dataclass
class Flow(TimeAxis):
    """Grid arrays of a solved time course, in physical time units."""

    grid: Grid
    time_points: np.ndarray  # (K,)
    density: np.ndarray  # (K-1, n_time+1, *shape)
    velocity: np.ndarray  # (K-1, n_time, *shape, d), primary units per unit of time
    growth: np.ndarray  # (K-1, n_time, *shape), per unit of time
    warp: TimeWarp | None = None  # physical time -> path time; None: constant speed within each interval

    @classmethod
    def from_uns(cls, adata, key: str) -> Flow:
        """Read ``adata.uns[key]`` written by :func:`sc_syncot.tl.syncot`."""
        if key not in adata.uns or "velocity" not in adata.uns[key]:
            raise ValueError(f"key={key!r}: no sc_syncot result in .uns (run sc_syncot.tl.syncot first)")
        u = adata.uns[key]
        g = u["grid"]
        warp = TimeWarp.from_uns(u["time_warp"]) if "time_warp" in u else None
        grid = Grid(np.asarray(g["bounds"]), tuple(int(n) for n in g["shape"]), int(g["n_time"]))
        return cls(
            grid,
            np.asarray(u["time_points"], float),
            np.asarray(u["density"], float),
            np.asarray(u["velocity"], float),
            np.asarray(u["growth"], float),
            None if warp is None or warp.is_identity else warp,
        )

    def mass(self, density: np.ndarray) -> float:
        """Total mass of a grid density."""
        return float(self.grid.mass(density))

    @property
    def n_time(self) -> int:
        """Time steps per interval."""
        return self.grid.n_time

    def index_coords(self, points: np.ndarray) -> np.ndarray:
        """Fractional cell-centre indices ``(d, n)`` of ``points`` for :func:`scipy.ndimage.map_coordinates`."""
        lo = np.array([b[0] for b in self.grid.bounds])
        return ((points - lo) / np.array(self.grid.spacing) - 0.5).T

    def sample(self, field: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Multilinear interpolation of a scalar grid field at ``points`` (edge values held outside)."""
        return ndimage.map_coordinates(field, self.index_coords(points), order=1, mode="nearest")

    def sample_vector(self, field: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Same for a ``(*shape, d)`` vector field; returns ``(n, d)``."""
        return np.stack([self.sample(field[..., i], points) for i in range(field.shape[-1])], axis=1)

    def cell_values(self, field: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
        """A centred field ``(K-1, n_time, *shape[, d])`` at cells observed at time point ``k``.

        The mean over the adjacent time centres.
        """
        vector = field.ndim == self.grid.ndim + 3
        sampler = self.sample_vector if vector else self.sample
        vals = [sampler(field[i, j], points) for i, j in self.at_time_point(k)]
        return np.mean(vals, axis=0)

    def step(self, points: np.ndarray, k: int, j: int, direction: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Midpoint (RK2) step of particles over time step ``j`` of interval ``k``.

        Returns the new points and the integrated growth ``int g dt`` along the step.
        """
        dt = self.durations[k] / self.n_time * direction
        v = self.velocity[k, j]
        mid = points + 0.5 * dt * self.sample_vector(v, points)
        new = points + dt * self.sample_vector(v, mid)
        new = self.clip(new)
        return new, dt * self.sample(self.growth[k, j], mid)

    def clip(self, points: np.ndarray) -> np.ndarray:
        """Keep particles inside the box (the flow has no flux through its boundary)."""
        lo = np.array([b[0] for b in self.grid.bounds])
        hi = np.array([b[1] for b in self.grid.bounds])
        return np.clip(points, lo, hi)

    def advect_share(self, share: np.ndarray, k: int, direction: int) -> np.ndarray:
        """Carry a share field through interval ``k`` (forward: ``direction=1``; backward: ``-1``).

        A share (fraction of the local mass that belongs to a group) obeys ``d_t s + v . grad s = 0``: growth
        multiplies a group's mass and the total alike, so it cancels. Semi-Lagrangian steps: the value at ``x``
        after a step is the value before it at the foot of the characteristic through ``x``.
        """
        pts = self.grid.points().reshape(-1, self.grid.ndim)
        order = range(self.n_time) if direction > 0 else reversed(range(self.n_time))
        for j in order:
            foot, _ = self.step(pts, k, j, direction=-direction)
            share = self.sample(share, foot).reshape(self.grid.shape)
        return share
