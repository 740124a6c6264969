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

How strongly to warp (``time_warp="auto"``)
-------------------------------------------
Different speeds in neighbouring intervals do not prove that the speed changes *within* an interval the way the
fitted profile says: a course can be fast in one interval and slow in the next for reasons the interpolated
``log v`` does not capture, or the lengths can differ by sampling noise alone. The fitted warp is therefore
shrunk towards constant speed, ``log v -> s log v + (1 - s) log v_mean`` (every interval's log-speed change
times ``s``; ``s = 0`` the identity, ``s = 1`` the full warp), with the strength ``s`` chosen from the observed
samples only, by leave-one-out (:func:`select_strength`): each inner time point in turn is left out, a warp
is fitted to the remaining intervals' W2 lengths, and the left-out cells are predicted from their neighbours
by displacement (McCann) interpolation of the static OT plan at the fraction that warp, shrunk by each ``s``
of ``STRENGTHS``, places them; the W1 to the left-out cells, divided by that at constant speed, is averaged
over the inner time points. This asks the question the warp is for, whether warping predicts unseen times
better, with a cheap stand-in for the fitted paths (static OT between the same samples, on subsamples). The
strength with the lowest mean ratio is taken only when it lowers it by at least ``MIN_GAIN`` (10 %): the check
picks the best of five strengths on as few as two left-out time points, so smaller gains are within its own
optimism and the sampling noise of W1 on a few hundred cells; otherwise ``s = 0``, constant speed.

