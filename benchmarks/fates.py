"""Fates where the secondary leads: does synchronizing tell a progenitor's fate before its RNA does?

    python benchmarks/fates.py [--heldout] [--report docs/benchmarks/fates.md]

The course of ``heldout.py``'s leading rows: ``simulate_multiome(n_cells=2000, n_timepoints=6, seed=0,
secondary_leads=True)``, where every cell's fated branch (``.obs["fate"]``, A or B) shows in its ATAC one time step
before its RNA separates, and branch A divides while B dies. Each method gives every progenitor the share of its
descendants that are in branch A at the last time point; that share is scored against the cell's true fate by the
area under the ROC curve (AUROC: 0.5 is chance, 1 a perfect split), at each time point that has progenitors of
both fates. ``± se``: the standard deviation of the AUROC over 200 bootstrap resamples of those progenitors.

Methods, all on the same cells:

- ``syncot kantorovich``, ``syncot monge``, ``syncot paired``: ``tl.syncot`` (graph, ``masses="counts"``, weight
  1) with each coupling, then ``tl.pull(adata, "branch", "A")``; ``weight 0``: the same fit without the
  secondary's cost (its graph is still built in the joint space);
- ``static OT <space>``: exact plans (POT's ``emd``, uniform masses) between consecutive time points in the primary
  (10 PCs), the secondary (10 LSI components) or both side by side (each z-scored), A's share pulled back along
  them (each cell takes its plan row's mean of the next time point's shares);
- ``moscot``: moscot's ``TemporalProblem`` (``joint_attr`` the primary, its defaults), pulled back the same way,
  when moscot is installed (it is not a dependency).

The ``noise`` course is the same with its secondary replaced by Gaussian noise of the same shape: there the
secondary says nothing of fates, and the synchronized fits should score as their weight-0 fit.

``--heldout`` also measures what ``coupling="paired"`` costs in held-out predictions on both courses:
``tl.evaluate_heldout`` at t = 0.6 and 1.2 (as ``heldout.py``'s leading rows, whose Monge and Kantorovich figures
are in ``docs/benchmarks/heldout.md``), W1 of the paired fit over its weight-0 fit's, per space.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import pandas as pd
from _report import Report, add_argument
from sklearn.metrics import roc_auc_score

import sc_syncot as so

REPORT = Report()
N_BOOT = 200


def course(noise: bool):
    """The leading course, or the same with its secondary replaced by noise."""
    adata = so.datasets.simulate_multiome(n_cells=2000, n_timepoints=6, seed=0, secondary_leads=True)
    if noise:
        adata.obsm["X_lsi"] = np.random.default_rng(1).standard_normal(adata.obsm["X_lsi"].shape)
    return adata


def scores(adata, share: np.ndarray) -> dict[str, str]:
    """AUROC of the share against the fate among each time point's progenitors, with its bootstrap spread."""
    t = adata.obs["time"].to_numpy()
    fate = (adata.obs["fate"] == "A").to_numpy()
    progenitor = (adata.obs["branch"] == "progenitor").to_numpy()
    out = {}
    for s in np.unique(t):
        cells = np.flatnonzero(progenitor & (t == s))
        if len(np.unique(fate[cells])) < 2:
            continue
        rng = np.random.default_rng(0)
        boot = []
        for _ in range(N_BOOT):
            pick = rng.choice(cells, len(cells))
            if len(np.unique(fate[pick])) == 2:
                boot.append(roc_auc_score(fate[pick], share[pick]))
        out[f"t={s:g} ({len(cells)})"] = f"{roc_auc_score(fate[cells], share[cells]):.3f} ± {np.std(boot):.3f}"
    return out


def pulled_back(adata, plans: list[np.ndarray]) -> np.ndarray:
    """Branch A's share at the last time point, carried back through row-normalized plans between time points."""
    t = adata.obs["time"].to_numpy()
    tp = np.unique(t)
    share = np.full(len(t), np.nan)
    share[t == tp[-1]] = (adata.obs["branch"] == "A").to_numpy()[t == tp[-1]]
    for k in range(len(tp) - 2, -1, -1):
        plan = plans[k]
        share[t == tp[k]] = plan @ share[t == tp[k + 1]] / np.maximum(plan.sum(1), 1e-300)
    return share


def exact_plans(adata, z: np.ndarray) -> list[np.ndarray]:
    t = adata.obs["time"].to_numpy()
    tp = np.unique(t)
    plans = []
    for a, b in zip(tp[:-1], tp[1:], strict=True):
        cost = ot.dist(z[t == a], z[t == b])
        plans.append(ot.emd(ot.unif(len(cost)), ot.unif(cost.shape[1]), cost, numItermax=1_000_000))
    return plans


