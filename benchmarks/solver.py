"""Accuracy and speed of the grid solver against the closed forms of math.md section 6 and POT.

    python benchmarks/solver.py            # 32^2 x 16, 64^2 x 32, 128^2 x 32 (and 256^2 x 64 on a GPU)
    python benchmarks/solver.py --quick    # 32^2 x 16 and 64^2 x 32 only
    python benchmarks/solver.py --emd-max 4096   # POT emd2 up to this many grid cells (default 4096 = 64^2)
    python benchmarks/solver.py --modes eager    # eager iterations only (default: eager and compiled)
    python benchmarks/solver.py --sizes 128x32 --oracles linear_monge   # chosen grids and oracles

For every grid size and oracle it prints iterations and seconds to converge, seconds per iteration, the peak
memory of the solve (resident set of a fresh process for CPU runs, torch's allocator on CUDA), the relative error
against the closed form, and the ratio of the measured seconds per iteration to a memory-bandwidth bound: the time
of one torch copy, measured in the same run, that reads and writes as many bytes as a fused implementation must
move per iteration. The copy is of that size, not of one field, so that it runs from the memory level that holds
the iteration's data: on a 2-core CI machine (32 MiB L3) the 27 MiB of a 64^2 x 32 iteration copy at 100-160 GB/s,
the 108 MiB of a 128^2 x 32 one at ~45 GB/s (from memory). ``dct ms`` is the measured time of the projection's
transforms alone (one Poisson solve: forward and inverse DCT along every axis as dense cosine-matrix products, see
``sc_syncot/solvers/dct.py``), a floor set by arithmetic rather than memory on the CPU. For the balanced case it
also prints POT's exact ``ot.emd2`` between the two discrete densities on the same grid (value and seconds), side
by side with the dynamic solver.

Every case runs twice, eagerly and as ``torch.compile`` graphs (``solve(compile=True)``); the compiled row's
``setup s`` is the warm-up (120 iterations eagerly; compiled, a whole solve, so that every Newton count of the
proximal map that the timed solve takes has its graph), which holds the compilation (about 20 s from a cold cache,
a few seconds from the on-disk cache), and the timed solve after it runs on the compiled graphs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

from _report import Report, add_argument


def _bytes_per_iteration(n_cells: int, n_time: int, d: int, unbalanced: bool, itemsize: int) -> int:
    """Minimal memory traffic of one Chambolle-Pock iteration in a fused implementation.

    Fields: primal x (rho on Nt + 1 nodes, d momenta, [zeta]) and dual y (d + 1 [+ 1] centred channels), about
    ``F = d + 1 + unbalanced`` arrays of ``n_cells * n_time`` each. A fused iteration reads x and y and writes them
    back (4F), reads y again for the dual step after the projection (F), and the projection's potential makes
    one read and one write per axis for each of its two separable DCTs (4 (d + 1) arrays of one field each).
    """
    field = n_cells * n_time * itemsize
    channels = d + 1 + int(unbalanced)
    return int(field * (5 * channels + 4 * (d + 1)))


def _seconds_per_call(func, device, repeats: int = 20) -> float:
    """Mean seconds of ``func()`` after one warm-up call, synchronized on CUDA."""
    import torch

    func()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        func()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def _copy_seconds(n_bytes: int, device) -> float:
    """Seconds of one ``dst.copy_(src)`` that reads and writes ``n_bytes`` in all (float64 arrays of half that)."""
    import torch

    src = torch.rand(max(n_bytes // 16, 1), dtype=torch.float64, device=device)
    dst = torch.empty_like(src)
    return _seconds_per_call(lambda: dst.copy_(src), device)


def _transform_seconds(problem, device) -> float:
    """Seconds of the projection's Poisson solve alone (forward and inverse DCT along every axis, one division)."""
    import torch

    from sc_syncot.solvers.projection import BalanceProjector

    g = problem.grid
    rho = torch.as_tensor(problem.rho0, dtype=torch.float64, device=device)
    projector = BalanceProjector(g.n_time, g.spacing, g.shape, rho, rho, None)
    r = torch.rand(rho.shape[0], g.n_time, *g.shape, dtype=torch.float64, device=device)
    return _seconds_per_call(lambda: projector.solve(r), device)


