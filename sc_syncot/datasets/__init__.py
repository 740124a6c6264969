"""Datasets: a simulated paired RNA + ATAC time course with ground truth, and loaders for real time courses.

The real data are read from a folder (``path=``, else ``$SC_SYNCOT_DATA``, else ``../shared/data``); nothing is
downloaded and nothing is bundled with the package.
"""

from .loaders import (
    DataNotFoundError,
    data_dir,
    moscot_temporal,
    scgem,
    sciCAR_A549,
    scnmt,
    tigon_bifurcation,
    tigon_emt,
)
from .simulate import simulate_multiome

__all__ = [
    "DataNotFoundError",
    "data_dir",
    "moscot_temporal",
    "sciCAR_A549",
    "scgem",
    "scnmt",
    "simulate_multiome",
    "tigon_bifurcation",
    "tigon_emt",
]