def moscot_plans(adata) -> list[np.ndarray] | None:
    try:
        from moscot.problems.time import TemporalProblem  # noqa: PLC0415 (optional)
    except ImportError:
        return None
    sub = adata.copy()
    sub.obs["time"] = sub.obs["time"].astype(float)
    problem = TemporalProblem(sub).prepare(time_key="time", joint_attr="X_pca").solve()
    tp = np.unique(sub.obs["time"])
    return [np.asarray(problem[(a, b)].solution.transport_matrix, float) for a, b in zip(tp[:-1], tp[1:], strict=True)]


def zscored(z: np.ndarray) -> np.ndarray:
    """Centred and divided by one overall spread (not heldout.py's ``standardized`` per column): a basis keeps
    the shape of its variance and weighs as much as the other side by side."""
    return (z - z.mean(0)) / z.std()


def rows(noise: bool) -> list[dict]:
    adata = course(noise)
    label = "noise" if noise else "leading"
    out = []
    for name, kwargs in (
        ("syncot kantorovich", {}),
        ("syncot monge", {"coupling": "monge"}),
        ("syncot paired", {"coupling": "paired"}),
        ("weight 0", {"weight": 0.0}),
    ):
        fitted = adata.copy()
        start = time.perf_counter()
        so.tl.syncot(fitted, "time", "X_pca", "X_lsi", masses="counts", progress=False, **kwargs)
        so.tl.pull(fitted, "branch", "A")
        seconds = time.perf_counter() - start
        converged = bool(fitted.uns["syncot"]["convergence"]["converged"])
        share = fitted.obs["syncot_pull_A"].to_numpy()
        out.append({"course": label, "method": name, "seconds": seconds, "converged": converged} | scores(adata, share))
        print(out[-1], flush=True)
    x, y = adata.obsm["X_pca"], adata.obsm["X_lsi"]
    for name, z in (("primary", x), ("secondary", y), ("both", np.hstack([zscored(x), zscored(y)]))):
        start = time.perf_counter()
        share = pulled_back(adata, exact_plans(adata, z))
        out.append({"course": label, "method": f"static OT {name}", "seconds": time.perf_counter() - start}
                   | scores(adata, share))  # fmt: skip
    start = time.perf_counter()
    plans = moscot_plans(adata)
    if plans is not None:
        share = pulled_back(adata, plans)
        out.append({"course": label, "method": "moscot", "seconds": time.perf_counter() - start} | scores(adata, share))
    return out


def heldout_rows() -> list[dict]:
    """W1 of the paired fit over its weight-0 fit's at t = 0.6 and 1.2, per space, on both courses."""
    out = []
    for noise in (False, True):
        adata = course(noise)
        for t in (0.6, 1.2):
            start = time.perf_counter()
            table = so.tl.evaluate_heldout(
                adata, "time", t, "X_pca", "X_lsi", coupling="paired", masses="counts", n_sample=500, progress=False
            )
            w1 = table.pivot(index="method", columns="space", values="w1")
            ratio = w1.loc["syncot"] / w1.loc["primary_only"]
            out.append({"course": "noise" if noise else "leading", "held out": f"t={t:g}"}
                       | {f"{space}: paired / weight 0": float(r) for space, r in ratio.items()}
                       | {"seconds": time.perf_counter() - start})  # fmt: skip
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", action="store_true", help="also the paired fit's held-out W1 (about 10 min)")
    add_argument(parser)
    args = parser.parse_args()
    REPORT.path = args.report
    start = time.perf_counter()
    table = pd.DataFrame([r for noise in (False, True) for r in rows(noise)]).set_index(["course", "method"])
    REPORT.print(
        "AUROC of each progenitor's share of descendants in branch A (at the last time point) against its true fate,",
        " per time point (progenitors there in brackets); ± the bootstrap spread. The branch choice shows in ATAC",
        " from t=0.6 and in RNA from t=1.2 (leading course); the noise course's secondary is Gaussian noise.",
    )
    REPORT.table(table.fillna(""), console=3)
    if args.heldout:
        REPORT.print(
            "\nheld-out W1 of coupling='paired' over its weight-0 fit's (tl.evaluate_heldout, masses='counts', 500",
            " cells per side; Monge and Kantorovich on the same rows: docs/benchmarks/heldout.md)",
        )
        REPORT.table(pd.DataFrame(heldout_rows()).set_index(["course", "held out"]), console=3)
    REPORT.print(f"\n{time.perf_counter() - start:.0f} s")
    REPORT.write()


if __name__ == "__main__":
    main()
