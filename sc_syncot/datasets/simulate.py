"""A simulated paired RNA + ATAC time course with known latent dynamics, growth and mass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ..pp.embedding import lsi
from ._dynamics import BRANCHES, DEFAULT_DEATH, DEFAULT_PROLIFERATION, Bifurcation, simulate_population
from ._embed import RNA_TARGET_SUM, _rna_pca
from ._modalities import PROGRAMS, AtacMap, RnaMap
from ._mudata import paired_to_mudata, require_mudata

if TYPE_CHECKING:
    from mudata import MuData

MIN_CELLS_PER_TIMEPOINT = 10
FOUNDERS_PER_CELL = 2  # founders per group = 2 * n_cells: the living population always exceeds what is observed
MAX_DT = 0.01
MAX_RATE = 10.0
PUSH_STEP = 1e-4  # finite-difference step (latent units) of the velocity pushed into the PCA
# secondary_leads: the push towards a lineage's fated branch past the split (latent units per unit time). It beats
# the pitchfork's own choice by the noise (whose typical move is 0.14 per unit time), so the fate decides the branch.
FATE_KICK = 1.0


def simulate_multiome(
    n_cells: int = 2000,
    n_timepoints: int = 4,
    seed: int = 0,
    *,
    t_max: float = 3.0,
    n_genes: int = 200,
    n_peaks: int = 500,
    n_pcs: int = 10,
    n_lsi: int = 10,
    diffusion: float = 0.01,
    proliferation: Mapping[str, float] | None = None,
    death: Mapping[str, float] | None = None,
    secondary_leads: bool = False,
    as_mudata: bool = False,
) -> ad.AnnData | MuData:
    """Simulate a paired RNA + ATAC time course of a bifurcating, growing population with known ground truth.

    Cells live in a 2-D latent space. Their drift carries them from a progenitor region at ``x = -2`` towards
    ``x = 2`` and, past ``x = 0``, splits them onto two branches ``A`` (``y = +1``) and ``B`` (``y = -1``); they
    diffuse a little, divide at a proliferation rate and die at a death rate that depend on where they are
    (defaults: net growth 0.5 for progenitors, 0.9 on branch A, -0.5 on branch B). Each observation time has its
    own founder population, followed as a branching diffusion until it is observed, so snapshots share no
    lineage; the number of cells observed at each time is proportional to the true total mass then. RNA and
    ATAC counts are drawn from two different nonlinear maps of the latent state (smooth for RNA, switch-like
    and primed by the drift for ATAC), so the two modalities disagree in geometry.

    Parameters
    ----------
    n_cells
        Total number of observed cells, split over time points in proportion to the true mass.
    n_timepoints
        Number of observation times, equally spaced on ``[0, t_max]``; at least 2.
    seed
        Seed of every random draw: the same seed gives the same data. The gene and peak maps depend on the seed
        only, not on the sizes of the simulation.
    t_max
        Last observation time.
    n_genes, n_peaks
        Numbers of genes (at least 20) and ATAC peaks (at least 20).
    n_pcs, n_lsi
        Numbers of RNA principal components and of ATAC LSI components.
    diffusion
        Diffusion coefficient ``D`` of the latent noise ``sqrt(2 D) dW``.
    proliferation, death
        Rates per unit time for the branches ``"progenitor"``, ``"A"``, ``"B"`` (each in ``[0, 10]``); keys that are
        left out keep their defaults (proliferation 0.7 / 1.0 / 0.3, death 0.2 / 0.1 / 0.8).
    secondary_leads
        Chromatin decides first: each founder lineage is fated to branch A or B (equal odds, inherited at
        division), the fate pushes committed cells onto its branch, and the ATAC peaks read the state the cell
        will reach one observation interval later on its fate's branch (``Bifurcation.ahead``), instead of its
        primed position. The branch choice then shows in ATAC one time point before RNA separates (with 5 or
        more time points on ``[0, 3]``, the split at ``t ~ 0.87`` falls between two of them). Adds ``obs["fate"]``
        (``A`` / ``B``, also for progenitors) and ``uns["simulation"]["fate_share"]`` (the share of the mass fated
        to A at each time point).
    as_mudata
        Return a :class:`mudata.MuData` with modalities ``"rna"`` and ``"atac"`` (needs the optional ``mudata``).

    Returns
    -------
    AnnData or MuData
        The observed cells, with

        - ``X``: RNA counts, sparse CSR float32, cells x genes; ``var["program"]`` is ``"latent"``, or
          ``"proliferation"`` / ``"apoptosis"`` for genes that follow the birth / death rate.
        - ``obsm["atac_counts"]``: ATAC counts, sparse CSR float32, cells x peaks; peak names in
          ``uns["atac_counts_var_names"]``.
        - ``obs["time"]`` (float), ``obs["time_point"]`` (ordered categorical ``t0``, ``t1``, ...),
          ``obs["branch"]`` (categorical ``progenitor`` / ``A`` / ``B``: committed once past the split and at least
          0.25 from the axis ``y = 0``), ``obs["growth_rate"] = obs["proliferation_rate"] - obs["death_rate"]``.
        - ``obsm["X_latent"]``: the true latent position; ``obsm["velocity_latent"]``: the drift there (the diffusion
          is not included).
        - ``obsm["X_pca"]``: RNA ``normalize_total`` (to 1e4) + ``log1p`` + PCA; ``obsm["velocity_pca"]``: the true
          velocity carried into these coordinates through the noise-free expression map, an approximation of the
          velocity of the noisy embedding (its direction is close; its length about 15% short).
        - ``obsm["X_lsi"]``: ATAC TF-IDF + truncated SVD, the first component dropped.
        - ``uns["simulation"]``: ``params`` (every argument and dynamics constant), ``time_points``,
          ``n_cells_per_time``, ``mass`` (true total mass per time point, 1 at the start, estimated from the
          simulated population), ``mass_per_branch`` (a dict of arrays), and a ``description``.

        With ``as_mudata=True``: modality ``"rna"`` holds ``X``, ``var``, ``X_pca`` and ``velocity_pca``, modality
        ``"atac"`` the ATAC counts and ``X_lsi``; ``obs`` (only there), ``uns``, ``X_latent`` and ``velocity_latent``
        are global.

    Examples
    --------
    >>> adata = simulate_multiome(n_cells=500, n_timepoints=3, seed=1)
    >>> adata.obs["time_point"].value_counts(sort=False).tolist() == list(adata.uns["simulation"]["n_cells_per_time"])
    True
    """
    _check_sizes(n_cells, n_timepoints, n_genes, n_peaks, n_pcs, n_lsi, seed, t_max, diffusion)
    if as_mudata:
        require_mudata()  # fail before simulating
    dyn = Bifurcation(
        proliferation=_branch_rates(proliferation, DEFAULT_PROLIFERATION, "proliferation"),
        death=_branch_rates(death, DEFAULT_DEATH, "death"),
        diffusion=float(diffusion),
        fate_kick=FATE_KICK if secondary_leads else 0.0,
    )
    # Independent streams, so that e.g. the gene and peak maps do not change with n_cells (the sixth, of the fates,
    # leaves the first five as they were without it).
    rng_maps, rng_dynamics, rng_observe, rng_rna, rng_atac, rng_fate = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    times = np.linspace(0.0, float(t_max), n_timepoints)
    fate_rng = rng_fate if secondary_leads else None
    snapshots, mass, branch_mass, fates, fate_share = simulate_population(
        dyn, times, FOUNDERS_PER_CELL * n_cells, MAX_DT, rng_dynamics, fate_rng
    )
    n_per_time = _allocate(n_cells, mass)
    z, time_index, fate = _observe(snapshots, n_per_time, times, rng_observe, fates)
    rna_map, atac_map = RnaMap.draw(n_genes, rng_maps), AtacMap.draw(n_peaks, rng_maps)
    lead = None if fate is None else (fate, float(times[1] - times[0]))  # one observation interval ahead
    rna, atac = rna_map.sample(z, dyn, rng_rna), atac_map.sample(z, dyn, rng_atac, lead)
    adata = _assemble(z, time_index, times, dyn, rna, atac, fate)
    adata.var["program"] = pd.Categorical.from_codes(rna_map.program, categories=list(PROGRAMS))
    _add_embeddings(adata, rna_map, dyn, n_pcs, n_lsi, seed)
    sizes = {"n_cells": n_cells, "n_timepoints": n_timepoints, "seed": seed, "t_max": float(t_max)}
    sizes |= {"n_genes": n_genes, "n_peaks": n_peaks, "n_pcs": n_pcs, "n_lsi": n_lsi}
    sizes["secondary_leads"] = bool(secondary_leads)
    adata.uns["simulation"] = _record(sizes, dyn, times, n_per_time, mass, branch_mass)
    if fate_share is not None:
        adata.uns["simulation"]["fate_share"] = fate_share
    if as_mudata:
        return paired_to_mudata(
            adata,
            "atac_counts",
            names=("rna", "atac"),
            primary_obsm=("X_pca", "velocity_pca"),
            secondary_obsm=("X_lsi",),
        )
    return adata


def _record(
    sizes: dict, dyn: Bifurcation, times: np.ndarray, n_per_time: np.ndarray, mass: np.ndarray, branch_mass: np.ndarray
) -> dict:
    """``uns["simulation"]``: parameters and the true masses, all h5ad-serializable."""
    params = sizes | {"founders_per_group": FOUNDERS_PER_CELL * sizes["n_cells"], "max_dt": MAX_DT}
    return {
        "params": params | {"dynamics": dyn.to_dict()},
        "time_points": times,
        "n_cells_per_time": n_per_time,
        "mass": mass,
        "mass_per_branch": dict(zip(BRANCHES, branch_mass.T, strict=True)),
        "description": "sc_syncot.datasets.simulate_multiome: bifurcating 2-D latent dynamics with branch growth",
    }


def _check_sizes(
    n_cells: int,
    n_timepoints: int,
    n_genes: int,
    n_peaks: int,
    n_pcs: int,
    n_lsi: int,
    seed: int,
    t_max: float,
    diffusion: float,
) -> None:
    """ValueErrors naming the argument that is out of range."""
    ints = {"n_cells": n_cells, "n_timepoints": n_timepoints, "n_genes": n_genes, "n_peaks": n_peaks}
    ints |= {"n_pcs": n_pcs, "n_lsi": n_lsi, "seed": seed}
    for name, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed}")
    if n_timepoints < 2:
        raise ValueError(f"n_timepoints: expected at least 2 time points, got {n_timepoints}")
    if n_cells < MIN_CELLS_PER_TIMEPOINT * n_timepoints:
        raise ValueError(
            f"n_cells: expected at least {MIN_CELLS_PER_TIMEPOINT} cells per time point "
            f"({MIN_CELLS_PER_TIMEPOINT * n_timepoints} for {n_timepoints} time points), got {n_cells}"
        )
    for name, value in (("n_genes", n_genes), ("n_peaks", n_peaks)):
        if value < 20:
            raise ValueError(f"{name}: expected at least 20, got {value}")
    if not 1 <= n_pcs < min(n_genes, n_cells):
        raise ValueError(f"n_pcs: expected 1 <= n_pcs < min(n_genes, n_cells) = {min(n_genes, n_cells)}, got {n_pcs}")
    if not 1 <= n_lsi < min(n_peaks, n_cells) - 1:
        limit = min(n_peaks, n_cells) - 1
        raise ValueError(f"n_lsi: expected 1 <= n_lsi < min(n_peaks, n_cells) - 1 = {limit}, got {n_lsi}")
    for name, value in (("t_max", t_max), ("diffusion", diffusion)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if t_max <= 0:
        raise ValueError(f"t_max: expected a positive last observation time, got {t_max}")
    if diffusion < 0:
        raise ValueError(f"diffusion: expected a non-negative coefficient, got {diffusion}")


def _branch_rates(given: Mapping[str, float] | None, default: dict[str, float], name: str) -> tuple[float, ...]:
    """Per-branch rates in ``BRANCHES`` order, defaults filled in."""
    given = {} if given is None else dict(given)
    unknown = set(given) - set(BRANCHES)
    if unknown:
        raise ValueError(f"{name}: unknown branch {sorted(unknown)}, expected keys among {list(BRANCHES)}")
    rates = tuple(float(given.get(branch, default[branch])) for branch in BRANCHES)
    if not all(0.0 <= r <= MAX_RATE for r in rates):
        raise ValueError(
            f"{name}: expected rates in [0, {MAX_RATE}] per unit time, got {dict(zip(BRANCHES, rates, strict=True))}"
        )
    return rates


def _allocate(n_cells: int, mass: np.ndarray) -> np.ndarray:
    """Split ``n_cells`` over time points in proportion to ``mass`` (largest remainders, exact total)."""
    share = n_cells * mass / mass.sum()
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[: n_cells - counts.sum()]] += 1
    if counts.min() < MIN_CELLS_PER_TIMEPOINT:
        raise ValueError(
            f"n_cells: with the true masses {np.round(mass, 3).tolist()} a time point would get only "
            f"{counts.min()} cells (at least {MIN_CELLS_PER_TIMEPOINT} needed); raise n_cells or soften the death rates"
        )
    return counts


def _observe(
    snapshots: list[np.ndarray], n_per_time: np.ndarray, times: np.ndarray, rng: np.random.Generator, fates=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Draw the observed cells of each snapshot uniformly without replacement (and their fates, when given)."""
    picked, picked_fates = [], []
    for k, (snapshot, n) in enumerate(zip(snapshots, n_per_time, strict=True)):
        if len(snapshot) < n:  # only when the population collapsed, e.g. under extreme death rates
            raise ValueError(
                f"death: only {len(snapshot)} simulated cells alive at time {times[k]:g}, {n} to observe; "
                "lower the death rates"
            )
        idx = rng.choice(len(snapshot), size=n, replace=False)
        picked.append(snapshot[idx])
        if fates is not None:
            picked_fates.append(fates[k][idx])
    fate = np.concatenate(picked_fates) if fates is not None else None
    return np.concatenate(picked), np.repeat(np.arange(len(times)), n_per_time), fate


