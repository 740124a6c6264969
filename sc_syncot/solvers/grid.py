"""Regular space-time grid on a box (Mathematics page, section 3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def is_integer(value) -> bool:
    """A whole number given as an int or a numpy integer (not a float, not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Grid:
    """A box in R^d (d = 1, 2 or 3) cut into ``shape`` cells, with ``n_time`` steps on unit time.

    Parameters
    ----------
    bounds
        One ``(low, high)`` pair per space dimension.
    shape
        Number of cells per space dimension.
    n_time
        Number of time steps ``Nt`` on ``[0, 1]``; densities live on the ``Nt + 1`` time nodes.

    Examples
    --------
    >>> g = Grid([(0, 1), (0, 2)], (4, 8), n_time=16)
    >>> g.points().shape, g.cell_volume, g.dt
    ((4, 8, 2), 0.0625, 0.0625)
    """

    bounds: tuple[tuple[float, float], ...]
    shape: tuple[int, ...]
    n_time: int

    def __init__(self, bounds: Sequence[Sequence[float]], shape: Sequence[int] | int, n_time: int):
        bounds = tuple((float(lo), float(hi)) for lo, hi in np.asarray(bounds, dtype=float).reshape(-1, 2))
        if np.ndim(shape) == 0:
            shape = (shape,) * len(bounds)
        if not all(is_integer(n) for n in shape):  # int() would truncate 16.5 silently
            raise ValueError(f"shape: expected whole numbers of cells, got {tuple(shape)}")
        shape = tuple(int(n) for n in shape)
        if not 1 <= len(bounds) <= 3:
            raise ValueError(f"bounds: expected 1 to 3 (low, high) pairs, got {len(bounds)}")
        if len(shape) != len(bounds):
            raise ValueError(f"shape: expected {len(bounds)} entries (one per pair in bounds), got {shape}")
        if any(n < 2 for n in shape):
            raise ValueError(f"shape: expected at least 2 cells per dimension, got {shape}")
        if any(not (np.isfinite(lo) and np.isfinite(hi) and hi > lo) for lo, hi in bounds):
            raise ValueError(f"bounds: expected finite pairs with low < high, got {bounds}")
        if not is_integer(n_time) or n_time < 1:
            raise ValueError(f"n_time: expected a positive integer, got {n_time!r}")
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "n_time", int(n_time))

    @property
    def ndim(self) -> int:
        """Number of space dimensions ``d``."""
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Cell sizes ``h_i``."""
        return tuple((hi - lo) / n for (lo, hi), n in zip(self.bounds, self.shape, strict=True))

    @property
    def cell_volume(self) -> float:
        """Volume of one cell, ``prod_i h_i``: a density's mass is ``sum(rho) * cell_volume``."""
        return float(np.prod(self.spacing))

    @property
    def dt(self) -> float:
        """Time step ``1 / n_time``."""
        return 1.0 / self.n_time

    @property
    def n_cells(self) -> int:
        """Number of space cells."""
        return int(np.prod(self.shape))

    def axes(self) -> list[np.ndarray]:
        """Cell-centre coordinates along each axis."""
        spec = zip(self.bounds, self.spacing, self.shape, strict=True)
        return [lo + h * (np.arange(n) + 0.5) for (lo, _), h, n in spec]

    def points(self) -> np.ndarray:
        """Cell centres, an array ``(*shape, d)``; ``points().reshape(-1, d)`` is the C-order flattening."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"), axis=-1)

    def times(self) -> np.ndarray:
        """The ``n_time + 1`` time nodes ``k / n_time``."""
        return np.linspace(0.0, 1.0, self.n_time + 1)

    def mass(self, density: np.ndarray) -> np.ndarray:
        """Mass of a density (or of a stack of densities over the trailing ``shape`` axes)."""
        density = np.asarray(density)
        return density.sum(axis=tuple(range(density.ndim - self.ndim, density.ndim))) * self.cell_volume
