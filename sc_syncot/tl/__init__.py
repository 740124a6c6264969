"""Tools: reconstruct the dynamics of a time course into AnnData, and read fates and paths off the result."""

from .evaluation import evaluate_heldout
from .fates import cell_transition, pull, push, transport_matrix
from .gaussian_growth import gaussian_growth
from .paths import interpolate, trajectories
from .syncot import syncot
from .transitions import transition_matrix

__all__ = [
    "cell_transition",
    "evaluate_heldout",
    "gaussian_growth",
    "interpolate",
    "pull",
    "push",
    "syncot",
    "trajectories",
    "transition_matrix",
    "transport_matrix",
]