def _assemble(
    z: np.ndarray,
    time_index: np.ndarray,
    times: np.ndarray,
    dyn: Bifurcation,
    rna: sparse.csr_matrix,
    atac: sparse.csr_matrix,
    fate: np.ndarray | None = None,
) -> ad.AnnData:
    """The AnnData of counts, time, branch and ground truth."""
    n_cells, n_genes, n_peaks = len(z), rna.shape[1], atac.shape[1]
    birth, death = dyn.rates(z)
    labels = [f"t{k}" for k in range(len(times))]
    obs = pd.DataFrame(
        {
            "time": times[time_index],
            "time_point": pd.Categorical.from_codes(time_index, categories=labels, ordered=True),
            "branch": pd.Categorical.from_codes(dyn.branch(z), categories=list(BRANCHES)),
            "growth_rate": birth - death,
            "proliferation_rate": birth,
            "death_rate": death,
        },
        index=pd.Index([f"cell_{i:05d}" for i in range(n_cells)]),
    )
    adata = ad.AnnData(rna, obs=obs, var=pd.DataFrame(index=pd.Index([f"gene_{j:03d}" for j in range(n_genes)])))
    adata.obsm["atac_counts"] = atac
    adata.uns["atac_counts_var_names"] = np.array([f"peak_{j:03d}" for j in range(n_peaks)], dtype=object)
    adata.obsm["X_latent"] = z
    adata.obsm["velocity_latent"] = dyn.drift(z, fate=fate)
    if fate is not None:
        adata.obs["fate"] = pd.Categorical(np.where(fate > 0, "A", "B"), categories=["A", "B"])
    return adata


