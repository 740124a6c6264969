"""The ``sc-syncot`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = """examples:
  sc-syncot demo                       reconstruct a simulated RNA + ATAC time course into ./sc_syncot_demo
  sc-syncot demo --out results --coupling monge   a smooth map instead of a kernel, another folder
  sc-syncot run cells.h5ad --time-key day --primary X_pca --secondary X_lsi -o cells_syncot.h5ad
  sc-syncot run cells.h5ad --time-key day --primary X_pca --secondary X_lsi --coupling monge --weight 2
  sc-syncot run cells.h5ad --time-key day --primary X_pca --transitions   a Markov chain for CellRank in .obsp
  sc-syncot run cells.h5ad --time-key day --primary X_pca --secondary X_lsi X_adt --coupling kantorovich monge
"""


def _delta(text: str):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'auto' or 'none', got {text!r}") from None


def _sweeps(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', got {text!r}") from None


def _tau(text: str):
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, 'auto' or 'none' (a hard end), got {text!r}"
        ) from None


def _add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="reconstruct the dynamics of an .h5ad time course and write the results into a new .h5ad",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("input", help="AnnData .h5ad (or MuData .h5mu with mudata installed)")
    run.add_argument("-o", "--output", help="where to write the result (default: INPUT with a _syncot suffix)")
    run.add_argument("--time-key", required=True, help=".obs column of times")
    run.add_argument("--primary", required=True, help=".obsm key of the primary basis (e.g. X_pca)")
    run.add_argument(
        "--secondary",
        nargs="+",
        help=".obsm key(s) of the secondary basis or bases (e.g. X_lsi, or X_lsi X_adt); none: primary only",
    )
    run.add_argument(
        "--coupling",
        nargs="+",
        default="kantorovich",
        choices=["kantorovich", "monge", "paired"],
        help="how the spaces are linked: a kernel to k-means points of the secondary, a smooth map, or each graph "
        "node's own secondary state (paired); one for all secondaries or one each (default: %(default)s)",
    )
    run.add_argument(
        "--weight",
        type=float,
        nargs="+",
        default=1.0,
        help="secondary weight lambda, one for all secondaries or one each (default: %(default)s)",
    )
    run.add_argument(
        "--delta",
        type=_delta,
        default="auto",
        help="growth length scale: a number (primary units), 'auto' or 'none' for balanced (default: auto)",
    )
    run.add_argument(
        "--geometry",
        default="auto",
        choices=["auto", "grid", "graph"],
        help="fit on a grid over the first n-dims columns or a graph of cell states in all columns (default: auto, "
        "the graph when the primary basis has more than 3 columns and no grid option is given)",
    )
    run.add_argument("--n-dims", type=int, help="grid dimensions, the first columns of the primary (default: all)")
    run.add_argument("--n-nodes", type=int, default=2000, help="graph nodes (default: %(default)s)")
    run.add_argument("--n-neighbors", type=int, default=10, help="k of the graph's kNN edges (default: %(default)s)")
    run.add_argument("--n-bins", type=int, help="grid cells per axis (default: 32 with kantorovich coupling, else 64)")
    run.add_argument(
        "--n-time",
        type=int,
        help="time steps per interval (default: 4 with kantorovich, else 8 on a graph, 16 on a grid)",
    )
    run.add_argument(
        "--masses",
        default="equal",
        choices=["equal", "counts", "growth_prior"],
        help="population size per time point (default: %(default)s)",
    )
    run.add_argument("--n-support", type=int, default=200, help="kantorovich support points (default: %(default)s)")
    run.add_argument(
        "--epsilon", type=float, help="kantorovich entropic smoothing, in units of its cost (default: automatic)"
    )
    run.add_argument(
        "--tau",
        type=_tau,
        nargs="+",
        metavar="TAU",
        help="soft endpoints: KL weight of both ends ('auto': the mean squared W2 between time points), or of the "
        "start and the end ('none': hard); default: hard",
    )
    run.add_argument(
        "--time-warp",
        default="auto",
        choices=["auto", "none"],
        help="where times between samples sit on each interval's path: 'auto' (fitted to the course's speed) or "
        "'none' (constant speed) (default: %(default)s)",
    )
    run.add_argument("--tol", type=float, default=1e-6, help="solver tolerance (default: %(default)s)")
    run.add_argument("--max-iter", type=int, default=5000, help="solver iteration cap (default: %(default)s)")
    run.add_argument(
        "--sinkhorn-sweeps",
        type=_sweeps,
        default=1,
        help="Sinkhorn sweeps per iteration for kantorovich coupling: a number or 'auto' (default: %(default)s)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the k-means support (default: %(default)s)")
    run.add_argument("--key-added", default="syncot", help="where results go (default: %(default)s)")
    run.add_argument(
        "--transitions",
        nargs="?",
        const="all",
        default=None,
        type=_transitions_value,
        metavar="THRESHOLD",
        help="also write .obsp['<key>_transitions'] (graph fits): the course as a Markov chain for CellRank's "
        "PrecomputedKernel (tl.transition_matrix). THRESHOLD: 'all' (default: every entry kept; refused before the "
        "fit above 5e7 entries), 'auto', 'auto_local' or a percentage (CellRank's thinning rules); after INPUT, "
        "or as --transitions=all",
    )
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print what the fit chose (graph size, delta, epsilon, time warp) on standard error, and, when that is "
        "not a terminal (a log file), the iteration every 30 s",
    )


def _paths(args) -> tuple[Path, Path]:
    """The input file and the output path, checked before anything is read or solved."""
    src = Path(args.input)
    if not src.is_file():
        raise ValueError(f"input: no such file {str(src)!r}")
    out = Path(args.output) if args.output else src.with_name(f"{src.stem}_syncot{src.suffix}")
    if out.is_dir():
        raise ValueError(f"--output: {str(out)!r} is a directory; expected a file name")
    if not out.parent.is_dir():
        raise ValueError(f"--output: the directory {str(out.parent)!r} does not exist")
    return src, out


def _temporary(out: Path) -> Path:
    """An empty file next to ``out``, written first and renamed to ``out`` at the end (so also a write test).

    A failed or interrupted run then never leaves a half-written ``out``, nor damages the input when ``out`` is
    the input itself.
    """
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
    except OSError as err:
        raise ValueError(f"--output: cannot write in the directory {str(out.parent)!r} ({err.strerror})") from None
    os.close(fd)
    return Path(name)


def _read(path: Path):
    try:
        if path.suffix == ".h5mu":
            import mudata

            return mudata.read_h5mu(path)
        import anndata

        return anndata.read_h5ad(path)
    except ImportError as err:
        raise ValueError(f"input: reading {str(path)!r} (.h5mu) needs mudata: pip install mudata") from err
    except Exception as err:  # noqa: BLE001 (h5py, anndata and mudata raise many kinds for files they cannot read)
        # truncated or not HDF5 (OSError), HDF5 without AnnData groups (KeyError), other HDF5 layouts (TypeError,
        # anndata's IORegistryError, ...): whatever the reader met, the file is not one it can read
        kind = "MuData .h5mu" if path.suffix == ".h5mu" else "AnnData .h5ad"
        raise ValueError(
            f"input: cannot read {str(path)!r} as an {kind} file (truncated, or another format?): "
            f"{type(err).__name__}: {err}"
        ) from err


def _write(data, tmp: Path, out: Path) -> None:
    """Write into ``tmp``, then move it onto ``out`` in one step, with the permissions a new file would get."""
    if hasattr(data, "mod"):  # MuData
        data.write(tmp)
    else:
        data.write_h5ad(tmp)
    if out.exists():
        mode = out.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)
    os.replace(tmp, out)


class Terminated(BaseException):
    """A termination signal (SIGTERM from a batch scheduler's time limit, SIGHUP), raised where the run is."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# Signals that end a run the way Ctrl-C (SIGINT, a KeyboardInterrupt) does: the temporary output is removed.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _stopped_cleanly():
    """Turn termination signals into :class:`Terminated` while the block runs, so that its ``finally`` clauses run.

    The default action of SIGTERM ends the process at once, leaving the temporary file beside the output.
    Only signals left at their default action are taken (``nohup`` ignores SIGHUP, a caller may have its own
    handler). Handlers can only be set from the main thread; elsewhere (a worker thread) the block runs as is.
    """

    def stop(signum, frame):
        raise Terminated(signum)

    previous = {}
    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:  # an ignored SIGHUP (nohup) or a caller's handler stays
                previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args) -> int:
    from . import settings, tl

    src, out = _paths(args)
    before = settings._verbosity  # restored after: main() can be called from Python too
    if args.verbose:
        settings.verbosity = 2
    try:
        with _stopped_cleanly():
            return _fit_and_write(tl, args, src, out)
    finally:
        settings.verbosity = before


