"""Primary-space adapters: a grid over a 1-3 D basis, per-time-point densities on it, and masses per time point.

Densities are binned kernel density estimates (Silverman, "Density estimation", 1986, section 3.5): cells are
spread linearly onto the grid's nodes and the histogram is smoothed with a Gaussian filter, so the cost is
``O(n_cells + n_grid_cells)`` rather than ``O(n_cells * n_grid_cells)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from ..solvers import Grid


def primary_grid(coords: np.ndarray, n_bins: int | Sequence[int] = 64, n_time: int = 16, margin: float = 0.15) -> Grid:
    """A grid over the box that holds ``coords``, widened by ``margin`` times its extent on each side.

    The margin leaves room for the smoothing of :func:`kde_densities` and for paths that bulge outside the
    observed cloud; the solver's no-flux boundary then does not bend them.

    Parameters
    ----------
    coords
        ``(n_cells, d)`` cell coordinates, ``d`` in 1..3.
    n_bins
        Cells per axis (one number for all, or one per axis).
    n_time
        Time steps per interval.
    margin
        Fraction of each axis' extent added on both sides.
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or not 1 <= coords.shape[1] <= 3:
        raise ValueError(f"coords: expected an (n_cells, d) array with d in 1..3, got shape {coords.shape}")
    lo, hi = coords.min(0), coords.max(0)
    extent = np.where(hi > lo, hi - lo, 1.0)
    bounds = np.stack([lo - margin * extent, hi + margin * extent], axis=1)
    return Grid(bounds, n_bins, n_time)


def scott_bandwidth(coords: np.ndarray, n: int | None = None) -> np.ndarray:
    """Scott's rule per axis, ``h_i = sigma_i n^{-1 / (d + 4)}`` (Scott, "Multivariate density estimation", 1992).

    ``n`` defaults to the number of points.
    """
    n = len(coords) if n is None else n
    d = coords.shape[1]
    sigma = coords.std(0, ddof=1) if n > 1 else np.ones(d)
    return np.where(sigma > 0, sigma, 1.0) * n ** (-1.0 / (d + 4))


def _linear_binning(coords: np.ndarray, weights: np.ndarray, grid: Grid) -> np.ndarray:
    """Spread each point's weight onto the 2^d nearest cell centres, in proportion to proximity."""
    lo = np.array([b[0] for b in grid.bounds])
    h = np.array(grid.spacing)
    pos = (coords - lo) / h - 0.5  # in cell-centre index units
    base = np.floor(pos).astype(int)
    frac = pos - base
    hist = np.zeros(grid.shape)
    shape = np.array(grid.shape)
    for corner in np.ndindex(*([2] * grid.ndim)):
        c = np.array(corner)
        idx = np.clip(base + c, 0, shape - 1)  # points in the margin half-cells go to the edge cell
        w = weights * np.prod(np.where(c == 1, frac, 1 - frac), axis=1)
        np.add.at(hist, tuple(idx.T), w)
    return hist


