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

``--cellrank`` (when CellRank is installed; it is not a dependency) adds CellRank's fate probabilities of branch A
(``GPCCA.compute_fate_probabilities``, terminal states: the last time point's A and B cells) on each syncot fit's
``tl.transition_matrix`` (``PrecomputedKernel``; its default, no threshold, and for the default coupling also
CellRank's ``threshold="auto"``), and on moscot's plans through CellRank's own ``RealTimeKernel.from_moscot``, with
its default ``threshold="auto"`` and without a threshold. They score a Markov chain's forward probabilities, where
``pull`` counts descendants: a dividing branch weighs more in ``pull``, not in the chain.

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


def moscot_plans(adata) -> tuple[list[np.ndarray] | None, object]:
    """moscot's plans between consecutive time points, and its solved problem; ``(None, None)`` without moscot."""
    try:
        from moscot.problems.time import TemporalProblem  # noqa: PLC0415 (optional)
    except ImportError:
        return None, None
    sub = with_x(adata)
    sub.obs["time"] = sub.obs["time"].astype(float)
    problem = TemporalProblem(sub).prepare(time_key="time", joint_attr="X_pca").solve()
    tp = np.unique(sub.obs["time"])
    plans = [np.asarray(problem[(a, b)].solution.transport_matrix, float) for a, b in zip(tp[:-1], tp[1:], strict=True)]
    return plans, problem


def cellrank_share(adata, kernel) -> np.ndarray:
    """CellRank's fate probability of branch A for every cell, terminal states the last time point's A and B."""
    import cellrank as cr  # noqa: PLC0415 (optional)

    t = adata.obs["time"].to_numpy()
    branch = adata.obs["branch"].astype(str)
    terminal = branch.where((t == t.max()) & branch.isin(["A", "B"]).to_numpy())
    g = cr.estimators.GPCCA(kernel)
    g.set_terminal_states(terminal.astype("category"))
    g.compute_fate_probabilities(show_progress_bar=False)
    return np.asarray(g.fate_probabilities[["A"]]).ravel()


def with_x(adata):
    """The course with an empty ``X`` of the right shape: CellRank's estimators read ``X``'s dtype."""
    out = adata.copy()
    if out.X is None:
        out.X = np.zeros((out.n_obs, out.n_vars))
    return out


def zscored(z: np.ndarray) -> np.ndarray:
    """Centred and divided by one overall spread (not heldout.py's ``standardized`` per column): a basis keeps
    the shape of its variance and weighs as much as the other side by side."""
    return (z - z.mean(0)) / z.std()


def rows(noise: bool, cellrank: bool = False) -> list[dict]:
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
        if cellrank:
            for threshold in (None, "auto") if name == "syncot kantorovich" else (None,):
                out.append(cellrank_row(adata, label, name, threshold, lambda t, f=fitted: ours(f, t)))
    x, y = adata.obsm["X_pca"], adata.obsm["X_lsi"]
    for name, z in (("primary", x), ("secondary", y), ("both", np.hstack([zscored(x), zscored(y)]))):
        start = time.perf_counter()
        share = pulled_back(adata, exact_plans(adata, z))
        out.append({"course": label, "method": f"static OT {name}", "seconds": time.perf_counter() - start}
                   | scores(adata, share))  # fmt: skip
    start = time.perf_counter()
    plans, problem = moscot_plans(adata)
    if plans is not None:
        share = pulled_back(adata, plans)
        out.append({"course": label, "method": "moscot", "seconds": time.perf_counter() - start} | scores(adata, share))
    if plans is not None and cellrank:
        for threshold in ("auto", None):
            out.append(cellrank_row(adata, label, "moscot", threshold, lambda t: moscots(problem, t)))
    return out


def ours(fitted, threshold):
    """A syncot fit's ``tl.transition_matrix`` as CellRank's ``PrecomputedKernel``, and the AnnData it reads."""
    import cellrank as cr  # noqa: PLC0415 (optional)

    chain = with_x(fitted)
    so.tl.transition_matrix(chain, threshold=threshold)
    return chain, cr.kernels.PrecomputedKernel(chain, obsp_key="syncot_transitions")


def moscots(problem, threshold):
    """moscot's solved plans through CellRank's own ``RealTimeKernel``, and the AnnData it reads."""
    import cellrank as cr  # noqa: PLC0415 (optional)

    kernel = cr.kernels.RealTimeKernel.from_moscot(problem)
    kernel.compute_transition_matrix(threshold=threshold)
    return problem.adata, kernel


def cellrank_row(adata, label: str, name: str, threshold, kernel_of) -> dict:
    """The row of ``name + CellRank`` at ``threshold``: ``kernel_of(threshold)`` gives the AnnData and kernel."""
    start = time.perf_counter()
    data, kernel = kernel_of(threshold)
    share = cellrank_share(data, kernel)
    method = f"{name} + CellRank" + (f" ({threshold})" if threshold else "")
    row = {"course": label, "method": method, "seconds": time.perf_counter() - start} | scores(adata, share)
    print(row, flush=True)
    return row


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


def versions() -> str:
    """The libraries whose numerics the figures depend on (sparse solvers, OT), as installed."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    found = []
    for name in ("sc-syncot", "numpy", "scipy", "torch", "pot", "moscot", "cellrank"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", action="store_true", help="also the paired fit's held-out W1 (about 10 min)")
    parser.add_argument("--cellrank", action="store_true", help="also CellRank's fate probabilities (needs cellrank)")
    add_argument(parser)
    args = parser.parse_args()
    REPORT.path = args.report
    start = time.perf_counter()
    REPORT.print(f"versions: {versions()}\n")
    table = pd.DataFrame([r for noise in (False, True) for r in rows(noise, args.cellrank)])
    table = table.set_index(["course", "method"])
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