def _tau_pair(values):
    """``--tau``: absent (hard ends), one value for both ends, or two (start, end)."""
    if values is None:
        return None
    if len(values) > 2 or (len(values) == 2 and "auto" in values):
        raise ValueError(f"--tau: expected one value ('auto' included) or two numbers (start, end), got {values}")
    return values[0] if len(values) == 1 else tuple(values)


def _one_or_each(values):
    """An option given once as its value (one secondary keeps the one-secondary outputs), several as a list."""
    return values[0] if isinstance(values, list) and len(values) == 1 else values


def _transitions_value(value: str) -> str:
    """Check ``--transitions``'s value as argparse reads it, so that a mistake is named before any file is read."""
    from .tl._transitions import check_options

    try:  # tl.transition_matrix's own check of the threshold, in the command line's words
        check_options(_transitions_threshold(value), "connectivities", 15)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a percentage is in [0, 100], got {value!r}") from None
    return value


def _transitions_threshold(value: str):
    """``--transitions``'s value as ``tl.transition_matrix``'s ``threshold``."""
    if value in ("all", "auto", "auto_local"):
        return None if value == "all" else value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all', 'auto', 'auto_local' or a percentage, got {value!r} (a path? put --transitions after "
            "INPUT, or write --transitions=all)"
        ) from None


