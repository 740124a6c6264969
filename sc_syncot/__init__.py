"""sc_syncot: growth-aware cell dynamics reconstructed consistently across modalities.

Unbalanced synchronized optimal transport (UnSyncOT) on a staggered space-time grid, for AnnData.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sc-syncot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from ._settings import configure_logger, settings

configure_logger()

__all__ = ["datasets", "gaussian", "pl", "pp", "solvers", "tl", "settings", "__version__"]
SUBMODULES = ("datasets", "gaussian", "pl", "pp", "solvers", "tl")


def __getattr__(name: str):
    """Import the submodules on first use (PEP 562): ``sc-syncot --help`` then answers without loading torch."""
    if name in SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
