"""How much of the secondary state the primary state predicts: the premise of synchronizing two spaces."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor


def secondary_predictability(
    x: np.ndarray,
    y: np.ndarray,
    time: np.ndarray | None = None,
    *,
    k: int = 50,
    n_folds: int = 5,
    seed: int = 0,
) -> dict:
    r"""Cross-validated :math:`R^2` of a k-nearest-neighbour regression of ``y`` on ``x``.

    .. math::

        R^2 = 1 - \frac{\sum_i \lVert y_i - \hat y_i \rVert^2}{\sum_i \lVert y_i - \bar y \rVert^2},

    with :math:`\hat y_i` the mean of the ``k`` nearest training cells of :math:`x_i` (``n_folds``-fold cross
    validation, so a cell never predicts itself) and the variance pooled over the columns of ``y``. The
    predictions are scikit-learn's: :class:`~sklearn.neighbors.KNeighborsRegressor` through
    :func:`~sklearn.model_selection.cross_val_predict` with shuffled :class:`~sklearn.model_selection.KFold`
    splits. Near 0, the secondary carries no information the primary state has: a synchronized fit can then
    smooth the secondary path but not inform the primary one. Within time points the measure is free of the
    shared drift over time, which alone makes the pooled value positive.

    Parameters
    ----------
    x, y
        Paired primary ``(n, d)`` and secondary ``(n, dY)`` coordinates (at least 2 cells).
    time
        Optional ``(n,)`` time of each cell: adds the per-time-point values (time points with fewer than
        ``2 k`` cells are skipped) and their cell-weighted mean.
    k, n_folds, seed
        Neighbours, folds, and the seed of the fold assignment. A ``k`` larger than the smallest training fold
        is clamped to that fold's size; fewer cells than ``n_folds`` give one fold per cell. The pooled value
        and each time point get their own fold split, drawn from independent children of ``seed``
        (:class:`numpy.random.SeedSequence`), so every value is reproducible.

    Returns
    -------
    dict
        ``pooled`` (all cells), and with ``time``: ``per_time`` (``{t: R^2}``) and ``within_time`` (the mean of
        ``per_time`` weighted by cell counts; NaN when every time point was skipped).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    y = y[:, None] if y.ndim == 1 else y
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"x, y: expected (n, d) and (n, dY) arrays with the same n >= 2, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x, y: expected finite values (drop unpaired cells first)")
    if k < 1 or n_folds < 2:
        raise ValueError(f"k, n_folds: expected k >= 1 and n_folds >= 2, got {k} and {n_folds}")
    if time is not None:
        time = np.asarray(time)
        if time.shape != (len(x),):
            raise ValueError(f"time: expected shape ({len(x)},), got {time.shape}")
    times = np.unique(time) if time is not None else np.array([])
    pooled_seed, *time_seeds = (_fold_seed(s) for s in np.random.SeedSequence(seed).spawn(1 + len(times)))
    out: dict = {"pooled": _knn_r2(x, y, k, n_folds, pooled_seed)}
    if time is None:
        return out
    per_time, weights = {}, []
    for t, t_seed in zip(times, time_seeds, strict=True):
        sel = time == t
        if sel.sum() >= 2 * k:
            per_time[t.item()] = _knn_r2(x[sel], y[sel], k, n_folds, t_seed)
            weights.append(sel.sum())
    out["per_time"] = per_time
    out["within_time"] = float(np.average(list(per_time.values()), weights=weights)) if per_time else float("nan")
    return out


def _fold_seed(sequence: np.random.SeedSequence) -> int:
    """An integer ``random_state`` for scikit-learn from one child of the seed sequence."""
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _knn_r2(x: np.ndarray, y: np.ndarray, k: int, n_folds: int, seed: int) -> float:
    """Pooled cross-validated R^2 of scikit-learn's kNN regression (k clamped to the smallest training fold)."""
    n_folds = min(n_folds, len(x))
    smallest_train = len(x) - -(-len(x) // n_folds)  # KFold's largest test fold has ceil(n / n_folds) cells
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(KNeighborsRegressor(n_neighbors=min(k, smallest_train)), x, y, cv=folds)
    total = float(np.square(y - y.mean(0)).sum())
    return 1.0 - float(np.square(y - pred).sum()) / total if total > 0 else float("nan")
