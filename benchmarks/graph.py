"""The graph geometry: speed, memory, projection and refinement error, side by side in one run.

    python benchmarks/graph.py                   # 500, 2000, 5000 nodes; k = 10, 10-D, n_time 8
    python benchmarks/graph.py --sizes 500 2000  # fewer sizes
    python benchmarks/graph.py --threads 2

For each size, in a fresh process (so that its peak memory is its own):

- a batch of 4 intervals on one kNN graph (consecutive McCann interpolants of two 10-D Gaussians, the oracle
  ``oracles.gaussians_on_a_graph``): iterations, solve seconds, of which the projection's set-up (the Laplacian's
  eigenbasis), ms per iteration after it, the projection's share of that, peak resident memory; the error of each
  interval's cost against its closed form ``(dt)^2 W2^2``;
- the refinement oracle: one problem between the two Gaussians, its cost against ``W2^2`` (the test asserts that the
  error falls with the number of nodes);
- the two projections: set-up seconds and ms per projection of the eigenbasis and of the sparse factorizations.

Then the grid solver on 64^2 x 16 (balanced Gaussians, math.md oracle 1) for reference, in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
from _report import Report, add_argument

from sc_syncot.solvers import oracles, solve
from sc_syncot.solvers.graph_transport import GraphProjector

TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def timed_projections(monkey: dict):
    """Wrap ``GraphProjector.project_`` and its set-up to add up their seconds in ``monkey``."""
    original, original_init = GraphProjector.project_, GraphProjector.__init__

    def init(self, *args, **kwargs):
        start = time.perf_counter()
        original_init(self, *args, **kwargs)
        monkey["setup_s"] += time.perf_counter() - start

    def project_(self, x):
        start = time.perf_counter()
        out = original(self, x)
        monkey["projection_s"] += time.perf_counter() - start
        return out

    GraphProjector.project_ = project_
    GraphProjector.__init__ = init


def projection_speed(problem, method: str, repeats: int = 20) -> tuple[float, float]:
    """``(set-up s, ms per projection)`` of one projection method on a problem's graph and masses."""
    opts = {"dtype": torch.float64}
    rho0 = torch.as_tensor(problem.rho0 * problem.geometry.n_nodes, **opts)
    rho1 = torch.as_tensor(problem.rho1 * problem.geometry.n_nodes, **opts)
    start = time.perf_counter()
    proj = GraphProjector(problem.geometry, rho0, rho1, None, method=method)
    setup = time.perf_counter() - start
    g = problem.geometry
    gen = torch.Generator().manual_seed(0)
    b = rho0.shape[0]
    x = [torch.randn(b, g.n_time + 1, g.n_nodes, generator=gen, **opts), torch.randn(b, g.n_time, g.n_edges, **opts)]
    start = time.perf_counter()
    for _ in range(repeats):
        proj.project_(x)
    return setup, 1e3 * (time.perf_counter() - start) / repeats