def _rss_mib(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in MiB, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current resident set (Linux >= 4.0), so the next peak is the solve's own."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _run_case(args) -> dict:
    name, n, n_time, device_name, mode = args
    import torch

    from sc_syncot.solvers import resolve_device, solve
    from sc_syncot.solvers.oracles import ORACLES

    device = resolve_device(device_name)
    problem, exact = ORACLES[name](n, n_time)
    _reset_peak_rss()
    base_rss = _rss_mib("VmRSS")  # before the warm-up, whose freed memory the process may keep
    compiled = mode == "compiled"
    start = time.perf_counter()
    # warm-up: kernels, thread pools and compilation. Compiled, a whole solve: the proximal map's graph is compiled
    # per Newton count, and the counts a solve takes (2-5 on the oracles) are not all reached in its first hundred
    # iterations; a count met first in the timed solve put its compilation there (balanced Gaussians at 32^2 x 16
    # were timed at 3x the eager ms per iteration, the 2-step map's graph loading in the timed solve).
    solve(problem, device=device, max_iter=120 if not compiled else 5000, compile=compiled)
    setup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    res = solve(problem, device=device, compile=compiled)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mib("VmHWM") - base_rss
    traffic = _bytes_per_iteration(n * n, n_time, 2, problem.delta is not None, 8)
    bound = _copy_seconds(traffic, device)
    return {
        "oracle": name,
        "grid": f"{n}^2 x {n_time}",
        "mode": mode,
        "setup s": setup,
        "iters": res.n_iter,
        "converged": res.converged,
        "seconds": seconds,
        "ms/iter": 1e3 * seconds / res.n_iter,
        "bound ms/iter": 1e3 * bound,
        "dct ms": 1e3 * _transform_seconds(problem, device),
        "peak MiB": peak,
        "cost": res.cost,
        "exact": exact,
        "rel err": (res.cost - exact) / exact,
    }


def _print_row(header: list[str], row: dict) -> None:
    cells = []
    for h in header:
        val = row[h]
        if isinstance(val, float):
            cells.append(f"{val:13.3e}" if h in ("rel err",) else f"{val:13.4g}")
        else:
            cells.append(f"{val!s:>13s}")
    print(" | ".join(cells), flush=True)


def _emd(n: int, n_time: int) -> tuple[float, float]:
    import ot

    from sc_syncot.solvers.oracles import balanced_gaussians

    problem, _ = balanced_gaussians(n, n_time)
    g = problem.grid
    x = g.points().reshape(-1, 2)
    a = problem.rho0[0].ravel() * g.cell_volume
    b = problem.rho1[0].ravel() * g.cell_volume
    start = time.perf_counter()
    value = ot.emd2(a / a.sum(), b / b.sum(), ot.dist(x, x), numItermax=10**8)
    return float(value), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only 32^2 x 16 and 64^2 x 32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--emd-max", type=int, default=64 * 64, help="largest grid (cells) for POT emd2")
    parser.add_argument("--oracles", default="balanced_gaussians,linear_monge,pure_growth,two_bumps")
    parser.add_argument("--sizes", default=None, help="grids as N x Nt, e.g. 128x32,256x64 (overrides --quick)")
    parser.add_argument("--modes", default="eager,compiled", help="eager and/or compiled iterations")
    add_argument(parser)
    args = parser.parse_args()

    import pandas as pd
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    sizes = (
        [(32, 16), (64, 32)] + ([] if args.quick else [(128, 32)]) + ([(256, 64)] if cuda and not args.quick else [])
    )
    if args.sizes:
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    report = Report(args.report)
    report.print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {'cuda' if cuda else 'cpu'}")
    header = [
        "oracle",
        "grid",
        "mode",
        "setup s",
        "iters",
        "converged",
        "seconds",
        "ms/iter",
        "bound ms/iter",
        "x bound",
        "dct ms",
        "peak MiB",
        "cost",
        "exact",
        "rel err",
    ]
    print(" | ".join(f"{h:>13s}" for h in header))
    # A fresh process per solve (spawned, one task each), so that its peak memory is its own.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)
    table, compiled, emd = [], [], []  # for the report
    for n, n_time in sizes:
        for name in args.oracles.split(","):
            rows = {}
            for mode in args.modes.split(","):
                row = pool.submit(_run_case, (name, n, n_time, args.device, mode)).result()
                row["x bound"] = row["ms/iter"] / row["bound ms/iter"]
                rows[mode] = row
                table.append(row)
                _print_row(header, row)
            if len(rows) == 2:
                eager, fused = rows["eager"], rows["compiled"]
                r = {"oracle": name, "grid": row["grid"], "ms/iter": fused["ms/iter"] / eager["ms/iter"],
                     "seconds": fused["seconds"] / eager["seconds"],
                     "s with the compilation": fused["seconds"] + fused["setup s"]}  # fmt: skip
                compiled.append(r)
                print(
                    f"{'  ratio':>13s} | {r['grid']:>13s} | compiled / eager: ms/iter {r['ms/iter']:.2f}, seconds "
                    f"{r['seconds']:.2f} ({r['s with the compilation']:.1f} s with the compilation)",
                    flush=True,
                )
            if name == "balanced_gaussians" and n * n <= args.emd_max:
                value, seconds = _emd(n, n_time)
                first = next(iter(rows.values()))
                r = {"grid": first["grid"], "emd2 value": value, "emd2 s": seconds, "mode": first["mode"],
                     "dynamic value": first["cost"], "dynamic s": first["seconds"],
                     "values differ by": (first["cost"] - value) / value,
                     "time ratio dynamic / emd2": first["seconds"] / seconds}  # fmt: skip
                emd.append(r)
                print(
                    f"{'  POT emd2':>13s} | {r['grid']:>13s} | value {value:.6g} in {seconds:.2f} s;"
                    f" dynamic ({r['mode']}) {r['dynamic value']:.6g} in {r['dynamic s']:.2f} s: values differ by "
                    f"{r['values differ by']:+.2e}, time ratio dynamic/emd2 {r['time ratio dynamic / emd2']:.2f}",
                    flush=True,
                )
    pool.shutdown()
    # the Markdown in two narrower tables: iterations and accuracy, then time and memory
    speed = ["setup s", "seconds", "ms/iter", "bound ms/iter", "x bound", "dct ms", "peak MiB"]
    report.table(pd.DataFrame(table)[header].drop(columns=speed), index=False)
    report.table(pd.DataFrame(table)[["oracle", "grid", "mode", *speed]], index=False)
    if compiled:
        report.print("compiled / eager: ratios of ms per iteration and of seconds to converge")
        report.table(pd.DataFrame(compiled), index=False)
    if emd:
        report.print("POT's exact emd2 between the balanced case's discrete densities, against the dynamic solve")
        report.table(pd.DataFrame(emd), index=False)
    report.write()


if __name__ == "__main__":
    main()
