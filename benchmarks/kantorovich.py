"""Speed, memory and exactness of the Kantorovich-secondary solver.

    python benchmarks/kantorovich.py --ratios               # Kantorovich vs weight 0: scGEM, simulated course, 64^2 x 8
    python benchmarks/kantorovich.py --oracle5              # math.md oracle 5 on 32^2, n_time 4 to 32
    python benchmarks/kantorovich.py --oracle5 --oracle5-grid 64 --oracle5-steps 32   # 64^2 x 32 (slow)
    python benchmarks/kantorovich.py --time-steps           # iterations against n_time, Kantorovich and weight 0
    python benchmarks/kantorovich.py --map-oracle           # both discretizations against an exact Monge solve
    python benchmarks/kantorovich.py                        # 200, 1000, 5000 support points at 64^2 x 32
    python benchmarks/kantorovich.py --support 200 --methods chambolle_pock,pd3o,condat_vu --max-iter 2000

``--ratios`` fits each problem twice in fresh processes, with the Kantorovich secondary (default settings) and
at weight 0 on the same grid, and prints iterations, seconds, ms per iteration, the Sinkhorn share of the time (the
Gibbs-kernel sums and the marginal updates), the peak resident memory of the fit (VmHWM of /proc/self/status, reset
before it), the time ratio and the ratio of CPU time (``time.process_time``: all threads of the process, less
sensitive to other load on the machine than wall time; ``--threads 1`` makes it the time of one core). The
problems: scGEM (../shared/data; expression PCA primary, methylation secondary, on a 32^2 x 4 grid over the first
two PCs, ``tl.syncot``'s other defaults: 200 support points), the simulated four-time-point course of
``sc-syncot demo`` (its settings: 1500 cells, ``masses="counts"``, the same grid) and
:func:`sc_syncot.solvers.oracles.embedded_secondary` at 64^2 x 8 (200 points).

``--oracle5``: two Gaussians (centres (0.4, 0.4) -> (0.6, 0.55), sigma 0.08, mass 1 -> 1.5, delta 0.5) with an
identity kernel on the grid points against the Monge solve with ``J = I`` (math.md oracle 5), for the debiased
divergence at its default epsilon and, at the first n_time, the plain entropic one (``debias=False``).

``--time-steps``: :func:`sc_syncot.solvers.oracles.embedded_secondary` (200 support points, 10-D) on a
``--grid``^2 grid at n_time 4, 8, 16 and 32, at weights 1, 0.1 and 0, each in a fresh process with
``max_iter`` 8000 (above the default 5000, to see where the iterations go): iterations, seconds and their ratios
to weight 0, for both discretizations of the secondary (``KantorovichSecondary(discretization=...)``). The pairs'
iterations grow with n_time while weight 0's do not (the secondary's time chain); the graph's do not.

``--map-oracle``: an identity kernel onto the images ``T(x)`` of the grid cells under the smooth map
:func:`sc_syncot.solvers.oracles.smooth_embedding` into 10-D is the Monge secondary with ``T``, whose solve is exact
by a change of variables: the secondary's action of each discretization against it, on 16^2 and 32^2 grids at
n_time 4 and 16.

The default mode runs :func:`sc_syncot.solvers.oracles.embedded_secondary` (a 10-dimensional secondary whose
support points are random points of a smooth image of the square, a sparse row-stochastic kernel) for several
support sizes and splittings, one solve per fresh process, with the split of the time between Sinkhorn, the
proximal map of the primary action and the projection onto the balance equation.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
from _report import Report, add_argument
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


def _oracle5(args) -> dict:
    n, n_time, debias = args
    import numpy as np
    import scipy.sparse as sp

    from sc_syncot.solvers import Grid, KantorovichSecondary, MongeSecondary, SyncOTProblem, solve
    from sc_syncot.solvers.closed_forms import gaussian_density

    grid = Grid([(0, 1), (0, 1)], (n, n), n_time)
    rho0 = gaussian_density(grid, [0.4, 0.4], 0.08**2 * np.eye(2))
    rho1 = gaussian_density(grid, [0.6, 0.55], 0.08**2 * np.eye(2), mass=1.5)
    monge = MongeSecondary(np.broadcast_to(np.eye(2), (n, n, 2, 2)), 1.0)
    start = time.perf_counter()
    reference = solve(SyncOTProblem(grid, rho0, rho1, delta=0.5, secondaries=[monge]))
    monge_seconds = time.perf_counter() - start
    identity = sp.identity(n * n, format="csr")
    kant = KantorovichSecondary(identity, grid.points().reshape(-1, 2), delta=0.5, debias=debias)
    start = time.perf_counter()
    res = solve(SyncOTProblem(grid, rho0, rho1, delta=0.5, secondaries=[kant]))
    seconds = time.perf_counter() - start
    return {
        "grid": f"{n}^2 x {n_time}",
        "debias": debias,
        "epsilon": kant.effective_epsilon,
        "iters": res.n_iter,
        "converged": res.converged,
        "seconds": seconds,
        "monge iters": reference.n_iter,
        "monge s": monge_seconds,
        "cost": res.cost,
        "monge J=I": reference.cost,
        "gap": (res.cost - reference.cost) / reference.cost,
    }


def _time_step_case(args) -> dict:
    """One solve of ``--time-steps`` in this (fresh) process: ``(n, n_time, weight, discretization)``."""
    n, n_time, weight, discretization = args
    from sc_syncot.solvers import SyncOTProblem, solve
    from sc_syncot.solvers.oracles import embedded_secondary

    problem = embedded_secondary(n, n_time, n_support=200, weight=weight)
    sec = dataclasses.replace(problem.secondaries[0], discretization=discretization)
    problem = SyncOTProblem(problem.geometry, problem.rho0[0], problem.rho1[0], delta=problem.delta, secondaries=[sec])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged solves are rows of the table
        res = solve(problem, max_iter=8000)
    seconds = time.perf_counter() - start
    return {"grid": f"{n}^2 x {n_time}", "discretization": discretization, "weight": weight,
            "iters": res.n_iter, "converged": res.converged, "seconds": seconds,
            "ms/iter": 1e3 * seconds / res.n_iter, "cost": res.cost,
            "secondary action": res.secondary_actions["secondary_0"]}  # fmt: skip


def _time_steps(pool, n: int, report: Report) -> None:
    cases = [
        (n, n_time, w, d) for n_time in (4, 8, 16, 32) for w, d in
        ((1.0, "pairs"), (1.0, "graph"), (0.1, "pairs"), (0.1, "graph"), (0.0, "pairs"), (0.0, "graph"))
    ]  # fmt: skip
    rows = [pool.submit(_time_step_case, case).result() for case in cases]
    _print_table(_by_weight_zero(rows, "grid", {"iter ratio": "iters", "time ratio": "seconds"}), report)


def _map_case(args) -> dict:
    """One solve of ``--map-oracle`` in this (fresh) process: ``(n, n_time, secondary kind)``."""
    n, n_time, kind = args
    import scipy.sparse as sp

    from sc_syncot.solvers import Grid, KantorovichSecondary, MongeSecondary, SyncOTProblem, oracles, solve

    grid = Grid(oracles.UNIT_BOX, (n, n), n_time)

    def t_map(points):
        return oracles.smooth_embedding(points, 10)

    rho0 = oracles.gaussian_density(grid, oracles.MEAN0, oracles.COV0)
    rho1 = oracles.gaussian_density(grid, oracles.MEAN1, oracles.COV1, mass=1.5)
    if kind == "monge":
        sec = MongeSecondary(t_map)
    else:
        identity = sp.identity(grid.n_cells, format="csr")
        sec = KantorovichSecondary(identity, t_map(grid.points().reshape(-1, 2)), discretization=kind)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = solve(SyncOTProblem(grid, rho0, rho1, delta=0.3, secondaries=[sec]), max_iter=8000)
    return {"grid": f"{n}^2 x {n_time}", "secondary": kind, "iters": res.n_iter, "converged": res.converged,
            "seconds": time.perf_counter() - start, "cost": res.cost,
            "secondary action": res.secondary_actions["secondary_0"]}  # fmt: skip


def _map_oracle(pool, report: Report) -> None:
    cases = [(n, n_time, kind) for n in (16, 32) for n_time in (4, 16) for kind in ("monge", "graph", "pairs")]
    rows = [pool.submit(_map_case, case).result() for case in cases]
    for row in rows:
        exact = next(r for r in rows if r["grid"] == row["grid"] and r["secondary"] == "monge")
        row["action / Monge - 1"] = row["secondary action"] / exact["secondary action"] - 1
    _print_table(rows, report)


def _by_weight_zero(rows: list[dict], group: str, ratios: dict[str, str]) -> list[dict]:
    """``rows`` with ``ratios``: each named column over that of the first weight-0 row of its ``group``."""
    for row in rows:
        zero = next(r for r in rows if r[group] == row[group] and r["weight"] == 0.0)
        row.update({name: row[column] / zero[column] for name, column in ratios.items()})
    return rows


def _ratio_case(args) -> dict:
    """One fit of ``--ratios`` in this (fresh) process: ``(name, weight, threads)``."""
    name, weight, threads = args
    import torch

    if threads:
        torch.set_num_threads(threads)
    from sc_syncot.solvers import scaling

    clock = {"sinkhorn": 0.0}
    _timed(scaling.EntropicSupport, "log_sum", "sinkhorn", clock)
    _timed(scaling, "_hk_marginal", "sinkhorn", clock)
    fit = _FITS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = fit(None, weight, prepare=True)
        _reset_peak_rss()
        base = _rss_mib("VmRSS")
        start, cpu = time.perf_counter(), time.process_time()
        n_iter, converged = fit(prepared, weight)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "problem": name,
        "weight": weight,
        "iters": n_iter,
        "converged": converged,
        "seconds": seconds,
        "cpu s": cpu,
        "ms/iter": 1e3 * seconds / n_iter,
        "sinkhorn share": clock["sinkhorn"] / seconds,
        "peak MiB": _rss_mib("VmHWM") - base,
        "threads": torch.get_num_threads(),
        "warnings": len([w for w in caught if issubclass(w.category, RuntimeWarning)]),
    }


def _tl_fit(adata, weight, primary, secondary, **kwargs):
    import numpy as np

    import sc_syncot as so

    so.tl.syncot(
        adata, "time", primary, secondary, weight=weight, n_dims=2, n_bins=32, n_time=4, progress=False, **kwargs
    )  # a grid over the first two PCs (10 columns would take the graph)
    conv = adata.uns["syncot"]["convergence"]
    return int(np.max(conv["n_iter"])), bool(np.all(conv["converged"]))


def _scgem(prepared, weight, prepare=False):
    if prepare:
        import scanpy as sc

        import sc_syncot as so

        adata = so.datasets.scgem()
        sc.pp.pca(adata, n_comps=10)
        return adata
    return _tl_fit(prepared, weight, "X_pca", "methylation")


def _course(prepared, weight, prepare=False):
    if prepare:
        import sc_syncot as so

        return so.datasets.simulate_multiome(n_cells=1500, n_timepoints=4, seed=0)
    return _tl_fit(prepared, weight, "X_pca", "X_lsi", masses="counts")  # the settings of sc-syncot demo


def _grid64(prepared, weight, prepare=False):
    from sc_syncot.solvers import SyncOTProblem, solve
    from sc_syncot.solvers.oracles import embedded_secondary

    if prepare:
        return embedded_secondary(64, 8, n_support=200, weight=1.0)
    problem = prepared if weight else SyncOTProblem(prepared.grid, prepared.rho0, prepared.rho1, delta=prepared.delta)
    res = solve(problem)
    return res.n_iter, res.converged


_FITS = {"scGEM": _scgem, "demo course": _course, "64^2 x 8, 10-D": _grid64}


def _ratios(pool, threads: int | None, report: Report) -> None:
    rows = []
    for name in _FITS:
        for weight in (0.0, 1.0):
            rows.append(pool.submit(_ratio_case, (name, weight, threads)).result())
            print(f"  {name}, weight {weight}: {rows[-1]['seconds']:.1f} s", flush=True)
    ratios = {"time ratio": "seconds", "cpu ratio": "cpu s", "iter ratio": "iters"}
    _print_table(_by_weight_zero(rows, "problem", ratios), report)


def _print_row(row: dict, header: list[str]) -> None:
    print(
        " | ".join(f"{row[h]:14.4g}" if isinstance(row[h], float) else f"{row[h]!s:>14s}" for h in header), flush=True
    )


def _print_table(rows: list[dict], report: Report) -> None:
    header = list(rows[0])
    print(" | ".join(f"{h:>14s}" for h in header))
    for row in rows:
        _print_row(row, header)
    report.table(pd.DataFrame(rows), index=False)


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
    parser.add_argument("--oracle5", action="store_true", help="math.md oracle 5 (identity kernel) on a 2-D grid")
    parser.add_argument("--oracle5-grid", type=int, default=32, help="cells per axis of the oracle 5 grid")
    parser.add_argument("--oracle5-steps", default="4,8,16,32", help="n_time of the oracle 5 runs (plain: the first)")
    parser.add_argument("--ratios", action="store_true", help="Kantorovich vs weight 0 on scGEM, sim. course, 64^2")
    parser.add_argument("--time-steps", action="store_true", help="iterations against n_time, weights 1, 0.1 and 0")
    parser.add_argument("--map-oracle", action="store_true", help="identity kernel onto a map's images vs Monge")
    parser.add_argument("--threads", type=int, default=None, help="--ratios: torch threads per fit (default: torch's)")
    add_argument(parser)
    args = parser.parse_args()
    pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
    report = Report(args.report)
    if args.ratios:
        report.print("Kantorovich secondary (weight 1, default settings) against weight 0 on the same grid")
        _ratios(pool, args.threads, report)
    elif args.time_steps:
        report.print(f"Kantorovich secondary (200 points, 10-D) against weight 0 on {args.grid}^2, n_time 4 to 32")
        _time_steps(pool, args.grid, report)
    elif args.map_oracle:
        report.print("identity kernel onto the images T(x) of the grid cells in 10-D, against the Monge solve with T")
        _map_oracle(pool, report)
    elif args.oracle5:
        steps = [int(v) for v in args.oracle5_steps.split(",")]
        cases = [(args.oracle5_grid, n_time, True) for n_time in steps] + [(args.oracle5_grid, steps[0], False)]
        report.print("oracle 5: identity kernel on the grid points, against the Monge solve with J = I (gap)")
        _print_table([pool.submit(_oracle5, case).result() for case in cases], report)
    else:
        _support_sizes(pool, args, report)
    pool.shutdown()
    report.write(args.threads if args.ratios else None)


def _support_sizes(pool, args, report: Report) -> None:
    """The default mode: one solve of the embedded secondary per support size and method, rows printed as they come."""
    header = ["support", "method", "iters", "converged", "seconds", "ms/iter", "sinkhorn s", "prox s", "proj s"]
    header += ["peak MiB", "cost", "secondary", "epsilon", "threads", "warnings"]
    report.print(
        f"grid {args.grid}^2 x {args.n_time}, 10-D secondary, sinkhorn sweeps per iteration {args.sinkhorn_sweeps}"
    )
    print(" | ".join(f"{h:>14s}" for h in header), flush=True)
    rows = []
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
            rows.append(pool.submit(_run_case, task).result())
            _print_row(rows[-1], header)
    report.table(pd.DataFrame(rows)[header], index=False)


if __name__ == "__main__":
    main()