The check needs four time points (leaving one out must leave three to fit a warp to). With three, the full warp
is used: it is then an exponential speed fitted exactly to the two intervals' speeds, so it departs from the
identity only as much as they differ (speeds 10 % apart move an interval's midpoint by about 1 % of the
interval), and a clear difference is itself evidence against constant speed; the record says that the strength
was not checked, and ``time_warp=None`` turns the warp off. The chosen strength, the reason and the
leave-one-out scores are recorded with the warp (:meth:`TimeWarp.to_uns`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import ot
from scipy.optimize import least_squares
from scipy.spatial.distance import cdist

logger = logging.getLogger("sc_syncot")

# points per interval of the tabulated map (path fractions are read off by linear interpolation; the largest
# error on an exponential speed profile with a 30-fold change across the interval is below 1e-3)
TABLE_POINTS = 129
# weight of the bending penalty against log-length mismatches; small, so the lengths are matched to about 1%
BENDING = 1e-3
MIN_TIME_POINTS = 3
# the leave-one-out check of the strength: leaving an inner time point out must leave MIN_TIME_POINTS
CHECK_TIME_POINTS = MIN_TIME_POINTS + 1
STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_GAIN = 0.1  # least drop of the mean leave-one-out W1 ratio for a strength above 0 to be taken
CHECK_SAMPLE = 300  # cells per time point in each round of the check (exact OT on subsamples)
CHECK_ROUNDS = 3


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
        ``"auto"`` only: the interval lengths it was fitted to and ``log v`` at the time points, as used (after
        shrinking by ``strength``); empty otherwise.
    strength
        How much of the fitted log-speed profile is used: 1 the full warp, 0 constant speed (see the module
        docstring); 1 for a callable, 0 for the identity.
    reason
        Why this strength: the leave-one-out check's result, or why it was not run.
    strengths, scores
        The strengths tried by the leave-one-out check and their mean W1 ratios to constant speed (empty when
        it was not run).
    """

    time_points: np.ndarray
    t: np.ndarray
    tau: np.ndarray
    kind: str
    lengths: np.ndarray
    log_speed: np.ndarray
    strength: float = 1.0
    reason: str = ""
    strengths: np.ndarray = field(default_factory=lambda: np.empty(0))
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))

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
        """Whether the warp places every time at its physical fraction (also a fitted warp of strength 0)."""
        span = self.time_points[-1] - self.time_points[0]
        return self.kind == "identity" or bool(np.allclose(self.tau, self.t, rtol=0, atol=1e-12 * span))

    def shrunk(self, strength: float, reason: str = "", strengths=(), scores=()) -> TimeWarp:
        """The fitted warp with its log-speed profile shrunk towards constant speed by ``strength`` in [0, 1].

        Every interval's log-speed change is multiplied by ``strength``: ``log v`` is pulled towards the log of
        the mean speed (total length over total time; a constant, which alone moves no fraction).
        """
        if self.kind != "auto":
            raise ValueError(f"only a fitted ('auto') warp can be shrunk, not a {self.kind!r} one")
        if not 0 <= strength <= 1:
            raise ValueError(f"strength: expected a number in [0, 1], got {strength}")
        if self.strength != 1:
            raise ValueError("only the full warp (strength 1) can be shrunk")
        tp, full = self.time_points, self.log_speed
        mean = np.log(self.lengths.sum() / (tp[-1] - tp[0]))
        u = np.linspace(0, 1, TABLE_POINTS)[:-1]
        frac = _exp_fraction(u[None, :], strength * np.diff(full)[:, None])
        tau = np.append((tp[:-1, None] + np.diff(tp)[:, None] * frac).ravel(), tp[-1])
        return replace(
            self,
            tau=tau,
            log_speed=mean + strength * (full - mean),
            strength=float(strength),
            reason=reason,
            strengths=np.asarray(strengths, float),
            scores=np.asarray(scores, float),
        )

    def to_uns(self) -> dict:
        """h5ad-writable form (read back with :meth:`from_uns`)."""
        return {
            "kind": self.kind,
            "time_points": np.asarray(self.time_points, float),
            "t": np.asarray(self.t, float),
            "tau": np.asarray(self.tau, float),
            "lengths": np.asarray(self.lengths, float),
            "log_speed": np.asarray(self.log_speed, float),
            "strength": float(self.strength),
            "reason": str(self.reason),
            "strengths": np.asarray(self.strengths, float),
            "scores": np.asarray(self.scores, float),
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
            float(u.get("strength", 1.0)),
            str(u.get("reason", "")),
            np.asarray(u.get("strengths", np.empty(0)), float),
            np.asarray(u.get("scores", np.empty(0)), float),
        )

    @classmethod
    def identity(cls, time_points, reason: str = "time_warp=None") -> TimeWarp:
        """Constant speed between the observed ``time_points``."""
        tp = _check_time_points(time_points, 2)
        return cls(tp, tp.copy(), tp.copy(), "identity", np.empty(0), np.empty(0), 0.0, reason)


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
    return TimeWarp(tp, _table_times(tp), tau, "auto", lengths, log_speed, 1.0, "full fit to the interval lengths")


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
    return TimeWarp(tp, t, tau, "callable", np.empty(0), np.empty(0), 1.0, "the user's map")


def _sample(rng, x: np.ndarray, size: int) -> np.ndarray:
    return x[rng.choice(len(x), min(size, len(x)), replace=False)]


def _w2(a: np.ndarray, b: np.ndarray) -> float:
    cost = cdist(a, b, "sqeuclidean")
    return float(np.sqrt(max(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost, numItermax=10**6), 0.0)))


def select_strength(
    x, time, time_points, strengths=STRENGTHS, n_sample: int = CHECK_SAMPLE, n_rounds: int = CHECK_ROUNDS, seed=0
) -> tuple[float, str, np.ndarray]:
    """Choose how strongly to warp by leave-one-out over the inner time points (see the module docstring).

    Parameters
    ----------
    x, time
        Cells' coordinates (cells x dims) and observed times.
    time_points
        The ``>= 4`` increasing observed times to check on.
    strengths
        Strengths to try, in ``[0, 1]``, 0 first (the reference: constant speed).
    n_sample
        Cells per time point in each round (exact OT on subsamples).
    n_rounds
        Rounds of fresh subsamples; within a round every strength is scored on the same cells and plans.
    seed
        Seed of the subsamples.

    Returns
    -------
    The chosen strength, the reason (one line), and each strength's mean W1 ratio to constant speed.
    """
    tp = _check_time_points(time_points, CHECK_TIME_POINTS)
    strengths = np.asarray(strengths, float)
    if strengths[0] != 0 or np.any((strengths < 0) | (strengths > 1)):
        raise ValueError(f"strengths: expected values in [0, 1] starting with 0, got {strengths.tolist()}")
    x, time = np.asarray(x, float), np.asarray(time, float)
    rng = np.random.default_rng([seed, 2**31 - 1])
    inner = range(1, len(tp) - 1)
    w1 = np.zeros((n_rounds, len(tp) - 2, len(strengths)))
    for r in range(n_rounds):
        samples = [_sample(rng, x[time == t], n_sample) for t in tp]
        lengths = np.array([_w2(a, b) for a, b in zip(samples[:-1], samples[1:], strict=True)])
        for i, j in enumerate(inner):
            before, after = samples[j - 1], samples[j + 1]
            rest = np.concatenate([lengths[: j - 1], [_w2(before, after)], lengths[j + 1 :]])
            u = (tp[j] - tp[j - 1]) / (tp[j + 1] - tp[j - 1])
            try:
                warp = fit_time_warp(np.delete(tp, j), rest)
                change = warp.log_speed[j] - warp.log_speed[j - 1]  # across the merged interval j - 1
            except ValueError:  # no length to fit a speed to: every strength is constant speed
                change = 0.0
            cost = cdist(before, after, "sqeuclidean")
            plan = ot.emd(ot.unif(len(before)), ot.unif(len(after)), cost, numItermax=10**6)
            ii, jj = np.nonzero(plan > 1e-12 * plan.max())
            weights = plan[ii, jj] / plan[ii, jj].sum()
            target = samples[j]
            for m, s in enumerate(strengths):
                f = float(_exp_fraction(np.asarray(u), s * change))
                moved = (1 - f) * before[ii] + f * after[jj]
                w1[r, i, m] = ot.emd2(weights, ot.unif(len(target)), cdist(moved, target), numItermax=10**6)
    mean = w1.mean(0)
    tiny = 1e-12 * (np.abs(x).max() + 1e-300)
    scores = ((mean + tiny) / (mean[:, :1] + tiny)).mean(0)
    best = int(np.argmin(scores))  # ties: the weaker strength
    left_out = f"leave-one-out over {len(tp) - 2} inner time points"
    if scores[best] <= 1 - MIN_GAIN:
        reason = (
            f"{left_out}: mean W1 ratio to constant speed {scores[best]:.3f} at strength {strengths[best]:g}, "
            f"at most {1 - MIN_GAIN:g}: a clear gain"
        )
        return float(strengths[best]), reason, scores
    reason = (
        f"{left_out}: best mean W1 ratio to constant speed {scores[best]:.3f} (strength {strengths[best]:g}), "
        f"above {1 - MIN_GAIN:g}: no clear gain; constant speed"
    )
    return 0.0, reason, scores


def resolve_time_warp(time_warp, time_points, lengths, x=None, time=None, seed=0) -> TimeWarp:
    """The warp of a fit from its ``time_warp`` argument.

    ``"auto"``: fitted on ``lengths`` (the identity, logged, below three time points) and shrunk by the strength
    that :func:`select_strength` chooses on the cells ``x`` (observed at ``time``, subsampled with ``seed``);
    the full warp with three time points or without cells. ``None``: the identity; a callable: see
    :func:`warp_from_callable`.
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
            return TimeWarp.identity(time_points, f"{len(time_points)} time points: too few to fit a warp")
        full = fit_time_warp(time_points, lengths)
        if len(time_points) < CHECK_TIME_POINTS:
            reason = (
                f"{len(time_points)} time points: too few for the leave-one-out check of the strength (it needs "
                f"{CHECK_TIME_POINTS}); the full warp, fitted exactly to the two intervals' speeds"
            )
            logger.info("sc_syncot: time warp, %s; time_warp=None for constant speed", reason)
            return replace(full, reason=reason)
        if x is None:
            return replace(full, reason="no cells given: the strength was not checked; the full warp")
        strength, reason, scores = select_strength(x, time, time_points, seed=seed)
        logger.info("sc_syncot: time warp strength %g (%s)", strength, reason)
        return full.shrunk(strength, reason, STRENGTHS, scores)
    if callable(time_warp):
        return warp_from_callable(time_warp, time_points)
    raise ValueError(f"time_warp: expected 'auto', None or a callable, got {type(time_warp).__name__}")