def one_size(n: int) -> dict:
    monkey = {"projection_s": 0.0, "setup_s": 0.0}
    start = time.perf_counter()
    problem, exact = oracles.gaussians_on_a_graph(n, times=TIMES)
    build = time.perf_counter() - start
    timed_projections(monkey)
    start = time.perf_counter()
    res = solve(problem, tol=1e-6)
    total = time.perf_counter() - start
    out = {
        "nodes": n,
        "edges": problem.geometry.n_edges,
        "build_s": build,
        "iterations": res.n_iter,
        "converged": bool(res.converged),
        "solve_s": total,
        "setup_s": monkey["setup_s"],
        "ms_per_iteration": 1e3 * (total - monkey["setup_s"]) / res.n_iter,
        "projection_share": monkey["projection_s"] / (total - monkey["setup_s"]),
        "interval_errors": (np.asarray(res.cost) / exact - 1).tolist(),
        "balance_residual": res.balance_residual(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    single, w2 = oracles.gaussians_on_a_graph(n)
    res1 = solve(single, tol=1e-6)
    out["refinement_error"] = res1.cost / w2 - 1
    for method in ("eigh", "sparse"):
        out[f"{method}_setup_s"], out[f"{method}_ms_per_projection"] = projection_speed(problem, method)
    return out


def grid_reference() -> dict:
    problem, exact = oracles.balanced_gaussians(64, 16)
    start = time.perf_counter()
    res = solve(problem, tol=1e-6)
    total = time.perf_counter() - start
    return {"iterations": res.n_iter, "solve_s": total, "ms_per_iteration": 1e3 * total / res.n_iter,
            "error": res.cost / exact - 1}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 5000])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process: one size
    add_argument(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(one_size(args.one)))
        return
    report = Report(args.report)  # here: it reads the load average at the start
    threads = ["--threads", str(args.threads)] if args.threads else []
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), *threads]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    report.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; k = 10, 10-D, n_time 8, tol 1e-6")
    report.print("\n4 intervals in one batch (consecutive McCann interpolants), then one pair (the refinement oracle):")
    head = (f"{'nodes':>6} {'edges':>7} {'iter':>5} {'solve s':>8} {'set-up s':>9} {'ms/iter':>8} {'proj %':>7} "
            f"{'peak MiB':>9} "
            f"{'interval errors (cost / exact - 1)':>36} {'pair error':>11}")  # fmt: skip
    print(head)
    for r in rows:
        r["errors"] = " ".join(f"{e:+.3f}" for e in r["interval_errors"])
        print(f"{r['nodes']:>6} {r['edges']:>7} {r['iterations']:>5} {r['solve_s']:>8.2f} {r['setup_s']:>9.2f} "
              f"{r['ms_per_iteration']:>8.2f} {100 * r['projection_share']:>6.1f}% {r['peak_rss_mib']:>9.0f} "
              f"{r['errors']:>36} {r['refinement_error']:>+11.3f}")  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["projection_share"] *= 100
    columns = {"nodes": "nodes", "edges": "edges", "iterations": "iter", "solve_s": "solve s", "setup_s": "set-up s",
               "ms_per_iteration": "ms/iter", "projection_share": "proj %", "peak_rss_mib": "peak MiB",
               "errors": "interval errors (cost / exact - 1)", "refinement_error": "pair error"}  # fmt: skip
    report.table(frame[list(columns)].rename(columns=columns), index=False)
    report.print("\nprojection (balanced, the batch's masses): set-up s and ms per projection")
    print(f"{'nodes':>6} {'eigh set-up':>12} {'eigh ms':>8} {'sparse set-up':>14} {'sparse ms':>10} {'ratio':>6}")
    for r in rows:
        r["ratio"] = r["sparse_ms_per_projection"] / r["eigh_ms_per_projection"]
        print(f"{r['nodes']:>6} {r['eigh_setup_s']:>12.2f} {r['eigh_ms_per_projection']:>8.2f} "
              f"{r['sparse_setup_s']:>14.2f} {r['sparse_ms_per_projection']:>10.2f} {r['ratio']:>6.2f}")  # fmt: skip
    columns = {"nodes": "nodes", "eigh_setup_s": "eigh set-up", "eigh_ms_per_projection": "eigh ms",
               "sparse_setup_s": "sparse set-up", "sparse_ms_per_projection": "sparse ms",
               "ratio": "ratio"}  # fmt: skip
    report.table(pd.DataFrame(rows)[list(columns)].rename(columns=columns), index=False)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        growth = b["ms_per_iteration"] / a["ms_per_iteration"]
        nlogn = b["nodes"] * np.log(b["nodes"]) / (a["nodes"] * np.log(a["nodes"]))
        report.print(f"\nms per iteration after the set-up, {a['nodes']} -> {b['nodes']} nodes: x{growth:.1f} "
                     f"(n log n: x{nlogn:.1f}, "
                     f"n^2: x{(b['nodes'] / a['nodes']) ** 2:.1f})")  # fmt: skip
    ref = grid_reference()
    report.print(f"\ngrid 64^2 x 16 (balanced Gaussians): {ref['iterations']} iterations, {ref['solve_s']:.2f} s, "
                 f"{ref['ms_per_iteration']:.2f} ms per iteration, error {ref['error']:+.4f}")  # fmt: skip
    report.write()


if __name__ == "__main__":
    main()
