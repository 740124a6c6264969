"""How far below static OT can any clock, or a curved path, take a held-out prediction?

    python benchmarks/heldout_ceiling.py [--report docs/benchmarks/heldout_ceiling.md]

On the rows of ``benchmarks/heldout.py --geometry graph`` (the same data, bases and held-out time points), static OT
between the held-in neighbours of the held-out time point (POT's exact ``emd`` on ``--n-sample`` cells per side,
plan in the primary, applied to both spaces' coordinates of the same cells, as ``tl.evaluate_heldout``'s
``static_ot``) is read at 21 fractions ``f = 0, 0.05, ..., 1`` of its interval, and W1 to the held-out cells is
measured in each space at each ``f``. Three figures per row, each divided by W1 at the physical fraction:

- ``hindsight``: the lowest W1 over the 21 fractions, the fraction chosen *on the held-out cells*. It is not a
  method: it bounds from below what any clock (a time warp, a per-space clock) can do for a displacement
  interpolation, since no clock fitted on the held-in time points can place a time point better than this choice.
- ``cubic`` and ``pchip``: transport splines. The exact plans between consecutive held-in time points are glued
  into paths (each sampled cell's successor drawn from its row of the plan, as Chewi et al. 2021, "Fast and
  smooth interpolation of measures via transport splines", glue theirs), and every path is interpolated through
  all held-in time points by SciPy's natural cubic spline or its monotone ``PchipInterpolator``, then read at the
  held-out time. They ask whether the curvature the other time points show predicts better than straight lines.

Each figure is the mean over ``--rounds`` fresh subsamples. The last table counts, against ``heldout.py``'s target
(graph syncot at most 0.85x static OT in the median over its 25 rows), the rows whose hindsight figure is above
0.85: no clock brings those below the target, so the median can reach it only through rows where a fit beats every
displacement interpolation (growth, or a secondary that tells the primary where to go).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import pandas as pd
from _report import Report, add_argument
from heldout import _scicar_embedded, scgem_embedded, standardized
from scipy.interpolate import CubicSpline, PchipInterpolator

import sc_syncot as so
from sc_syncot.tl.evaluation import _w1  # the W1 that tl.evaluate_heldout scores with

REPORT = Report()
FRACTIONS = np.linspace(0, 1, 21)
TARGET = 0.85  # heldout.py's median target for graph syncot / static OT


def _glued_paths(x: np.ndarray, time: np.ndarray, times: np.ndarray, n: int, rng) -> np.ndarray:
    """Indices ``(n, len(times))`` of cells along paths glued from the exact plans between consecutive times.

    Each time point contributes a subsample of at most ``n`` cells; the plans have uniform marginals on them, so
    the pair of columns ``(k, k + 1)`` is distributed as the plan of that interval.
    """
    picks = [rng.choice(np.flatnonzero(time == t), min(n, int(np.sum(time == t))), replace=False) for t in times]
    current = rng.choice(len(picks[0]), n)
    paths = [picks[0][current]]
    for a, b in zip(picks[:-1], picks[1:], strict=True):
        plan = ot.emd(ot.unif(len(a)), ot.unif(len(b)), ot.dist(x[a], x[b]), numItermax=1_000_000)
        rows = plan[current] / plan[current].sum(1, keepdims=True)
        current = np.array([rng.choice(len(b), p=row) for row in rows])
        paths.append(b[current])
    return np.stack(paths, 1)


def row_figures(spaces: dict, time: np.ndarray, heldout: float, n: int, rounds: int) -> list[dict]:
    """Per space: W1 at the physical fraction, the hindsight ratio and fraction, and the splines' ratios."""
    times = np.unique(time)
    held_in = times[~np.isclose(times, heldout)]
    k = int(np.searchsorted(held_in, heldout)) - 1
    physical = (heldout - held_in[k]) / (held_in[k + 1] - held_in[k])
    primary = next(iter(spaces.values()))
    scan = {name: np.zeros(len(FRACTIONS)) for name in spaces}
    splines = {(name, kind): 0.0 for name in spaces for kind in ("cubic", "pchip")}
    for r in range(rounds):
        rng = np.random.default_rng(r)
        paths = _glued_paths(primary, time, held_in, n, rng)
        held = np.flatnonzero(np.isclose(time, heldout))
        held = rng.choice(held, min(n, len(held)), replace=False)
        for name, z in spaces.items():
            a, b, target = z[paths[:, k]], z[paths[:, k + 1]], z[held]
            scan[name] += np.array([_w1((1 - f) * a + f * b, target) for f in FRACTIONS]) / rounds
            along = z[paths]  # (n, held-in times, dims)
            cubic = CubicSpline(held_in, along, axis=1, bc_type="natural")(heldout)
            splines[name, "cubic"] += _w1(cubic, target) / rounds
            splines[name, "pchip"] += _w1(PchipInterpolator(held_in, along, axis=1)(heldout), target) / rounds
    rows = []
    for name, w1 in scan.items():
        at_physical = float(np.interp(physical, FRACTIONS, w1))
        best = int(np.argmin(w1))
        rows.append(
            {
                "space": name, "static_ot": at_physical, "physical": physical, "hindsight_fraction": FRACTIONS[best],
                "hindsight": w1[best] / at_physical, "cubic": splines[name, "cubic"] / at_physical,
                "pchip": splines[name, "pchip"] / at_physical,
            }
        )  # fmt: skip
    return rows


