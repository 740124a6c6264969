"""The ``sc-syncot`` command line."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  sc-syncot demo                       solve the built-in example, write figures to ./sc_syncot_demo
  sc-syncot demo --out results --n 64  a finer grid, another folder
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sc-syncot",
        description="Unbalanced synchronized optimal transport for single-cell time courses.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the built-in example and write its figures",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", default="sc_syncot_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n", type=int, default=48, help="grid cells per space axis (default: %(default)s)")
    demo.add_argument("--n-time", type=int, default=24, help="time steps (default: %(default)s)")
    demo.add_argument("--weight", type=float, default=1.0, help="secondary weight lambda (default: %(default)s)")
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sc-syncot``."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        try:
            run_demo(
                args.out,
                n=args.n,
                n_time=args.n_time,
                weight=args.weight,
                device=args.device,
                progress=not args.no_progress,
            )
        except ValueError as err:
            print(f"sc-syncot demo: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
