"""Plots of a reconstruction (matplotlib): the density path, velocity, growth, trajectories, fates, transitions, costs.

Functions read everything from ``adata.uns`` / ``.obs`` / ``.obsm`` (so they work on a file read back from disk),
write nothing into the AnnData, and follow scanpy: ``ax`` to draw into existing axes, ``show`` to call
``plt.show()`` (by default only with an interactive backend), ``return_fig`` to get the Figure, ``save`` to write it
to ``sc_syncot.settings.figdir`` (``save=True``: ``<plot>.pdf``; ``save="_a.png"``: ``<plot>_a.png``).
"""

from ._animation import animate
from ._costs import cost_table, tradeoff
from ._fates import cell_transition, fates
from ._fields import growth, velocity
from ._paths import density_path, secondary_path, trajectories

__all__ = [
    "animate",
    "cell_transition",
    "cost_table",
    "density_path",
    "fates",
    "growth",
    "secondary_path",
    "tradeoff",
    "trajectories",
    "velocity",
]
