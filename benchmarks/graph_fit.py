"""Seconds of a whole ``tl.syncot`` fit on the graph: 5,000 paired cells, 4 time points, a 30-D primary basis.

    python benchmarks/graph_fit.py                       # Kantorovich (the default), Monge, weight 0; 2 threads
    python benchmarks/graph_fit.py --threads 1
    python benchmarks/graph_fit.py --against-tol 1e-7    # also: how far each fit is from a tighter solve

The course is :func:`sc_syncot.datasets.simulate_multiome` with 5,000 cells, 4 time points and 30 principal
components (``X_pca``, the primary) beside its 10 LSI components (``X_lsi``, the secondary). Each fit runs
``tl.syncot(adata, "time", "X_pca", "X_lsi", ...)`` at default settings (graph geometry, 2,000 nodes of which half
are state nodes, 4 time steps per interval with the Kantorovich secondary and 8 otherwise, ``tol`` 1e-6, time warp
``"auto"``) in a fresh process, and prints its seconds split into the graph's
construction (``pp.cell_graph``: k-means nodes, path nodes, kNN edges), the solve and the rest (the time warp's
check, the kernel and support points, the results written to the AnnData), with the iterations and the solve's
ms per iteration. Ratios: each fit's seconds against the weight-0 fit of the same run and against 60 s.

``--against-tol T`` refits each configuration at ``tol=T`` and reports how far the default fit's per-cell
velocities (relative L2 distance, median and 90th percentile over cells) and growth rates (median absolute
difference, beside the median absolute rate) are from it: what the default stopping rule leaves unconverged.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from _report import Report, add_argument
from kantorovich import _timed  # wall time of one function into a bucket

TARGET_S = 60.0
CONFIGS = {
    "kantorovich (default)": {},
    "monge": {"coupling": "monge"},
    "weight 0": {"weight": 0.0},
}


def _fit(args) -> dict:
    """One fit in this (fresh) process: ``(name, threads, tol)``; seconds per phase, iterations, the outputs."""
    name, threads, tol = args
    import importlib

    import torch

    import sc_syncot as ss

    graph_fit = importlib.import_module("sc_syncot.tl.graph_fit")
    syncot = importlib.import_module("sc_syncot.tl.syncot")  # the module (sc_syncot.tl.syncot is the function)

    torch.set_num_threads(threads)
    clock = {"graph": 0.0, "solve": 0.0}
    _timed(graph_fit, "build", "graph", clock)
    _timed(syncot, "solve", "solve", clock)
    adata = ss.datasets.simulate_multiome(n_cells=5000, n_timepoints=4, n_pcs=30, seed=0)
    options = CONFIGS[name] | ({} if tol is None else {"tol": tol, "max_iter": 50000})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged fit is a row of the table
        ss.tl.syncot(adata, "time", "X_pca", "X_lsi", progress=False, **options)
    total = time.perf_counter() - start
    info = adata.uns["syncot"]
    n_iter = int(info["convergence"]["n_iter"])
    return {
        "fit": name, "s": total, "graph s": clock["graph"], "solve s": clock["solve"],
        "rest s": total - clock["graph"] - clock["solve"], "iters": n_iter,
        "ms/iter": 1e3 * clock["solve"] / max(n_iter, 1), "converged": bool(info["convergence"]["converged"]),
        "nodes": int(info["params"]["n_nodes"]), "dims": adata.obsm["X_pca"].shape[1],
        "velocity": np.asarray(adata.obsm["syncot_velocity"]), "growth": adata.obs["syncot_growth"].to_numpy(),
    }  # fmt: skip


def _distance(fit: dict, tight: dict) -> dict:
    """How far ``fit``'s per-cell outputs are from those of the tighter solve ``tight``."""
    v, ref = fit["velocity"], tight["velocity"]
    rel = np.linalg.norm(v - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-300)
    return {
        "fit": fit["fit"], "tight iters": tight["iters"], "tight s": tight["s"],
        "velocity diff median": float(np.median(rel)), "velocity diff p90": float(np.quantile(rel, 0.9)),
        "growth diff median": float(np.median(np.abs(fit["growth"] - tight["growth"]))),
        "growth median": float(np.median(np.abs(tight["growth"]))),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fits", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--against-tol", type=float, default=None, metavar="T")
    add_argument(parser)
    args = parser.parse_args()
    report = Report(args.report)
    report.print(
        f"tl.syncot on 5,000 simulated paired cells, 4 time points, 30-D primary (X_pca), 10-D secondary (X_lsi); "
        f"default settings, {args.threads} torch threads, each fit in a fresh process"
    )
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        fits = [pool.submit(_fit, (name, args.threads, None)).result() for name in args.fits]
        tight = (
            [pool.submit(_fit, (name, args.threads, args.against_tol)).result() for name in args.fits]
            if args.against_tol is not None
            else []
        )
    zero = next((f for f in fits if f["fit"] == "weight 0"), None)
    rows = []
    for fit in fits:
        row = {k: v for k, v in fit.items() if k not in ("velocity", "growth")}
        row["s / weight 0"] = fit["s"] / zero["s"] if zero else float("nan")
        row[f"s / {TARGET_S:.0f} s"] = fit["s"] / TARGET_S
        rows.append(row)
    report.table(pd.DataFrame(rows), console=3, index=False)
    if tight:
        report.print(f"\nagainst a tol={args.against_tol:g} solve of the same fit (per-cell outputs)")
        report.table(pd.DataFrame([_distance(f, t) for f, t in zip(fits, tight, strict=True)]), console=4, index=False)
    report.write(threads=args.threads)


if __name__ == "__main__":
    main()
