"""Speed and memory of the Kantorovich-secondary solver at 64^2 x 32 (issue 3).

    python benchmarks/kantorovich.py                       # 200, 1000, 5000 support points, Chambolle-Pock
    python benchmarks/kantorovich.py --support 200 --methods chambolle_pock,pd3o,condat_vu --max-iter 2000
    python benchmarks/kantorovich.py --grid 32 --n-time 16  # a smaller grid
    python benchmarks/kantorovich.py --oracle5              # math.md oracle 5 only, both epsilon rules
    python benchmarks/kantorovich.py --support 1000 --sinkhorn-sweeps auto   # adaptive sweeps per iteration

The problem is :func:`sc_syncot.solvers.oracles.embedded_secondary`: two Gaussians (masses 1 and 1.5, delta 0.3)
on the unit square, a 10-dimensional secondary whose support points are random points of a smooth image of the
square, and a sparse row-stochastic kernel (Gaussian weights over the 8 nearest support points of each cell's
image). Each row is one solve in a fresh process: iterations, seconds, the split of the time between the Sinkhorn
sweeps (proximal maps of the secondary and the final cost evaluation), the proximal map of the primary action and
the projection onto the balance equation, and the peak resident memory of the solve (VmHWM of /proc/self/status,
reset before the solve).

``--oracle5`` prints math.md's oracle 5: an identity kernel on 60 cells of a line (delta 0.3, masses 1 and 1.5),
whose objective tends to the Monge solve with ``J = I`` as epsilon falls; the gap is the entropic bias of the
time-discretized secondary action. Each ``n_time`` runs with the solver's default epsilon and with the
time-consistent one that ``tl.syncot`` uses (:func:`sc_syncot.solvers.kantorovich.time_consistent_epsilon`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

from solver import _reset_peak_rss, _rss_mib  # the memory probes of benchmarks/solver.py


def _timed(owner, name: str, bucket: str, clock: dict) -> None:
    """Wrap ``owner.name`` so that its wall time adds to ``clock[bucket]``."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            clock[bucket] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def _run_case(args) -> dict:
    n, n_time, n_support, method, max_iter, sweeps, sinkhorn_max_iter = args
    import importlib

    import torch

    from sc_syncot.solvers import projection, scaling, solve
    from sc_syncot.solvers.oracles import embedded_secondary

    solve_module = importlib.import_module("sc_syncot.solvers.solve")

    clock = {"sinkhorn": 0.0, "prox": 0.0, "projection": 0.0}
    _timed(scaling.EntropicSupport, "sweeps", "sinkhorn", clock)
    _timed(solve_module, "prox_action", "prox", clock)
    _timed(projection.BalanceProjector, "project_", "projection", clock)
    problem = embedded_secondary(n, n_time, n_support)
    eps = problem.secondaries[0].effective_epsilon
    _reset_peak_rss()
    base = _rss_mib("VmRSS")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = solve(
            problem, method=method, max_iter=max_iter, sinkhorn_sweeps=sweeps, sinkhorn_max_iter=sinkhorn_max_iter
        )
    seconds = time.perf_counter() - start
    return {
        "support": n_support,
        "method": method,
        "iters": res.n_iter,
        "converged": res.converged,
        "seconds": seconds,
        "ms/iter": 1e3 * seconds / res.n_iter,
        "sinkhorn s": clock["sinkhorn"],
        "prox s": clock["prox"],
        "proj s": clock["projection"],
        "peak MiB": _rss_mib("VmHWM") - base,
        "cost": res.cost,
        "secondary": res.costs["secondary_0"],
        "epsilon": eps,
        "threads": torch.get_num_threads(),
        "warnings": len(caught),
    }