def kde_density(
    coords: np.ndarray,
    grid: Grid,
    *,
    mass: float = 1.0,
    bandwidth: float | np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Binned Gaussian kernel density estimate of ``coords`` on the grid's cell centres, with total ``mass``.

    Parameters
    ----------
    coords
        ``(n, d)`` points.
    grid
        Where to evaluate.
    mass
        Total mass of the result (``sum * grid.cell_volume``).
    bandwidth
        Standard deviation of the Gaussian kernel per axis (a number or ``(d,)``); default
        :func:`scott_bandwidth`, and never below one cell (a narrower kernel only resolves the binning).
    weights
        Nonnegative per-point weights (default uniform).
    """
    hist = _smoothed_histogram(coords, grid, bandwidth, weights)
    total = hist.sum() * grid.cell_volume
    if total <= 0:
        raise ValueError("coords: the density vanishes on the grid (points far outside its bounds?)")
    return hist * (mass / total)


def kde_rates(
    coords: np.ndarray,
    rates: np.ndarray,
    grid: Grid,
    *,
    bandwidth: float | np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Per-point rates smoothed onto the grid as :func:`kde_density` smooths the points: their kernel-weighted mean.

    At each cell centre, ``sum_c w_c K(x - x_c) g_c / sum_c w_c K(x - x_c)`` (Nadaraya-Watson with the binned
    Gaussian kernel of :func:`kde_density`, ``w_c`` the points' masses there), so a cell's rate is the mean of
    the rates of the points whose density it holds. Cells beyond the kernel's reach (``truncate=4`` standard
    deviations), where there is no density to weigh them, take the weighted mean of all the rates.

    Parameters
    ----------
    coords
        ``(n, d)`` points.
    rates
        ``(n,)`` finite values, one per point (e.g. growth rates).
    grid
        Where to evaluate.
    bandwidth, weights
        As in :func:`kde_density`.

    Returns
    -------
    np.ndarray
        ``grid.shape``.
    """
    g = np.asarray(rates, dtype=float)
    if g.shape != (len(coords),) or not np.all(np.isfinite(g)):
        raise ValueError(f"rates: expected {len(coords)} finite values, one per point, got shape {g.shape}")
    w = np.ones(len(coords)) if weights is None else np.asarray(weights, dtype=float)
    mass = _smoothed_histogram(coords, grid, bandwidth, w)
    rated = _smoothed_histogram(coords, grid, bandwidth, w * g, signed=True)
    # the ratio of two positive-kernel sums is a mean of the rates however small both are, down to underflow
    held = mass > 1e-12 * mass.max()
    return np.where(held, rated / np.where(held, mass, 1.0), float(np.sum(w * g) / np.sum(w)))


def _smoothed_histogram(coords, grid: Grid, bandwidth, weights, signed: bool = False) -> np.ndarray:
    """The binned, Gaussian-filtered sum of ``weights`` at the cell centres (checked as :func:`kde_density` states).

    ``signed``: the weights may be negative (a weighted sum of rates, not a mass).
    """
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != grid.ndim:
        raise ValueError(f"coords: expected (n, {grid.ndim}) points, got shape {coords.shape}")
    if len(coords) == 0:
        raise ValueError("coords: expected at least one point")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coords: expected finite coordinates, found NaN or inf")
    w = np.ones(len(coords)) if weights is None else np.asarray(weights, dtype=float)
    if not signed and (w.shape != (len(coords),) or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0):
        raise ValueError("weights: expected finite nonnegative weights, one per point, with a positive sum")
    if bandwidth is None:
        h = scott_bandwidth(coords)
    else:
        h = np.asarray(bandwidth, float)
        if h.ndim > 1 or h.size not in (1, grid.ndim) or not np.all(np.isfinite(h)) or np.any(h <= 0):
            raise ValueError(
                f"bandwidth: expected a positive finite number or {grid.ndim} of them (one per axis), got {bandwidth!r}"
            )
        h = np.broadcast_to(h, (grid.ndim,))
    spacing = np.array(grid.spacing)
    sigma_cells = np.maximum(h / spacing, 1.0)
    return ndimage.gaussian_filter(_linear_binning(coords, w, grid), sigma_cells, mode="constant", truncate=4.0)


def time_point_masses(
    times: np.ndarray,
    counts: np.ndarray,
    masses: str | Sequence[float] | Mapping | np.ndarray = "equal",
    growth_rates: np.ndarray | None = None,
    cell_times: np.ndarray | None = None,
) -> np.ndarray:
    """Relative population size at each observed time point, with mean 1.

    Parameters
    ----------
    times
        Sorted observed times ``(K,)``.
    counts
        Cells per time point ``(K,)``.
    masses
        ``"equal"``: the same at every time (balanced totals; growth still redistributes mass locally);
        ``"counts"``: proportional to the cell counts (when sampling is proportional to population size);
        ``"growth_prior"``: chained from per-cell growth rates, ``M_{k+1} = M_k mean_{c in t_k} exp(g_c
        (t_{k+1} - t_k))`` (Waddington-OT's prior; needs ``growth_rates`` and ``cell_times``); or population
        sizes, a sequence ``(K,)`` in the order of ``times``, or a mapping time -> size (a dict, or a pandas
        Series indexed by time, read by its labels: every time point needs one, and no other time is taken).
    """
    times = np.asarray(times, dtype=float)
    masses = sizes_by_label(masses)
    chained = isinstance(masses, str) and masses == "growth_prior"
    if not chained and (growth_rates is not None or cell_times is not None):
        raise ValueError(f"growth_rates, cell_times: read with masses='growth_prior' only, got masses={masses!r}")
    if isinstance(masses, str):
        if masses == "equal":
            out = np.ones(len(times))
        elif masses == "counts":
            out = np.asarray(counts, dtype=float)
        elif masses == "growth_prior":
            out = _chained_growth(times, growth_rates, cell_times)
        else:
            raise ValueError(f"masses: expected 'equal', 'counts', 'growth_prior' or sizes, got {masses!r}")
    elif isinstance(masses, Mapping):
        out = _sizes_by_time(times, masses)
    else:
        out = np.asarray(masses, dtype=float)
        if out.shape != times.shape:
            raise ValueError(f"masses: expected {len(times)} population sizes (one per time point), got {out.shape}")
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"masses: expected positive finite population sizes, got {out}")
    return out / out.mean()


def sizes_by_label(masses):
    """A pandas Series of population sizes as a mapping by its labels (time -> size); anything else as it is."""
    if hasattr(masses, "index") and hasattr(masses, "to_numpy"):
        return dict(zip(masses.index, masses.to_numpy(), strict=True))
    return masses


