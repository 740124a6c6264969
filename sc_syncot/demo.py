"""The built-in example behind ``sc-syncot demo``: a simulated multiome time course, reconstructed end to end.

Cells of a bifurcating process with branch-specific proliferation and death are measured at four time points in
RNA and ATAC (:func:`sc_syncot.datasets.simulate_multiome`). The dynamics is reconstructed in the first two RNA
principal components, synchronized with the ATAC LSI, written into the AnnData, compared with the simulation's
ground truth, and drawn.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from . import datasets, pl, tl

FIGURES = ("density_path", "velocity", "secondary_path", "growth", "fates", "trajectories")


def _truth_agreement(adata) -> tuple[float, float]:
    """Median cosine of the recovered and true velocities, Spearman correlation of the growth rates."""
    v = adata.obsm["syncot_velocity"]
    truth = adata.obsm["velocity_pca"][:, : v.shape[1]]  # the columns fitted: all on a graph, n_dims on a grid
    cos = (v * truth).sum(1) / np.maximum(np.linalg.norm(v, axis=1) * np.linalg.norm(truth, axis=1), 1e-300)
    rho = spearmanr(adata.obs["syncot_growth"], adata.obs["growth_rate"])[0]
    return float(np.median(cos)), float(rho)


def _figures(adata, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    draw = {
        "density_path": lambda: pl.density_path(adata, return_fig=True),
        "velocity": lambda: pl.velocity(adata, color="branch", return_fig=True),  # every cell's own velocity
        "secondary_path": lambda: pl.secondary_path(adata, return_fig=True),
        "growth": lambda: pl.growth(adata, per_cell=True, return_fig=True),
        "fates": lambda: pl.fates(adata, ["syncot_pull_A", "syncot_pull_B"], return_fig=True),
        "trajectories": lambda: pl.trajectories(adata, return_fig=True),
    }
    paths = []
    for name in FIGURES:
        fig = draw[name]()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


DEMO_NODES = 1000  # graph nodes: the demo within a minute or two on 2 CPU cores


def run_demo(
    out: str | Path = "sc_syncot_demo",
    n_cells: int = 1500,
    n_bins: int | None = None,
    n_time: int | None = None,
    weight: float = 1.0,
    coupling: str = "kantorovich",
    device: str = "auto",
    progress: bool = True,
    seed: int = 0,
    n_nodes: int | None = None,
):
    """Simulate, reconstruct, compare with the truth; write ``demo.h5ad`` and figures into ``out``.

    The settings are those of :func:`sc_syncot.tl.syncot` (Kantorovich coupling, on the graph of cell states in all
    10 PCs with ``n_nodes`` nodes, 1,000 to keep the demo within a minute or two on 2 CPU cores; with ``n_bins``, on
    a grid over the first two PCs; ``n_time`` ``None`` takes the geometry's default).
    Returns the AnnData with the results.
    """
    if n_nodes is not None and n_bins is not None:
        raise ValueError(f"n_nodes={n_nodes}: a graph option, and n_bins={n_bins} asks for the grid; give one of them")
    n_nodes = DEMO_NODES if n_nodes is None else n_nodes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata = datasets.simulate_multiome(n_cells=n_cells, n_timepoints=4, seed=seed)
    start = time.perf_counter()
    # the graph of cell states in all 10 PCs by default; a grid over the first two when n_bins is given
    tl.syncot(
        adata, "time", "X_pca", "X_lsi", coupling=coupling, weight=weight, n_dims=None if n_bins is None else 2,
        n_bins=n_bins, n_time=n_time, masses="counts", device=device, progress=progress,
        **({"n_nodes": n_nodes} if n_bins is None else {}),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    last = float(adata.obs["time"].max())
    for branch in ("A", "B"):
        tl.pull(adata, "branch", branch, time=last)
    tl.trajectories(adata, n_particles=150, seed=seed)
    figures = _figures(adata, out)
    adata.write_h5ad(out / "demo.h5ad")
    cos, rho = _truth_agreement(adata)
    res = adata.uns["syncot"]
    costs = {k: float(np.sum(v)) for k, v in res["costs"].items()}
    print(
        f"{adata.n_obs} simulated cells, {len(res['time_points'])} time points, RNA PCA (primary) + ATAC LSI "
        f"(secondary, {coupling}, weight {weight:g}): solved in {seconds:.1f} s "
        f"({res['convergence']['n_iter']} iterations). Costs: primary {costs['primary_transport']:.3g} transport + "
        f"{costs['primary_growth']:.3g} growth, secondary {costs.get('secondary', 0.0):.3g}. Against the truth: "
        f"velocity median cosine {cos:.2f}, growth Spearman {rho:.2f}.\n"
        f"Results: {out / 'demo.h5ad'}; figures: {', '.join(p.name for p in figures)} in {out}"
    )
    return adata
