"""sc_syncot: growth-aware cell dynamics reconstructed consistently across modalities.

Unbalanced synchronized optimal transport (UnSyncOT) on a staggered space-time grid, for AnnData.
"""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, gaussian, pl, pp, solvers, tl

try:
    __version__ = version("sc-syncot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["datasets", "gaussian", "pl", "pp", "solvers", "tl", "__version__"]
