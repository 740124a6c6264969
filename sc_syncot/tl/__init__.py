"""Tools: reconstruct the dynamics of a time course into AnnData, and read fates and paths off the result."""

from .evaluation import evaluate_heldout
from .fates import pull, push
from .paths import interpolate, trajectories
from .syncot import syncot

__all__ = ["evaluate_heldout", "interpolate", "pull", "push", "syncot", "trajectories"]
