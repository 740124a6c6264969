"""Preprocessing: embeddings, primary grids and densities, masses, and couplings to the secondary space.

Scanpy-style functions (``embed_rna``, ``embed_atac``, ``growth_prior``) write into the AnnData; the adapters
that build solver inputs (``primary_grid``, ``kde_density``, ``cell_graph``, ``fit_monge_map``,
``kantorovich_kernel``, ...) take arrays and return arrays or small objects, and :func:`sc_syncot.tl.syncot` chains
them.
"""

from .cell_graph import CellGraph, cell_graph
from .densities import (
    interval_densities,
    kde_density,
    kde_rates,
    pooled_bandwidth,
    primary_grid,
    prior_shifts,
    scott_bandwidth,
    time_point_masses,
)
from .embedding import embed_atac, embed_rna, lsi, tfidf
from .growth import gene_sets, growth_prior
from .kantorovich import kantorovich_kernel, secondary_support
from .monge import MongeMap, fit_monge_map
from .predictability import secondary_predictability
from .views import couple_views

__all__ = [
    "CellGraph",
    "cell_graph",
    "MongeMap",
    "couple_views",
    "embed_atac",
    "embed_rna",
    "fit_monge_map",
    "gene_sets",
    "growth_prior",
    "interval_densities",
    "kantorovich_kernel",
    "kde_density",
    "kde_rates",
    "lsi",
    "primary_grid",
    "prior_shifts",
    "pooled_bandwidth",
    "scott_bandwidth",
    "secondary_predictability",
    "secondary_support",
    "tfidf",
    "time_point_masses",
]