def courses() -> list[tuple[str, str, dict, np.ndarray, float]]:
    """``(data, held out, spaces, time, held-out time)`` for every row of heldout.py's graph table."""
    out = []
    emt = so.datasets.tigon_emt()
    t_emt = emt.obs["time_days"].to_numpy(float)
    for t in np.unique(t_emt)[1:-1]:
        name = "day " + ("1/3" if np.isclose(t, 1 / 3) else f"{t:g}")
        out.append(("TIGON_EMT", name, {"primary": emt.obsm["X_tigon"]}, t_emt, t))
    bif = so.datasets.tigon_bifurcation()
    t_bif = bif.obs["time_index"].to_numpy(float)
    out += [("TIGON_Bifurcation", f"index {t}", {"primary": bif.obsm["X_tigon"]}, t_bif, float(t)) for t in range(1, 7)]
    gem = scgem_embedded(10)
    stages = dict(enumerate(gem.obs.groupby("time", observed=True)["stage"].first()))
    spaces = {"primary": gem.obsm["X_expr"], "secondary": gem.obsm["X_meth"]}
    out += [("scGEM", str(stages[t]), spaces, gem.obs["time"].to_numpy(float), float(t)) for t in (1, 2, 3)]
    sci = _scicar_embedded()
    if sci is not None:
        spaces = {
            "primary": standardized(sci.obsm["X_pca"][:, :10]),
            "secondary": standardized(sci.obsm["X_lsi"][:, :10]),
        }
        out.append(("sciCAR_A549", "1 h", spaces, sci.obs["time_h"].to_numpy(float), 1.0))
    lead = so.datasets.simulate_multiome(n_cells=2000, n_timepoints=6, seed=0, secondary_leads=True)
    t_lead = lead.obs["time"].to_numpy(float)
    spaces = {"primary": lead.obsm["X_pca"], "secondary": lead.obsm["X_lsi"]}
    for t in (0.6, 1.2):
        out.append(
            ("leading", f"t={t:g}", spaces, t_lead, float(np.unique(t_lead)[np.argmin(abs(np.unique(t_lead) - t))]))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sample", type=int, default=500, help="cells per side in each W1 (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh subsamples averaged per figure (default 3)")
    add_argument(parser)
    args = parser.parse_args()
    REPORT.path = args.report
    start = time.perf_counter()
    rows = []
    for data, name, spaces, t, heldout in courses():
        for row in row_figures(spaces, t, heldout, args.n_sample, args.rounds):
            rows.append({"data": data, "held out": name} | row)
    table = pd.DataFrame(rows).set_index(["data", "held out", "space"])
    REPORT.print(
        "static OT read at 21 fractions of the held-out point's interval and transport splines through all held-in",
        f" time points; W1 to the held-out cells over W1 at the physical fraction ({args.n_sample} cells per side,",
        f" mean of {args.rounds} subsamples; below 1: closer than static OT at the physical fraction)",
    )
    REPORT.table(table, console=3)
    # heldout.py's 25 target rows: every row here but the leading course's, which it counts for both couplings
    weights = np.where(table.index.get_level_values("data") == "leading", 2, 1)
    hindsight = np.repeat(table["hindsight"].to_numpy(), weights)
    medians = {col: np.median(np.repeat(table[col].to_numpy(), weights)) for col in ("hindsight", "cubic", "pchip")}
    REPORT.print(
        f"\nheldout.py's {len(hindsight)} target rows (the leading course counted once per coupling): "
        f"{int(np.sum(hindsight > TARGET))} stay above {TARGET} at the hindsight fraction.",
        f"Medians over them: hindsight {medians['hindsight']:.3f}, cubic spline {medians['cubic']:.3f}, "
        f"monotone spline {medians['pchip']:.3f} (target for graph syncot: {TARGET}).",
        "sci-CAR has two held-in time points: a spline through them is the straight line.",
    )
    REPORT.print(f"\n{time.perf_counter() - start:.0f} s")
    REPORT.write()


if __name__ == "__main__":
    main()
