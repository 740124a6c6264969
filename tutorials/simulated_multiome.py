# %% [markdown]
# # Quickstart: a simulated RNA + ATAC time course, with the truth to compare against
#
# `sc_syncot.datasets.simulate_multiome` generates cells of a bifurcating process (a progenitor population that
# splits into a growing branch A and a dying branch B), measured at four time points in RNA and ATAC through
# two different nonlinear maps. Because the simulation knows each cell's true velocity and growth rate, we can
# check what the reconstruction recovers.
#
# Set `SC_SYNCOT_TUTORIAL_FAST=1` for a quick, coarse run (the test suite does); `SC_SYNCOT_TUTORIAL_OUT=folder` saves
# the figures.

# %%
import os
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

import sc_syncot as so

FAST = os.environ.get("SC_SYNCOT_TUTORIAL_FAST") == "1"
OUT = os.environ.get("SC_SYNCOT_TUTORIAL_OUT")  # a folder: the figures are also saved there, as PNG
SAVE = ".png" if OUT else None  # the plots' save=: <plot>.png in so.settings.figdir
if OUT:
    so.settings.figdir = OUT
    Path(OUT).mkdir(parents=True, exist_ok=True)
settings = {"n_nodes": 300, "n_time": 4} if FAST else {}  # the graph's defaults: 2,000 nodes, 8 steps (Monge)


# %% [markdown]
# ## The data
# RNA counts in `X`, ATAC counts in `.obsm["atac_counts"]`, ready embeddings `X_pca` (RNA) and `X_lsi` (ATAC),
# the time in `.obs["time"]`, and the ground truth (`branch`, `growth_rate`, `velocity_pca`).

# %%
adata = so.datasets.simulate_multiome(n_cells=600 if FAST else 2000, n_timepoints=4, seed=0)
adata

# %%
print(adata.obs.groupby(["time", "branch"], observed=True).size().unstack(fill_value=0))

# %% [markdown]
# ## Reconstruct
# The primary space is all ten RNA principal components; ATAC (10 LSI components) is the secondary. With more than
# three columns the fit runs on a graph of cell states: cluster centres of each time point's cells in the joint RNA +
# ATAC space, and points on the static-OT paths between time points. `coupling="monge"` fits a smooth map from RNA to
# ATAC on the cells and pays for the change of the mapped ATAC state along every edge. (`geometry="grid"` with
# `n_dims=2` fits on a grid over the first two components instead.) Masses follow the cell counts (here sampling is
# proportional to population size). One call solves all three intervals.

# %%
so.tl.syncot(adata, "time", "X_pca", "X_lsi", coupling="monge", masses="counts", weight=1.0, progress=False, **settings)
res = adata.uns["syncot"]
print({k: np.round(v, 3) for k, v in res["costs"].items()}, res["convergence"]["n_iter"], "iterations")

# %% [markdown]
# ## Compare with the truth
# Each cell's velocity in all ten RNA components against the true one, and each cell's growth rate against the
# simulated birth minus death rate.

# %%
v = adata.obsm["syncot_velocity"]
truth = adata.obsm["velocity_pca"]
cosine = (v * truth).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(truth, axis=1))
growth_rho = spearmanr(adata.obs["syncot_growth"], adata.obs["growth_rate"])[0]
print(f"velocity: median cosine {np.median(cosine):.2f}; growth: Spearman {growth_rho:.2f}")
print(adata.obs.groupby("branch", observed=True)[["syncot_growth", "growth_rate"]].median().round(2))
assert np.median(cosine) > (0.4 if FAST else 0.55)

# %% [markdown]
# ## Look at it

# %%
so.pl.density_path(adata, save=SAVE)
so.pl.velocity(adata, color="branch", save=SAVE)
so.pl.secondary_path(adata, save=SAVE)
so.pl.growth(adata, per_cell=True, save=SAVE)

# %% [markdown]
# ## Fates and trajectories
# Where do the cells of branch A at the last time point come from? `tl.pull` carries A's share of the density
# backwards along the flow; `tl.trajectories` follows particles forward, weighted by their expected number of
# descendants. `tl.cell_transition` sums the shares over groups, as moscot's table of the same name: with
# `forward=True`, where each group of the first time point has its descendants at the last.

# %%
last = adata.obs["time"].max()
so.tl.pull(adata, "branch", "A", time=last)
so.tl.pull(adata, "branch", "B", time=last)
so.tl.trajectories(adata, n_particles=100)
so.pl.fates(adata, ["syncot_pull_A", "syncot_pull_B"], save=SAVE)
so.pl.trajectories(adata, save=SAVE)
first = adata.obs["time"].min()
print(so.tl.cell_transition(adata, first, last, "branch", forward=True).round(2))
so.pl.cell_transition(adata, save=SAVE)

# %% [markdown]
# ## How much should ATAC count?
# A sweep of the secondary weight: the secondary cost falls and the primary cost rises as the weight grows.

# %%
sweep = []
for weight in (0.0, 0.25, 1.0, 4.0, 16.0):
    fitted = so.tl.syncot(
        adata, "time", "X_pca", "X_lsi", coupling="monge", masses="counts", weight=weight, copy=True,
        progress=False, **settings,
    )  # fmt: skip
    sweep.append(fitted.uns["syncot"])
so.pl.tradeoff(sweep, save=SAVE)
print(so.pl.cost_table(sweep))

# %% [markdown]
# ## Check against a time point the fit did not see
# Hold out an inner time point, predict it from its neighbours and measure the Wasserstein-1 distance to its
# cells in both spaces, next to baselines and the noise floor.

# %%
table = so.tl.evaluate_heldout(
    adata, "time", 1.0, "X_pca", "X_lsi", coupling="monge", masses="counts", **settings
)  # fmt: skip
print(table.pivot(index="method", columns="space", values="w1").round(3))
