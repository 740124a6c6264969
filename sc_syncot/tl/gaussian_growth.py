"""``tl.gaussian_growth``: per-group birth, death and net growth from Gaussian unbalanced OT in the full embedding.

Grids cannot go beyond three dimensions; Gaussian summaries can. Between consecutive time points, each group of
``groupby`` present at both is summarized by ``m N(mean, cov)`` in the whole basis and
:func:`sc_syncot.gaussian.group_growth` gives its transported mass and rates. The net rate is usable as the
mass prior of :func:`sc_syncot.tl.syncot` (``masses="growth_prior", growth_key=key_added``).
"""

from __future__ import annotations

import numpy as np

from .. import gaussian, pp
from ..pp.inputs import as_number, check_key_added, check_writes, primary_table, read_cells
from ..pp.inputs import basis as read_basis
from ..solvers.grid import is_integer


def _summary(x: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance, shrunk toward ``(trace / d) I``: few cells in many dimensions give a singular one."""
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    d = x.shape[1]
    target = np.trace(cov) / d * np.eye(d)
    return x.mean(0), (1 - shrinkage) * cov + shrinkage * target + 1e-12 * np.eye(d)


def gaussian_growth(
    adata,
    time_key: str,
    groupby: str,
    basis: str,
    tau: float | None = None,
    masses="counts",
    shrinkage: float = 0.1,
    min_cells: int = 5,
    key_added: str = "gaussian_growth",
    copy: bool = False,
):
    r"""Birth, death and net growth rates per group from Gaussian UOT between consecutive time points.

    For a group with ``m_0 N(a, A)`` at ``t_k`` and ``m_1 N(b, B)`` at ``t_{k+1}`` (``m`` = the group's share
    of the cells times the time point's mass), :func:`sc_syncot.gaussian.uot` gives the transported mass
    ``m^* = \sqrt{m_0 m_1} e^{-F^*/(2\tau)}``; then ``g = log(m_1/m_0)/dt``, ``b = log(m_1/m^*)/dt``,
    ``d = log(m_0/m^*)/dt`` (see :mod:`sc_syncot.gaussian.growth`).

    Parameters
    ----------
    adata
        AnnData (or MuData with ``"modality:key"`` bases).
    time_key
        ``.obs`` column of times.
    groupby
        ``.obs`` column of groups (clusters, cell types).
    basis
        ``.obsm`` key of the embedding, all columns used.
    tau
        KL weight in squared distance units of the basis; default: the mean total variance of the groups
        (mass change is then as expensive as moving a group by its own spread).
    masses
        Population size per time point, as in :func:`sc_syncot.tl.syncot` (``"counts"``, ``"equal"``, sizes).
    shrinkage
        Weight of ``(trace/d) I`` in each covariance.
    min_cells
        Groups with fewer cells at either time point are not estimated (at least 2).
    key_added
        ``.uns[key_added]``: per interval (``"0"``, ``"1"``, ...) the times, groups and rates;
        ``.obs[key_added]``: each cell's net growth rate (its group's over the interval that starts at its time,
        the last time point taking the last interval; the population's rate where the group has no estimate).
    copy
        Return a modified copy instead of writing in place.
    """
    x = read_basis(adata, basis, "basis").to_numpy()
    cells = read_cells(adata, time_key, basis, None, 1)
    table = primary_table(adata, basis)
    if groupby not in table.obs:
        raise ValueError(f"groupby={groupby!r}: not in .obs (columns: {list(table.obs.columns)})")
    if tau is not None and not (np.isfinite(as_number(tau, "tau")) and tau > 0):
        raise ValueError(f"tau: expected a positive float, got {tau}")
    if not 0 <= as_number(shrinkage, "shrinkage") < 1:
        raise ValueError(f"shrinkage: expected a number in [0, 1), got {shrinkage}")
    if not is_integer(min_cells) or min_cells < 2:  # a covariance needs two cells
        raise ValueError(f"min_cells: expected an integer >= 2, got {min_cells!r}")
    check_key_added(key_added)
    reads = {("obs", time_key): f"time_key={time_key!r}", ("obs", groupby): f"the groups groupby={groupby!r}"}
    check_writes(table, [("obs", key_added), ("uns", key_added)], reads, key_added)
    groups = table.obs[groupby].astype(str).to_numpy()
    tp = cells.time_points
    counts = np.array([np.sum(cells.time == t) for t in tp])
    sizes = pp.time_point_masses(tp, counts, masses)
    if tau is None:
        tau = _default_tau(x, groups, basis)
    out_uns, rates = {}, np.full(len(x), np.nan)
    for k in range(len(tp) - 1):
        res, names, population = _interval(x, cells.time, groups, tp, sizes, k, tau, shrinkage, min_cells)
        out_uns[str(k)] = res
        _assign(rates, cells.time, groups, tp, k, names, res["growth_rate"], population)
    out = adata.copy() if copy else adata
    primary_table(out, basis).uns[key_added] = out_uns | {"tau": tau, "shrinkage": shrinkage}
    primary_table(out, basis).obs[key_added] = rates
    return out if copy else None


def _default_tau(x: np.ndarray, groups: np.ndarray, basis: str) -> float:
    """The mean total variance of the groups that have two cells or more."""
    spreads = [np.trace(_summary(x[groups == g], 0.0)[1]) for g in np.unique(groups) if np.sum(groups == g) >= 2]
    tau = float(np.mean(spreads)) if spreads else 0.0
    if not tau > 0:
        raise ValueError(f"tau: the groups have no spread in basis={basis!r} to set a default from; pass tau")
    return tau


def _interval(x, time, groups, tp, sizes, k, tau, shrinkage, min_cells):
    t0, t1 = tp[k], tp[k + 1]
    at0, at1 = time == t0, time == t1
    names = [g for g in np.unique(groups) if min((groups[at0] == g).sum(), (groups[at1] == g).sum()) >= min_cells]
    population = float(np.log(sizes[k + 1] / sizes[k]) / (t1 - t0))
    empty = np.zeros(0)
    res = {"t0": float(t0), "t1": float(t1), "groups": np.asarray(names, dtype=str), "population_rate": population}
    if not names:
        return (
            res | {k_: empty for k_ in ("transported_mass", "growth_rate", "birth_rate", "death_rate")},
            names,
            population,
        )
    summaries = []
    for sel, size in ((at0, sizes[k]), (at1, sizes[k + 1])):
        m = [size * np.mean(groups[sel] == g) for g in names]
        stats = [_summary(x[sel & (groups == g)], shrinkage) for g in names]
        summaries += [np.array(m), np.array([s[0] for s in stats]), np.array([s[1] for s in stats])]
    gg = gaussian.group_growth(*summaries, tau=tau, dt=float(t1 - t0))
    res |= {
        "transported_mass": gg.transported_mass,
        "growth_rate": gg.growth_rate,
        "birth_rate": gg.birth_rate,
        "death_rate": gg.death_rate,
        "turnover_rate": gg.turnover_rate,
    }
    return res, names, population


def _assign(rates, time, groups, tp, k, names, growth, population) -> None:
    """Cells at ``t_k`` (and at the last time point, for the last interval) take their group's rate."""
    targets = [tp[k]] + ([tp[k + 1]] if k == len(tp) - 2 else [])
    lookup = dict(zip(names, growth, strict=True))
    for t in targets:
        sel = time == t
        rates[sel] = [lookup.get(g, population) for g in groups[sel]]
