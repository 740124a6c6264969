"""Unpaired views: couple the cells of two AnnData objects through entropic Gromov-Wasserstein (POT).

When two modalities are measured on different cells of the same samples, no cell has coordinates in both
bases. Gromov-Wasserstein matches the two point clouds by their internal geometry (pairwise distances within
each view); at each time point present in both views it gives a coupling ``P`` between their cells, and each
primary cell receives the barycentric projection of its row, ``y_i = sum_j P_ij y_j / sum_j P_ij``, as its
secondary coordinates. Those pseudo-pairs then feed :func:`sc_syncot.tl.syncot` like measured pairs.

Gromov-Wasserstein only sees distances, so a view can be matched to a mirror image of the other when its
geometry is symmetric: check the coupling, e.g. with known cell types in both views.

References
----------
G. Peyre, M. Cuturi, J. Solomon, "Gromov-Wasserstein averaging of kernel and distance matrices", ICML (2016);
P. Demetci et al., "SCOT: single-cell multi-omics alignment with optimal transport", J. Comput. Biol. (2022).
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import ot
from scipy.spatial.distance import cdist

from .._settings import warn
from .inputs import basis, check_key_added, check_writes, times


def _distances(x: np.ndarray) -> np.ndarray:
    d = cdist(x, x, "sqeuclidean")
    return d / d.max() if d.max() > 0 else d  # scale-free: the two views come in different units


def _couple(x: np.ndarray, y: np.ndarray, epsilon: float, label) -> tuple[np.ndarray, float]:
    p, q = ot.unif(len(x)), ot.unif(len(y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = ot.gromov.entropic_gromov_wasserstein(
            _distances(x), _distances(y), p, q, "square_loss", epsilon=epsilon, log=True, numItermax=5000
        )
    if any("did not converge" in str(w.message) for w in caught):
        warn(
            f"couple_views: an inner Sinkhorn solve did not converge at time {label} (epsilon={epsilon}); the "
            "coupling may be blurred or rough there, a larger epsilon helps",
        )
    if not np.all(np.isfinite(plan)) or plan.sum() <= 0:
        raise ValueError(f"epsilon: the Gromov-Wasserstein solve failed at epsilon={epsilon}; try a larger one")
    return plan, float(log["gw_dist"])


def couple_views(
    primary: ad.AnnData,
    secondary: ad.AnnData,
    primary_basis: str,
    secondary_basis: str,
    time_key: str | None = None,
    epsilon: float = 5e-3,
    max_cells: int = 5000,
    key_added: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Give each primary cell secondary coordinates through an entropic Gromov-Wasserstein coupling of the views.

    Parameters
    ----------
    primary, secondary
        The two views, on different cells.
    primary_basis, secondary_basis
        ``.obsm`` keys of each view's embedding.
    time_key
        ``.obs`` column present in both: cells are coupled within each time point (recommended; times present
        in only one view are an error). ``None``: one coupling of all cells.
    epsilon
        Entropic regularization, relative to the distances scaled to a maximum of 1. A warning says when its
        inner Sinkhorn solves did not converge.
    max_cells
        Largest number of cells of a view at one time point (the coupling is a dense
        ``n_primary x n_secondary`` matrix per time point).
    key_added
        ``.obsm`` key written into ``primary`` (default ``f"{secondary_basis}_coupled"``); ``.uns[key_added]``
        gets the parameters and the Gromov-Wasserstein discrepancy per time point.
    copy
        Return a modified copy of ``primary`` instead of writing in place.
    """
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon: expected a positive float, got {epsilon}")
    x = basis(primary, primary_basis, "primary_basis").to_numpy()
    y = basis(secondary, secondary_basis, "secondary_basis").to_numpy()
    key_added = f"{secondary_basis}_coupled" if key_added is None else check_key_added(key_added)
    reads = {("obsm", primary_basis): f"the primary view's basis primary_basis={primary_basis!r}"}
    check_writes(primary, [("obsm", key_added), ("uns", key_added)], reads, key_added)
    if time_key is None:
        groups = [(None, np.ones(len(x), bool), np.ones(len(y), bool))]
    else:
        try:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                tx = times(primary, time_key, primary_basis).to_numpy()
                ty = times(secondary, time_key, secondary_basis).to_numpy()
        finally:  # the same labels read in both views: said once (also when the second view's times are refused)
            for message, category in {str(w.message): w.category for w in said}.items():
                warn(message, category)
        only = sorted(float(t) for t in set(tx) ^ set(ty))
        if only:
            raise ValueError(f"time_key={time_key!r}: time point(s) {only} are in only one of the views")
        groups = [(t, tx == t, ty == t) for t in np.unique(tx)]
    out_y = np.zeros((len(x), y.shape[1]))
    discrepancy = []
    for t, sx, sy in groups:
        if max(sx.sum(), sy.sum()) > max_cells:
            raise ValueError(
                f"max_cells: {int(sx.sum())} x {int(sy.sum())} cells at time {t} exceed {max_cells} per view; "
                "subsample or raise max_cells (the coupling is dense)"
            )
        plan, gw = _couple(x[sx], y[sy], epsilon, t)
        out_y[sx] = (plan @ y[sy]) / plan.sum(1, keepdims=True)
        discrepancy.append(gw)
    out = primary.copy() if copy else primary
    out.obsm[key_added] = out_y
    out.uns[key_added] = {
        "params": {"secondary_basis": secondary_basis, "time_key": time_key or "none", "epsilon": epsilon},
        "time_points": np.asarray([np.nan if t is None else t for t, _, _ in groups], float),
        "gw_discrepancy": np.asarray(discrepancy),
    }
    return out if copy else None
