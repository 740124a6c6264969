# %% [markdown]
# # Unpaired views: scNMT mouse gastrulation, coupled by Gromov-Wasserstein
#
# scNMT-seq (Argelaguet et al. 2019) measured expression, DNA methylation and chromatin accessibility of mouse
# embryo cells from E4.5 to E7.5. In the packaging used here each view is a 30-dimensional embedding of its own
# set of cells: **no cell has coordinates in two views**. To synchronize the dynamics of RNA with accessibility,
# each RNA cell first needs accessibility coordinates. `so.pp.couple_views` matches the two clouds at each time
# point by entropic Gromov-Wasserstein, which compares the pairwise distances within each view, and gives each
# RNA cell the barycentre of the accessibility cells it is matched to. Those pseudo-pairs then enter `tl.syncot`
# like measured pairs.
#
# Gromov-Wasserstein sees only distances, so it cannot tell a cloud from its mirror image: before trusting the
# pseudo-pairs we check what can be checked.
#
# The data are read from `$SC_SYNCOT_DATA` (default `../shared/data`); the tutorial stops with a message when they
# are absent. Set `SC_SYNCOT_TUTORIAL_FAST=1` for a quick, coarse run on a subsample of the cells (the test suite
# does); `SC_SYNCOT_TUTORIAL_OUT=folder` saves the figures.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.neighbors import KNeighborsClassifier

import sc_syncot as so

FAST = os.environ.get("SC_SYNCOT_TUTORIAL_FAST") == "1"
OUT = os.environ.get("SC_SYNCOT_TUTORIAL_OUT")  # a folder: the figures are also saved there, as PNG
SAVE = ".png" if OUT else None  # the plots' save=: <plot>.png in so.settings.figdir
if OUT:
    so.settings.figdir = OUT
    Path(OUT).mkdir(parents=True, exist_ok=True)
settings = {"n_bins": 16, "n_time": 4} if FAST else {"n_bins": 48, "n_time": 12}
CELLS_PER_TIME = 60 if FAST else None  # the fast setting subsamples each view at each time point
# Entropic regularization of the per-time couplings (distances scaled to a maximum of 1). On few cells the inner
# Sinkhorn solves need a larger one to converge (couple_views warns when they do not).
EPSILON = 2e-2 if FAST else 5e-3
# How the reconstruction links RNA to the coupled accessibility: a map (Monge) or a kernel (Kantorovich), see below.
COUPLING = "monge"
MASSES = "equal"  # cell numbers per stage reflect sampling, not embryo size


def subsample(adata, n, seed=0):
    """At most ``n`` cells of each time point."""
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(idx, min(n, len(idx)), replace=False)
        for idx in (np.flatnonzero(adata.obs["time"] == t) for t in np.unique(adata.obs["time"]))
    ]
    return adata[np.sort(np.concatenate(keep))].copy()


# %% [markdown]
# ## The data
# `scnmt()` returns the three views as AnnData objects, each with its embedding in `.obsm[f"X_{view}"]` and the
# embryonic day in `.obs["time"]` (stage names in `.obs["stage"]`).

# %%
try:
    views = so.datasets.scnmt()
except so.datasets.DataNotFoundError as err:
    print(f"scNMT data not found, skipping this tutorial: {err}")
    raise SystemExit(0) from None
if CELLS_PER_TIME:
    views = {name: subsample(view, CELLS_PER_TIME) for name, view in views.items()}
rna, acc = views["rna"], views["accessibility"]
print(pd.DataFrame({name: view.obs["stage"].value_counts().sort_index() for name, view in views.items()}))

# %% [markdown]
# ## Can Gromov-Wasserstein find the stages on its own?
# Within a time point no label is shared by the two views, so there is nothing to check a coupling against. Across
# time points there is: the stage. We couple *all* RNA cells with *all* accessibility cells, without telling the
# coupling the stages (`time_key=None`), and ask whether each RNA cell lands among accessibility cells of its own
# stage: its coupled coordinates are labelled by the stages of their 15 nearest accessibility cells. Chance is the
# agreement of labels drawn at the two views' stage frequencies. A mirrored match would show up as reversed stage
# order.

# %%
blind = so.pp.couple_views(rna, acc, "X_rna", "X_accessibility", time_key=None, key_added="X_acc_blind", copy=True)
knn = KNeighborsClassifier(n_neighbors=15).fit(acc.obsm["X_accessibility"], acc.obs["stage"].astype(str))
stage_true = rna.obs["stage"].astype(str).to_numpy()
stage_blind = knn.predict(blind.obsm["X_acc_blind"])
freq_rna = rna.obs["stage"].astype(str).value_counts(normalize=True)
freq_acc = acc.obs["stage"].astype(str).value_counts(normalize=True)
chance = float((freq_rna * freq_acc.reindex(freq_rna.index, fill_value=0)).sum())
blind_agreement = float(np.mean(stage_blind == stage_true))
day = {s: float(s[1:]) for s in np.unique(np.concatenate([stage_true, stage_blind]))}
blind_order = spearmanr([day[s] for s in stage_true], [day[s] for s in stage_blind])[0]
print(f"stage agreement without time information: {blind_agreement:.2f} (chance {chance:.2f})")
print(f"Spearman correlation of the RNA stage with the stage found in accessibility: {blind_order:.2f}")
print(pd.crosstab(pd.Series(stage_true, name="RNA stage"), pd.Series(stage_blind, name="coupled to")))

