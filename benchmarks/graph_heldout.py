"""Held-out time points predicted on a cell graph in the full basis, against static OT, in one run.

    python benchmarks/graph_heldout.py                      # TIGON Bifurcation (4-D), every inner time point
    python benchmarks/graph_heldout.py --dataset tigon_emt  # TIGON EMT (3-D)
    python benchmarks/graph_heldout.py --n-nodes 1000 --delta 0.5

For each inner time point ``k``: the cells of ``k - 1`` and ``k + 1`` only give a :func:`sc_syncot.pp.cell_graph`
(state nodes and static-OT path nodes in all columns of the basis), the graph solver fits the interval between them
(balanced, and unbalanced with the cell counts as masses), and the fit's masses at the held-out fraction of the
interval are compared with the held-out cells: W1 by POT's exact ``emd2``, the same for every method. Static OT is
the McCann interpolation of POT's exact plan between the cells of ``k - 1`` and ``k + 1`` at the same fraction.
Ratios below 1 favour the graph fit. This is the solver layer alone (no ``tl``): the measurement that the cell-graph
fits of ``tl.syncot`` are to be judged by.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import pandas as pd
from _report import Report, add_argument

from sc_syncot import datasets, pp
from sc_syncot.solvers import SyncOTProblem, solve


def w1(points, weights, cells) -> float:
    """Exact W1 between a weighted point cloud and the uniform measure on ``cells``."""
    weights = np.clip(weights, 0.0, None)  # a face's masses can dip below 0 by the convergence level
    keep = weights > 1e-12 * weights.max()
    weights = weights[keep] / weights[keep].sum()
    target = np.full(len(cells), 1.0 / len(cells))
    return float(ot.emd2(weights, target, ot.dist(points[keep], cells, metric="euclidean")))


def static_ot(xa, xb, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """McCann interpolation of the exact plan between two uniform point clouds."""
    plan = ot.emd(np.full(len(xa), 1 / len(xa)), np.full(len(xb), 1 / len(xb)), ot.dist(xa, xb))
    i, j = np.nonzero(plan)
    return (1 - fraction) * xa[i] + fraction * xb[j], plan[i, j]


def at_fraction(rho: np.ndarray, fraction: float) -> np.ndarray:
    """Node masses at ``fraction`` of the interval, linear between the graph's time nodes."""
    pos = fraction * (rho.shape[0] - 1)
    k = min(int(np.floor(pos)), rho.shape[0] - 2)
    return (k + 1 - pos) * rho[k] + (pos - k) * rho[k + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="tigon_bifurcation", choices=["tigon_bifurcation", "tigon_emt"])
    parser.add_argument("--n-nodes", type=int, default=1200)
    parser.add_argument("--n-time", type=int, default=8)
    parser.add_argument("--delta", type=float, default=None, help="growth length scale (default: half the extent)")
    add_argument(parser)
    args = parser.parse_args()
    report = Report(args.report)
    adata = getattr(datasets, args.dataset)()
    key = "time_index" if args.dataset == "tigon_bifurcation" else "time_days"
    x = np.asarray(adata.obsm["X_tigon"] if "X_tigon" in adata.obsm else adata.X, dtype=float)
    t = adata.obs[key].to_numpy(dtype=float)
    times = np.unique(t)
    delta = args.delta or 0.5 * float(np.ptp(x, axis=0).max())
    report.print(f"{args.dataset}: {x.shape[0]} cells, {x.shape[1]}-D, n_nodes {args.n_nodes}, n_time {args.n_time}, "
          f"delta {delta:.3g} (unbalanced); W1 of each method / W1 of static OT")  # fmt: skip
    print(f"{'held out':>9} {'fraction':>8} {'static W1':>10} {'balanced':>9} {'unbalanced':>11} {'nearest':>8} "
          f"{'nodes':>6} {'s':>6}")  # fmt: skip
    rows = []
    for k in range(1, len(times) - 1):
        a, b, held = (t == times[k - 1]), (t == times[k + 1]), (t == times[k])
        fraction = (times[k] - times[k - 1]) / (times[k + 1] - times[k - 1])
        start = time.perf_counter()
        keep = a | b
        cg = pp.cell_graph(x[keep], t[keep], n_nodes=args.n_nodes, n_time=args.n_time)
        m0, m1 = cg.masses
        balanced = solve(SyncOTProblem(cg.graph, m0 / m0.sum(), m1 / m1.sum()))
        unbalanced = solve(SyncOTProblem(cg.graph, m0, m1, delta=delta))
        seconds = time.perf_counter() - start
        pts, wts = static_ot(x[a], x[b], fraction)
        base = w1(pts, wts, x[held])
        nodes = cg.graph.points
        scores = [w1(nodes, at_fraction(r.rho, fraction), x[held]) / base for r in (balanced, unbalanced)]
        nearest = min(w1(x[s], np.ones(s.sum()), x[held]) for s in (a, b)) / base
        rows.append({"held out": f"{times[k]:g}", "fraction": fraction, "static W1": base, "balanced": scores[0],
                     "unbalanced": scores[1], "nearest": nearest, "nodes": cg.n_nodes, "s": seconds})  # fmt: skip
        print(f"{times[k]:>9g} {fraction:>8.2f} {base:>10.4f} {scores[0]:>9.3f} {scores[1]:>11.3f} {nearest:>8.3f} "
              f"{cg.n_nodes:>6} {seconds:>6.1f}")  # fmt: skip
    report.table(pd.DataFrame(rows), index=False)
    report.write()


if __name__ == "__main__":
    main()