def _oracle5(n_time: int, rule: str = "default") -> dict:
    import numpy as np

    from sc_syncot.solvers import Grid, KantorovichSecondary, MongeSecondary, SyncOTProblem, solve
    from sc_syncot.solvers.closed_forms import gaussian_density
    from sc_syncot.solvers.kantorovich import time_consistent_epsilon

    grid = Grid([(0, 1)], (60,), n_time)
    rho0 = gaussian_density(grid, [0.35], [[0.05**2]])
    rho1 = gaussian_density(grid, [0.6], [[0.05**2]], mass=1.5)
    monge = MongeSecondary(np.ones((60, 1, 1)), 1.0)
    support = grid.points().reshape(-1, 1)
    # "default": the solver's default_epsilon; "time_consistent": the rule tl uses (floor falling beyond 4 steps)
    eps = time_consistent_epsilon(support, 0.3, n_time) if rule == "time_consistent" else None
    kant = KantorovichSecondary(np.eye(60), support, weight=1.0, delta=0.3, epsilon=eps)
    reference = solve(SyncOTProblem(grid, rho0, rho1, delta=0.3, secondaries=[monge]), tol=1e-5)
    problem = SyncOTProblem(grid, rho0, rho1, delta=0.3, secondaries=[kant])
    start = time.perf_counter()
    res = solve(problem, tol=1e-5, sinkhorn_max_iter=20_000)
    return {
        "n_time": n_time,
        "rule": rule,
        "epsilon": problem.secondaries[0].effective_epsilon,
        "iters": res.n_iter,
        "converged": res.converged,
        "seconds": time.perf_counter() - start,
        "cost": res.cost,
        "monge J=I": reference.cost,
        "gap": (res.cost - reference.cost) / reference.cost,
    }


def _print_table(rows: list[dict]) -> None:
    header = list(rows[0])
    print(" | ".join(f"{h:>14s}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]:14.4g}" if isinstance(row[h], float) else f"{row[h]!s:>14s}" for h in header))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--n-time", type=int, default=32)
    parser.add_argument("--support", default="200,1000,5000")
    parser.add_argument("--methods", default="chambolle_pock")
    parser.add_argument("--max-iter", type=int, default=5000)
    parser.add_argument(
        "--sinkhorn-sweeps",
        type=lambda v: v if v == "auto" else int(v),
        default=1,
        help="Sinkhorn sweeps per iteration: a number or 'auto' (more while the Sinkhorn state lags)",
    )
    parser.add_argument("--sinkhorn-max-iter", type=int, default=5000, help="sweep cap of the final cost evaluation")
    parser.add_argument("--oracle5", action="store_true", help="only oracle 5, both epsilon rules")
    args = parser.parse_args()
    if args.oracle5:
        print("oracle 5 (identity kernel, 60 cells, delta 0.3): gap to the Monge J = I solve, with the solver's")
        print("default epsilon and with tl's time-consistent one (the same up to 4 time steps)")
        _print_table([_oracle5(n_time, rule) for n_time in (4, 8, 16) for rule in ("default", "time_consistent")])
        return
    header = ["support", "method", "iters", "converged", "seconds", "ms/iter", "sinkhorn s", "prox s", "proj s"]
    header += ["peak MiB", "cost", "secondary", "epsilon", "threads", "warnings"]
    print(f"grid {args.grid}^2 x {args.n_time}, 10-D secondary, sinkhorn sweeps per iteration {args.sinkhorn_sweeps}")
    print(" | ".join(f"{h:>14s}" for h in header), flush=True)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
    for n_support in (int(s) for s in args.support.split(",")):
        for method in args.methods.split(","):
            task = (
                args.grid,
                args.n_time,
                n_support,
                method,
                args.max_iter,
                args.sinkhorn_sweeps,
                args.sinkhorn_max_iter,
            )
            row = pool.submit(_run_case, task).result()
            cells = [f"{row[h]:14.4g}" if isinstance(row[h], float) else f"{row[h]!s:>14s}" for h in header]
            print(" | ".join(cells), flush=True)
    pool.shutdown()


if __name__ == "__main__":
    main()
