"""Solvers for (synchronized, unbalanced) dynamic optimal transport on grids and graphs; pure arrays, no AnnData.

The stages follow geometry -> problem -> solver -> output: :class:`Grid` or :class:`Graph` -> :class:`SyncOTProblem`
(with :class:`MongeSecondary` and :class:`KantorovichSecondary` terms) -> :func:`solve` -> :class:`SyncOTResult`.
"""

from .chambolle_pock import PrimalDualState, chambolle_pock
from .graph import Graph
from .graph_transport import GraphProjector, GraphTransportOperators
from .grid import Grid
from .kantorovich import KantorovichSecondary
from .problem import MongeSecondary, SyncOTProblem, jacobian_of_map
from .projection import BalanceProjector
from .prox import action_density, prox_action
from .result import SyncOTResult
from .solve import resolve_device, solve
from .staggered import Staggered, divergence, interpolate, interpolate_adjoint

__all__ = [
    "BalanceProjector",
    "Graph",
    "GraphProjector",
    "GraphTransportOperators",
    "Grid",
    "KantorovichSecondary",
    "MongeSecondary",
    "PrimalDualState",
    "Staggered",
    "SyncOTProblem",
    "SyncOTResult",
    "action_density",
    "chambolle_pock",
    "divergence",
    "interpolate",
    "interpolate_adjoint",
    "jacobian_of_map",
    "prox_action",
    "resolve_device",
    "solve",
]
