"""Tools: reconstruct the dynamics of a time course into AnnData, and read fates and paths off the result."""

from ._fates import cell_transition, pull, push, transport_matrix
from ._paths import interpolate, trajectories
from ._transitions import transition_matrix
from .evaluation import evaluate_heldout
from .gaussian_growth import gaussian_growth
from .syncot import syncot

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
