"""Held-out predictions with hard and soft endpoints (``tau``), side by side in one run.

Graph syncot on the TIGON courses (one space, masses equal, default settings) holds out each inner time point and
predicts it with ``tau=None`` (hard ends), ``tau="auto"`` (the mean squared W2 between consecutive time points) and
multiples of that value; each row gives W1 divided by static OT's on the same held-out cells (below 1: syncot is
closer). Run ``python benchmarks/soft_endpoints.py`` (about 20-40 minutes on 2 CPU cores);
``--datasets bifurcation`` or ``--multiples 1`` runs less.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from _report import Report, add_argument

import sc_syncot as so
from sc_syncot.tl.graph_fit import interval_w2

COURSES = {
    "bifurcation": (so.datasets.tigon_bifurcation, "time_index", [2.0, 5.0]),
    "emt": (so.datasets.tigon_emt, "time_days", None),  # every inner time point
}


def heldout_ratio(adata, time_key: str, heldout: float, tau, seed: int = 0) -> tuple[float, float]:
    """syncot's W1 over static OT's at ``heldout``, and the seconds it took."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged / lost-mass warnings are in the table's spirit
        table = so.tl.evaluate_heldout(
            adata, time_key, heldout, "X_tigon", None, masses="equal", progress=False, geometry="graph", tau=tau,
            seed=seed,
        )  # fmt: skip
    w1 = table.set_index("method")["w1"]
    return float(w1["syncot"] / w1["static_ot"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(COURSES), choices=list(COURSES))
    parser.add_argument("--multiples", nargs="+", type=float, default=[0.3, 1.0, 3.0], help="of tau='auto'")
    add_argument(parser)
    args = parser.parse_args()
    report = Report(args.report)
    report.print(
        "Held-out W1 of graph syncot divided by static OT's (below 1: closer to the held-out cells), hard ends",
        "(tau=None) against soft ends: tau='auto' (the mean squared W2 between consecutive time points) and",
        "multiples of it. Masses equal, default graph settings.",
    )
    rows = []
    for name in args.datasets:
        loader, time_key, heldouts = COURSES[name]
        try:
            adata = loader()
        except so.datasets.DataNotFoundError as err:
            report.print(f"{name} skipped: {err}")
            continue
        tp = np.unique(adata.obs[time_key].to_numpy(float))
        x, times = np.asarray(adata.obsm["X_tigon"]), adata.obs[time_key].to_numpy(float)
        auto = float(np.mean(interval_w2(x, times, tp, seed=0)))
        for t in tp[1:-1] if heldouts is None else heldouts:
            settings = {"none": None, "auto": "auto"} | {f"{m:g} x auto": m * auto for m in args.multiples if m != 1}
            for label, tau in settings.items():
                ratio, seconds = heldout_ratio(adata, time_key, float(t), tau)
                rows.append({"data": name, "held out": f"{t:.3g}", "tau": label, "ratio": ratio, "seconds": seconds})
                print(f"{name} {t:.3g} tau={label}: {ratio:.3f} ({seconds:.0f} s)", flush=True)
    if rows:
        table = pd.DataFrame(rows).pivot_table(index=["data", "held out"], columns="tau", values="ratio", sort=False)
        report.print("\nW1 / static OT's W1 per held-out time point and tau")
        report.table(table, console=3)
        report.print("\nmedian over the rows")
        report.table(table.median().to_frame("median").T, console=3, index=False)
    report.write()


if __name__ == "__main__":
    main()
