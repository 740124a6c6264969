r"""Time warp: where each moment of physical time sits on the reconstructed path.

A dynamic OT path between two samples moves at constant speed in its metric, so without a warp a time ``t``
between samples ``t_k < t < t_{k+1}`` is placed at the physical fraction ``s = (t - t_k) / (t_{k+1} - t_k)`` of
the path. Responses to a stimulus are seldom uniform: fast early, then saturating (or slow to start). A time warp
is a monotone map ``tau(t)`` from physical to path time with ``tau(t_k) = t_k`` at every observed time point;
between samples, ``t`` is placed at the path fraction ``(tau(t) - t_k) / (t_{k+1} - t_k)``.

The fitted warp (:func:`fit_time_warp`) reads the speed of the course from the observed samples only. Each interval
has a length ``L_k`` (the metric length of its fitted path, ``sqrt`` of the unit-time action of the synchronized
problem, or the W2 distance of static OT); the speed ``v(t)`` is modelled as positive and smooth across intervals,
``log v`` piecewise linear in ``t`` with knots at the observed time points, and fitted so that

.. math::

    \int_{t_k}^{t_{k+1}} v(t)\,dt = L_k \quad \text{for every interval,}\qquad
    \text{with the least bending } \sum_k (\text{slope}_{k+1} - \text{slope}_k)^2 \text{ of } \log v .

Within interval ``k`` the path fraction of ``t`` is ``int_{t_k}^t v / L_k``: where the speed falls across an
interval, its first part covers more of the path than its share of the time. The speed at the interval's ends is
set by its neighbours (the knots are shared), which is why at least three time points (two intervals) are needed:
with two, ``log v`` is a line (exponential speed), fitted exactly; a course of constant speed gives the identity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

logger = logging.getLogger("sc_syncot")

# points per interval of the tabulated map (path fractions are read off by linear interpolation; the largest
# error on an exponential speed profile with a 30-fold change across the interval is below 1e-3)
TABLE_POINTS = 129
# weight of the bending penalty against log-length mismatches; small, so the lengths are matched to about 1%
BENDING = 1e-3
MIN_TIME_POINTS = 3


@dataclass(frozen=True)
class TimeWarp:
    """A monotone map from physical time to path time, equal to the identity at the observed time points.

    Attributes
    ----------
    time_points
        The observed time points it was fitted on (increasing).
    t, tau
        The map tabulated: physical times (``TABLE_POINTS`` per interval, the time points included) and the path
        times they are placed at; read by linear interpolation.
    kind
        ``"auto"`` (fitted from interval lengths), ``"callable"`` (the user's), or ``"identity"``.
    lengths, log_speed
        ``"auto"`` only: the interval lengths it was fitted to and ``log v`` at the time points (empty otherwise).
    """

    time_points: np.ndarray
    t: np.ndarray
    tau: np.ndarray
    kind: str
    lengths: np.ndarray
    log_speed: np.ndarray

    def __call__(self, t):
        """Path time of physical time(s) ``t`` (within the observed range)."""
        return np.interp(t, self.t, self.tau)

    def inverse(self, tau):
        """Physical time(s) placed at path time(s) ``tau``."""
        return np.interp(tau, self.tau, self.t)

    def fraction(self, t: float, k: int) -> float:
        """Path fraction of physical time ``t`` within interval ``k``."""
        tp = self.time_points
        return float((self(t) - tp[k]) / (tp[k + 1] - tp[k]))

    def fractions(self, times) -> np.ndarray:
        """Path fraction of each of ``times`` within the interval of observed time points that holds it."""
        tp = self.time_points
        times = np.atleast_1d(np.asarray(times, float))
        k = np.clip(np.searchsorted(tp, times, side="right") - 1, 0, len(tp) - 2)
        return (self(times) - tp[k]) / (tp[k + 1] - tp[k])

    @property
    def is_identity(self) -> bool:
        """Whether the warp places every time at its physical fraction."""
        return self.kind == "identity"

    def to_uns(self) -> dict:
        """h5ad-writable form (read back with :meth:`from_uns`)."""
        return {
            "kind": self.kind,
            "time_points": np.asarray(self.time_points, float),
            "t": np.asarray(self.t, float),
            "tau": np.asarray(self.tau, float),
            "lengths": np.asarray(self.lengths, float),
            "log_speed": np.asarray(self.log_speed, float),
        }

    @classmethod
    def from_uns(cls, u: dict) -> TimeWarp:
        """Read the form written by :meth:`to_uns`."""
        return cls(
            np.asarray(u["time_points"], float),
            np.asarray(u["t"], float),
            np.asarray(u["tau"], float),
            str(u["kind"]),
            np.asarray(u["lengths"], float),
            np.asarray(u["log_speed"], float),
        )

    @classmethod
    def identity(cls, time_points) -> TimeWarp:
        """Constant speed between the observed ``time_points``."""
        tp = _check_time_points(time_points, 2)
        return cls(tp, tp.copy(), tp.copy(), "identity", np.empty(0), np.empty(0))


def _check_time_points(time_points, minimum: int) -> np.ndarray:
    tp = np.asarray(time_points, float).ravel()
    if len(tp) < minimum or not np.all(np.isfinite(tp)) or np.any(np.diff(tp) <= 0):
        raise ValueError(f"time_points: expected at least {minimum} finite, increasing times, got {tp.tolist()}")
    return tp


def _table_times(tp: np.ndarray) -> np.ndarray:
    """``TABLE_POINTS`` physical times per interval, each time point once."""
    u = np.linspace(0, 1, TABLE_POINTS)[:-1]
    inner = (tp[:-1, None] + np.diff(tp)[:, None] * u).ravel()
    return np.append(inner, tp[-1])


def _exp_fraction(u: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``(e^(c u) - 1) / (e^c - 1)``: the share of an interval's length covered by fraction ``u`` of its time.

    Written from the larger end for ``c > 0`` so that steep profiles do not overflow; ``u`` itself near ``c = 0``.
    """
    c = np.broadcast_to(slope, np.broadcast_shapes(np.shape(u), np.shape(slope)))
    small = np.abs(c) < 1e-8
    safe = np.where(small, 1.0, c)
    rising = (np.exp(safe * (u - 1)) - np.exp(-safe)) / -np.expm1(-safe)
    falling = np.expm1(safe * u) / np.expm1(safe)
    return np.where(small, u, np.where(safe > 0, rising, falling))


def _interval_integrals(theta: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """``int exp(log v)`` over each interval for ``log v`` linear between knots ``theta``: the log-mean."""
    a, b = theta[:-1], theta[1:]
    d = b - a
    small = np.abs(d) < 1e-9
    top = np.maximum(a, b)
    # (e^b - e^a) / (b - a), computed from the larger end
    ratio = np.where(
        small, np.exp(a) * (1 + d / 2), np.exp(top) * -np.expm1(-np.abs(d)) / np.where(small, 1, np.abs(d))
    )
    return dt * ratio


def fit_time_warp(time_points, lengths, bending: float = BENDING) -> TimeWarp:
    """Fit a time warp to the lengths of the intervals between observed time points (see the module docstring).

    Parameters
    ----------
    time_points
        ``K + 1 >= 3`` increasing observed times.
    lengths
        ``K`` nonnegative interval lengths in one metric (e.g. ``sqrt`` of each interval's unit-time action, or
        the W2 distance between consecutive samples). Zero lengths are raised to ``1e-6`` of the largest.
    bending
        Weight of the bending penalty on ``log v`` (times normalized to ``[0, 1]``).

    Returns
    -------
    The fitted :class:`TimeWarp` (``kind="auto"``).
    """
    tp = _check_time_points(time_points, MIN_TIME_POINTS)
    lengths = np.asarray(lengths, float).ravel()
    if lengths.shape != (len(tp) - 1,) or not np.all(np.isfinite(lengths)) or np.any(lengths < 0):
        raise ValueError(f"lengths: expected {len(tp) - 1} finite nonnegative interval lengths, got {lengths.tolist()}")
    if lengths.max() <= 0:
        raise ValueError("lengths: every interval has length 0; there is no speed to fit a warp to")
    lengths = np.maximum(lengths, 1e-6 * lengths.max())
    span = tp[-1] - tp[0]
    dt = np.diff(tp) / span  # times normalized to [0, 1]: the bending weight does not depend on the time unit
    target = np.log(lengths)
    mid = 0.5 * (dt[:-1] + dt[1:])

    def residuals(theta):
        slopes = np.diff(theta) / dt
        return np.concatenate(
            [np.log(_interval_integrals(theta, dt)) - target, np.sqrt(bending * mid) * np.diff(slopes)]
        )

    mean_speed = np.log(lengths / dt)
    theta0 = np.append(mean_speed, mean_speed[-1])
    theta = least_squares(residuals, theta0, method="lm").x
    slopes = np.diff(theta)  # log-speed change across each interval
    u = np.linspace(0, 1, TABLE_POINTS)[:-1]
    frac = _exp_fraction(u[None, :], slopes[:, None])
    tau = np.append((tp[:-1, None] + np.diff(tp)[:, None] * frac).ravel(), tp[-1])
    log_speed = theta - np.log(span)  # per unit of physical time
    return TimeWarp(tp, _table_times(tp), tau, "auto", lengths, log_speed)


def warp_from_callable(func: Callable, time_points) -> TimeWarp:
    """A :class:`TimeWarp` from the user's monotone map of physical time (e.g. a pseudotime or path fraction).

    ``func`` maps physical times to any increasing scale; within each interval, ``t`` is placed at the fraction
    ``(func(t) - func(t_k)) / (func(t_{k+1}) - func(t_k))``. A :class:`TimeWarp` is such a callable.
    """
    tp = _check_time_points(time_points, 2)
    t = _table_times(tp)
    try:
        values = np.asarray(func(t), float)
        if values.shape != t.shape:
            raise TypeError
    except (TypeError, ValueError):  # a scalar function: one call per time
        values = np.array([float(func(float(x))) for x in t])
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
        raise ValueError(
            "time_warp: expected a callable that maps the observed time range to finite, nondecreasing values"
        )
    ends = values[:: TABLE_POINTS - 1]
    if np.any(np.diff(ends) <= 0):
        raise ValueError(
            "time_warp: expected a callable that increases strictly between consecutive observed time points "
            f"{tp.tolist()}, got values {ends.tolist()} there"
        )
    k = np.minimum(np.arange(len(t)) // (TABLE_POINTS - 1), len(tp) - 2)
    frac = (values - ends[k]) / (ends[k + 1] - ends[k])
    tau = tp[k] + np.diff(tp)[k] * frac
    return TimeWarp(tp, t, tau, "callable", np.empty(0), np.empty(0))


def resolve_time_warp(time_warp, time_points, lengths) -> TimeWarp:
    """The warp of a fit from its ``time_warp`` argument.

    ``"auto"``: fitted on ``lengths`` (the identity, logged, below three time points); ``None``: the identity; a
    callable: see :func:`warp_from_callable`.
    """
    if time_warp is None:
        return TimeWarp.identity(time_points)
    if isinstance(time_warp, str):
        if time_warp != "auto":
            raise ValueError(f"time_warp: expected 'auto', None or a callable, got {time_warp!r}")
        if len(time_points) < MIN_TIME_POINTS:
            logger.info(
                "sc_syncot: time_warp='auto' needs at least %d time points, got %d; constant speed between them",
                MIN_TIME_POINTS,
                len(time_points),
            )
            return TimeWarp.identity(time_points)
        return fit_time_warp(time_points, lengths)
    if callable(time_warp):
        return warp_from_callable(time_warp, time_points)
    raise ValueError(f"time_warp: expected 'auto', None or a callable, got {type(time_warp).__name__}")
