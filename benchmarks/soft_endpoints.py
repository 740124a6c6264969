"""Held-out predictions with hard and soft endpoints (``tau``), side by side in one run.

Graph syncot at default settings holds out each inner time point and predicts it with ``tau=None`` (hard ends),
``tau="auto"`` (the mean squared W2 between consecutive time points) and multiples of that value; each row gives
W1 divided by static OT's on the same held-out cells (below 1: syncot is closer), per space. The courses: TIGON's
EMT and bifurcation (one space, masses equal), the simulator with chromatin leading (RNA + ATAC, Kantorovich,
masses from the counts; t = 0.6 and 1.2 held out) and scGEM (expression + methylation, 10 standardized PCs each,
Kantorovich, masses equal). Run ``python benchmarks/soft_endpoints.py`` (about an hour on 2 CPU cores);
``--datasets bifurcation`` or ``--multiples 1`` (hard and auto only) runs less.
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


def _tigon(loader, time_key: str, heldouts) -> dict:
    return {"adata": loader(), "time_key": time_key, "heldouts": heldouts, "primary": "X_tigon", "secondary": None}


def _leading() -> dict:
    adata = so.datasets.simulate_multiome(n_cells=2000, n_timepoints=6, seed=0, secondary_leads=True)
    course = {"adata": adata, "time_key": "time", "heldouts": [0.6, 1.2], "primary": "X_pca", "secondary": "X_lsi"}
    return course | {"options": {"masses": "counts", "coupling": "kantorovich"}}


def _scgem() -> dict:
    from heldout import scgem_embedded

    adata = scgem_embedded(n_pcs=10)
    return {"adata": adata, "time_key": "time", "heldouts": [1.0, 2.0, 3.0], "primary": "X_expr", "secondary": "X_meth"}


COURSES = {
    "bifurcation": lambda: _tigon(so.datasets.tigon_bifurcation, "time_index", [2.0, 5.0]),
    "emt": lambda: _tigon(so.datasets.tigon_emt, "time_days", None),  # every inner time point
    "leading": _leading,
    "scgem": _scgem,
}


def heldout_ratios(course: dict, heldout: float, tau, seed: int = 0) -> tuple[dict, float]:
    """syncot's W1 over static OT's at ``heldout`` per space, and the seconds it took."""
    kw = {"masses": "equal"} | course.get("options", {})
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged / lost-mass warnings are in the table's spirit
        table = so.tl.evaluate_heldout(
            course["adata"], course["time_key"], heldout, course["primary"], course["secondary"], progress=False,
            geometry="graph", tau=tau, seed=seed, **kw,
        )  # fmt: skip
    w1 = table.pivot_table(index="method", columns="space", values="w1")
    return (w1.loc["syncot"] / w1.loc["static_ot"]).to_dict(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(COURSES), choices=list(COURSES))
    parser.add_argument("--multiples", nargs="+", type=float, default=[0.3, 1.0, 3.0], help="of tau='auto'")
    add_argument(parser)
    args = parser.parse_args()
    report = Report(args.report)
    report.print(
        "Held-out W1 of graph syncot divided by static OT's (below 1: closer to the held-out cells) per space, hard",
        "ends (tau=None) against soft ends: tau='auto' (the mean squared W2 between consecutive time points) and",
        "multiples of it. Default graph settings; masses equal except in the leading course (counts).",
    )
    rows = []
    for name in args.datasets:
        try:
            course = COURSES[name]()
        except so.datasets.DataNotFoundError as err:
            report.print(f"{name} skipped: {err}")
            continue
        adata, time_key = course["adata"], course["time_key"]
        tp = np.unique(adata.obs[time_key].to_numpy(float))
        x, times = np.asarray(adata.obsm[course["primary"]]), adata.obs[time_key].to_numpy(float)
        auto = float(np.mean(interval_w2(x, times, tp, seed=0)))
        heldouts = tp[1:-1] if course["heldouts"] is None else course["heldouts"]
        for t in heldouts:
            settings = {"none": None, "auto": "auto"} | {f"{m:g} x auto": m * auto for m in args.multiples if m != 1}
            for label, tau in settings.items():
                ratios, seconds = heldout_ratios(course, float(t), tau)
                for space, ratio in ratios.items():
                    rows.append(
                        {"data": name, "held out": f"{t:.3g}", "space": space, "tau": label, "ratio": ratio,
                         "seconds": seconds}
                    )  # fmt: skip
                    print(f"{name} {t:.3g} {space} tau={label}: {ratio:.3f} ({seconds:.0f} s)", flush=True)
    if rows:
        index = ["data", "held out", "space"]
        table = pd.DataFrame(rows).pivot_table(index=index, columns="tau", values="ratio", sort=False)
        report.print("\nW1 / static OT's W1 per held-out time point and tau")
        report.table(table, console=3)
        report.print("\nmedian over the rows")
        report.table(table.median().to_frame("median").T, console=3, index=False)
    report.write()


if __name__ == "__main__":
    main()