# %% [markdown]
# ## The coupling used: per time point
# The stages are known in both views, so the coupling used for the reconstruction matches cells within each time
# point only (`time_key="time"`): each RNA cell gets a 30-D accessibility coordinate in
# `.obsm["X_accessibility_coupled"]`, and `.uns` keeps the Gromov-Wasserstein discrepancy per time point.
#
# What can be checked here is limited, and it is worth saying what each number does and does not show:
# - the coupled coordinates sit among accessibility cells of the right stage (this mostly follows from coupling
#   within each time point, so it is a sanity check, not evidence of a good match);
# - the barycentres are averages and so are less spread than the cells they come from: the spread ratio says by how
#   much (1 would be no shrinkage);
# - the rank correlation between pairwise distances of RNA cells and of their coupled coordinates, within each time
#   point, says how much of the RNA geometry the match keeps; a mirror image would keep it just as well, so it does
#   not tell a right match from a mirrored one.

# %%
so.pp.couple_views(rna, acc, "X_rna", "X_accessibility", time_key="time", epsilon=EPSILON)
coupled = rna.obsm["X_accessibility_coupled"]
print("coupled accessibility:", coupled.shape, "finite:", bool(np.isfinite(coupled).all()))
stage_coupled = knn.predict(coupled)
print(f"stage agreement of the per-time coupling: {np.mean(stage_coupled == stage_true):.2f}")
quality = []
for t in np.unique(rna.obs["time"]):
    in_rna, in_acc = (rna.obs["time"] == t).to_numpy(), (acc.obs["time"] == t).to_numpy()
    xr, yc, ya = rna.obsm["X_rna"][in_rna], coupled[in_rna], acc.obsm["X_accessibility"][in_acc]
    iu = np.triu_indices(len(xr), 1)
    dist_rna = np.linalg.norm(xr[:, None] - xr[None], axis=-1)[iu]
    dist_acc = np.linalg.norm(yc[:, None] - yc[None], axis=-1)[iu]
    spread = yc.var(0).sum() / ya.var(0).sum()
    quality.append({"time": t, "spread ratio": spread, "distance Spearman": spearmanr(dist_rna, dist_acc)[0]})
quality = pd.DataFrame(quality).set_index("time")
quality["GW discrepancy"] = rna.uns["X_accessibility_coupled"]["gw_discrepancy"]
print(quality.round(3))

# %% [markdown]
# Side by side: the accessibility cells in their first two components, and the RNA cells' coupled coordinates
# (both coloured by stage), then the RNA cells coloured by their coupled first accessibility component.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (xy, stages, title) in zip(
    axes[:2],
    [
        (acc.obsm["X_accessibility"], acc.obs["stage"].astype(str), "accessibility cells"),
        (coupled, rna.obs["stage"].astype(str), "RNA cells, coupled accessibility"),
    ],
    strict=True,
):
    for i, s in enumerate(sorted(set(stages))):
        sel = (stages == s).to_numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=f"C{i}", label=s)
    ax.set(xlabel="accessibility 1", ylabel="accessibility 2", title=title)
axes[0].legend(frameon=False, markerscale=2)
sc_ = axes[2].scatter(*rna.obsm["X_rna"][:, :2].T, c=coupled[:, 0], s=6, cmap="viridis")
fig.colorbar(sc_, ax=axes[2], label="coupled accessibility 1")
axes[2].set(xlabel="RNA 1", ylabel="RNA 2", title="RNA cells")
fig.tight_layout()
if OUT:
    fig.savefig(Path(OUT) / "coupling.png", dpi=100)

# %% [markdown]
# Read the middle panel with the spread ratios above: where the coupled coordinates of a time point line up along a
# curve instead of filling the accessibility cloud, the coupling resolves the cloud's main axis and averages across
# the rest. The secondary the reconstruction pays for is then this smoothed accessibility, not the cells' own.

# %% [markdown]
# ## Reconstruct
# The primary space is the first two RNA dimensions; the secondary is the coupled 30-D accessibility. With
# `COUPLING = "monge"` it is linked by a map fitted on the pseudo-pairs; its leave-one-out R² (printed) says how much
# of the coupled accessibility a smooth function of the two RNA dimensions explains. The coupled coordinates are
# barycentres, themselves smooth functions of each RNA cell's 30 dimensions, so a map fits them better than it
# would fit measured pairs. A Kantorovich coupling (a kernel from RNA states to accessibility states, the default of
# `tl.syncot`) makes no such assumption; set `COUPLING = "kantorovich"` to compare (it takes more iterations).

# %%
rna.obsm["X_rna2"] = np.asarray(rna.obsm["X_rna"][:, :2], dtype=float)
so.tl.syncot(
    rna, "time", "X_rna2", "X_accessibility_coupled", coupling=COUPLING, masses=MASSES, weight=1.0, progress=False,
    **settings,
)  # fmt: skip
res = rna.uns["syncot"]
print("costs per interval:", {k: np.round(v, 3) for k, v in res["costs"].items()})
print("iterations:", res["convergence"]["n_iter"], "converged:", res["convergence"]["converged"])
if "r2" in res["coupling"]:
    print(f"Monge map RNA -> coupled accessibility: leave-one-out R^2 = {res['coupling']['r2']:.3f}")

# %% [markdown]
# ## Look at it
# The density path in RNA from E4.5 to E7.5, the cells' velocities coloured by stage, the path induced in the
# coupled accessibility, and the growth rate per cell.

# %%
so.pl.density_path(rna, save=SAVE)
so.pl.velocity(rna, color="stage", save=SAVE)
so.pl.secondary_path(rna, save=SAVE)
so.pl.growth(rna, per_cell=True, save=SAVE)
print(rna.obs.groupby("stage", observed=True)["syncot_growth"].median().round(3).rename("median growth rate"))