def _check_transitions(data, args) -> None:
    """``--transitions`` needs a graph fit and, keeping every entry, a size that fits: refused before the fit."""
    import warnings

    import numpy as np

    from .pp.inputs import times
    from .tl._transitions import check_size
    from .tl.graph_fit import resolve_geometry
    from .tl.syncot import _n_columns, graph_options

    threshold = _transitions_threshold(args.transitions)  # checked as argparse read it (_transitions_value)
    n_columns = _n_columns(data, args.primary)
    wants_graph = graph_options(args.coupling, args.n_nodes, args.n_neighbors)
    geometry, why = resolve_geometry(args.geometry, n_columns, args.n_dims, {"n_bins": args.n_bins}, wants_graph)
    if geometry != "graph":
        raise ValueError(
            f"--transitions: a cell-to-cell matrix needs a graph fit, and this one would be on the grid ({why}); "
            "pass --geometry graph"
        )
    if threshold is None:
        with warnings.catch_warnings():  # how the times were read: the fit says it
            warnings.simplefilter("ignore")
            _, counts = np.unique(times(data, args.time_key, args.primary).to_numpy(), return_counts=True)
        check_size(list(counts), hint="pass --transitions auto (or a percentage) to keep only the larger ones")


def _fit_and_write(tl, args, src: Path, out: Path) -> int:
    tmp = _temporary(out)
    try:
        data = _read(src)
        if args.transitions is not None:
            _check_transitions(data, args)
        tl.syncot(
            data,
            args.time_key,
            args.primary,
            _one_or_each(args.secondary),
            coupling=_one_or_each(args.coupling),
            weight=_one_or_each(args.weight),
            delta=args.delta,
            geometry=args.geometry,
            n_dims=args.n_dims,
            n_bins=args.n_bins,
            n_nodes=args.n_nodes,
            n_neighbors=args.n_neighbors,
            n_time=args.n_time,
            masses=args.masses,
            n_support=args.n_support,
            epsilon=args.epsilon,
            tau=_tau_pair(args.tau),
            time_warp=None if args.time_warp == "none" else args.time_warp,
            tol=args.tol,
            max_iter=args.max_iter,
            sinkhorn_sweeps=args.sinkhorn_sweeps,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            key_added=args.key_added,
        )
        if args.transitions is not None:
            tl.transition_matrix(data, args.key_added, threshold=_transitions_threshold(args.transitions))
        _write(data, tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # gone already once renamed
    res = data.uns[args.key_added]
    conv = res["convergence"]
    costs = ", ".join(f"{k} {float(v.sum()):.4g}" for k, v in res["costs"].items())
    state = "converged" if conv["converged"] else "NOT converged (the warning above says whether --max-iter helps)"
    print(
        f"{len(res['time_points']) - 1} interval(s) {state} in {conv['n_iter']} iterations; costs summed over "
        f"intervals: {costs}; written to {out}"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sc-syncot",
        description="Unbalanced synchronized optimal transport for single-cell time courses.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="reconstruct a simulated RNA + ATAC time course and write results and figures",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="sc_syncot_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n-cells", type=int, default=1500, help="simulated cells (default: %(default)s)")
    demo.add_argument("--n-bins", type=int, help="fit on a grid over PCs 1-2 with this many cells per axis")
    demo.add_argument("--n-nodes", type=int, help="graph nodes (default: 1000; not with --n-bins)")
    demo.add_argument(
        "--n-time",
        type=int,
        help="time steps per interval (default: 4 with kantorovich, else 8 on a graph, 16 on a grid)",
    )
    demo.add_argument("--weight", type=float, default=1.0, help="secondary weight lambda (default: %(default)s)")
    demo.add_argument(
        "--coupling", default="kantorovich", choices=["kantorovich", "monge", "paired"], help="(default: %(default)s)"
    )
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_run(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-syncot``."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        try:
            run_demo(
                args.out,
                n_cells=args.n_cells,
                n_bins=args.n_bins,
                n_nodes=args.n_nodes,
                n_time=args.n_time,
                weight=args.weight,
                coupling=args.coupling,
                device=args.device,
                progress=not args.no_progress,
            )
        except ValueError as err:
            print(f"sc-syncot demo: {err}", file=sys.stderr)
            return 2
    if args.command == "run":
        try:
            return _run(args)
        except ValueError as err:  # bad input: nothing was written
            print(f"sc-syncot run: {err}", file=sys.stderr)
            return 2
        except (FloatingPointError, OSError) as err:  # a diverged solve, a failed write: nothing was written
            print(f"sc-syncot run: {err}; no output was written", file=sys.stderr)
            return 1
        except Terminated as err:  # the temporary output is gone (finally clauses ran)
            print(
                f"sc-syncot run: stopped by {signal.Signals(err.signum).name}; no output was written", file=sys.stderr
            )
            return 128 + err.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