def key_time(key) -> float | None:
    """The time a key of a mapping of sizes names, or ``None`` when it is not a number."""
    try:
        return float(key)
    except (TypeError, ValueError):
        return None


def _sizes_by_time(times: np.ndarray, masses: Mapping) -> np.ndarray:
    """Population sizes looked up by time label; missing time points and times not observed are refused."""
    missing = [float(t) for t in times if t not in masses]
    if missing:
        raise ValueError(f"masses: no population size for time point(s) {missing}")
    observed = set(times.tolist())
    extra = [key for key in masses if key_time(key) not in observed]
    if extra:
        raise ValueError(
            f"masses: population sizes given for {extra}, which are not time points of the data ({times.tolist()})"
        )
    return np.array([float(masses[t]) for t in times])


def _chained_growth(times: np.ndarray, growth_rates, cell_times) -> np.ndarray:
    if growth_rates is None or cell_times is None:
        raise ValueError("masses='growth_prior' needs per-cell growth rates (run sc_syncot.pp.growth_prior first)")
    g = np.asarray(growth_rates, dtype=float)
    out = [1.0]
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        sel = np.asarray(cell_times) == t0
        out.append(out[-1] * float(np.mean(np.exp(g[sel] * (t1 - t0)))))
    return np.array(out)


def prior_shifts(times: np.ndarray, masses: np.ndarray, growth_rates: np.ndarray, cell_times: np.ndarray) -> np.ndarray:
    r"""Per-interval constants ``c_k`` that make per-cell growth rates agree with the population sizes.

    The population sizes fix each interval's mean growth, the rates' differences say who grows faster than whom:
    ``c_k`` solves ``mean_{c in t_k} exp((g_c + c_k) (t_{k+1} - t_k)) = M_{k+1} / M_k``, the chaining of
    ``masses="growth_prior"`` (so rates whose chained sizes are ``masses`` get ``c = 0``):

    .. math:: c_k = \frac{\log(M_{k+1} / M_k) - \log \operatorname{mean}_{c \in t_k} e^{g_c \Delta_k}}{\Delta_k}.

    Gene-score rates (:func:`sc_syncot.pp.growth_prior`) order cells well but set their level by fixed ranges;
    without the shift a prior whose mean disagrees with the observed sizes pulls every branch the same way.

    Parameters
    ----------
    times
        Sorted observed times ``(K,)``.
    masses
        Population size at each time point ``(K,)`` (any scale).
    growth_rates, cell_times
        Per-cell rates (per unit of the times) and times ``(n,)``.

    Returns
    -------
    np.ndarray
        ``(K - 1,)`` shifts, per unit of the times.
    """
    times, masses = np.asarray(times, dtype=float), np.asarray(masses, dtype=float)
    g, cell_times = np.asarray(growth_rates, dtype=float), np.asarray(cell_times)
    dt = np.diff(times)
    chained = np.array([np.mean(np.exp(g[cell_times == t] * d)) for t, d in zip(times[:-1], dt, strict=True)])
    return (np.log(masses[1:] / masses[:-1]) - np.log(chained)) / dt


def interval_densities(
    coords: np.ndarray,
    cell_times: np.ndarray,
    times: np.ndarray,
    grid: Grid,
    masses: np.ndarray,
    bandwidth: float | np.ndarray | None = None,
) -> np.ndarray:
    """Densities ``(K, *grid.shape)`` of the cells observed at each time, scaled to ``masses``.

    The bandwidth defaults to Scott's rule with the spread and the number of cells averaged over the time points:
    one bandwidth for every time point, so that a time point with fewer cells is not smoothed more than its
    neighbours and the change between time points is not a change of smoothing.
    """
    coords = np.asarray(coords, dtype=float)
    if not np.all(np.isfinite(coords)):  # before the bandwidth, which NaN would make NaN
        raise ValueError("coords: expected finite coordinates, found NaN or inf")
    h = pooled_bandwidth(coords, cell_times, times) if bandwidth is None else bandwidth
    return np.stack(
        [kde_density(coords[cell_times == t], grid, mass=m, bandwidth=h) for t, m in zip(times, masses, strict=True)]
    )


def pooled_bandwidth(coords: np.ndarray, cell_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Scott's rule ``sigma n^(-1/(d+4))`` per axis, with ``sigma`` and ``n`` averaged over the time points.

    The default bandwidth of :func:`interval_densities` (one for every time point).
    """
    per_time = [coords[cell_times == t] for t in times]
    d = coords.shape[1]
    n = float(np.mean([len(c) for c in per_time]))
    sigma = np.mean([c.std(0) if len(c) > 1 else np.zeros(d) for c in per_time], axis=0)
    return np.where(sigma > 0, sigma, np.ptp(coords, axis=0) + 1.0) * n ** (-1.0 / (d + 4))
