"""The built-in example behind ``sc-syncot demo``.

Two Gaussians in a 2-D primary space, synchronized with a 3-D secondary space in which the map
``T(x) = (x_1, x_2, a exp(-|x - c|^2 / (2 s^2)))`` raises a hill between them: crossing the hill is expensive in
the secondary space, so the synchronized path walks around it, trading a longer primary route for a shorter
secondary one. The density paths of the primary-only and of the synchronized solutions are drawn one above
the other.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .solvers import Grid, MongeSecondary, SyncOTProblem, SyncOTResult, solve
from .solvers.closed_forms import gaussian_density

HILL_CENTRE, HILL_WIDTH, HILL_HEIGHT = np.array([0.5, 0.5]), 0.12, 0.6


def hill(x: np.ndarray) -> np.ndarray:
    """The demo's secondary map ``R^2 -> R^3``: the plane with a Gaussian hill at its centre."""
    r2 = np.square(x - HILL_CENTRE).sum(axis=1)
    return np.column_stack([x[:, 0], x[:, 1], HILL_HEIGHT * np.exp(-r2 / (2 * HILL_WIDTH**2))])


def demo_problems(n: int = 48, n_time: int = 24, weight: float = 1.0) -> tuple[SyncOTProblem, SyncOTProblem]:
    """The primary-only problem and the same problem synchronized with the hill-shaped secondary space."""
    grid = Grid([(0, 1), (0, 1)], (n, n), n_time)
    rho0 = gaussian_density(grid, [0.25, 0.3], np.diag([0.06**2, 0.05**2]))
    rho1 = gaussian_density(grid, [0.75, 0.7], np.diag([0.05**2, 0.07**2]))
    single = SyncOTProblem(grid, rho0, rho1)
    synced = SyncOTProblem(grid, rho0, rho1, secondaries=[MongeSecondary(hill, weight=weight, name="hill")])
    return single, synced


def plot_paths(results: dict[str, SyncOTResult], n_panels: int = 6):
    """Small multiples of the density over time, one row per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), n_panels, figsize=(2.1 * n_panels, 2.3 * len(results)), squeeze=False)
    for row, (label, res) in zip(axes, results.items(), strict=True):
        (x0, x1), (y0, y1) = res.grid.bounds
        nodes = np.linspace(0, res.grid.n_time, n_panels).round().astype(int)
        vmax = max(res.rho.max() for res in results.values())
        for ax, k in zip(row, nodes, strict=True):
            ax.imshow(res.rho[k].T, origin="lower", extent=(x0, x1, y0, y1), cmap="magma", vmin=0, vmax=vmax)
            if row is axes[0]:
                ax.set_title(f"t = {k / res.grid.n_time:.2f}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(label, fontsize=9)
    fig.suptitle("density path in the primary space")
    fig.tight_layout()
    return fig


def run_demo(
    out: str | Path = "sc_syncot_demo",
    n: int = 48,
    n_time: int = 24,
    weight: float = 1.0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, SyncOTResult]:
    """Solve the demo problems, write ``density_path.png`` into ``out`` and print a one-line cost summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    single, synced = demo_problems(n, n_time, weight)
    start = time.perf_counter()
    results = {
        "primary only": solve(single, device=device, progress=progress),
        f"synchronized (weight {weight:g})": solve(synced, device=device, progress=progress),
    }
    seconds = time.perf_counter() - start
    fig = plot_paths(results)
    path = out / "density_path.png"
    fig.savefig(path, dpi=110)
    r0, r1 = results.values()
    print(
        f"primary-only W2^2 = {r0.cost:.4f}; synchronized: total {r1.cost:.4f}"
        f" = primary {r1.costs['primary_transport']:.4f}"
        f" + secondary {r1.costs['hill']:.4f} (secondary cost of the primary-only path "
        f"{_secondary_cost_of(r0, synced):.4f}); {r0.n_iter}+{r1.n_iter} iterations in {seconds:.1f} s; figure: {path}"
    )
    return results


def _secondary_cost_of(res: SyncOTResult, synced: SyncOTProblem) -> float:
    """What a path pays in the secondary space: ``weight * sum |J v|^2 rho dx dt``."""
    sec = synced.secondaries[0]
    (jac,) = synced.jacobians()
    jv = np.einsum("...ki,t...i->t...k", jac[0], res.velocity)
    rho_c = 0.5 * (res.rho[1:] + res.rho[:-1])
    return float(sec.weight * (np.square(jv).sum(-1) * rho_c).sum() * res.grid.cell_volume * res.grid.dt)