def _add_embeddings(adata: ad.AnnData, rna_map: RnaMap, dyn: Bifurcation, n_pcs: int, n_lsi: int, seed: int) -> None:
    """``X_pca`` with its true velocity, and ``X_lsi``."""
    x_pca, loadings = _rna_pca(adata.X, n_pcs, seed)
    adata.obsm["X_pca"] = x_pca
    adata.obsm["velocity_pca"] = _velocity_in_pca(
        adata.obsm["X_latent"], adata.obsm["velocity_latent"], rna_map, dyn, loadings
    )
    adata.obsm["X_lsi"] = lsi(adata.obsm["atac_counts"], n_lsi, seed=seed)[0].astype(np.float32)


def _velocity_in_pca(
    z: np.ndarray, v: np.ndarray, rna_map: RnaMap, dyn: Bifurcation, loadings: np.ndarray
) -> np.ndarray:
    """Directional derivative of the noise-free ``log1p(normalize_total(.))`` expression along ``v``, in PCA axes."""

    def expression(u: np.ndarray) -> np.ndarray:
        return np.log1p(RNA_TARGET_SUM * rna_map.profile(u, dyn))

    step = PUSH_STEP * v
    return (expression(z + step) - expression(z - step)) / (2.0 * PUSH_STEP) @ loadings
