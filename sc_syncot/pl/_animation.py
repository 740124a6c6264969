"""The density path as an animated GIF."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ._paths import draw_density, projected_density
from ._result import stored


def animate(
    adata,
    path: str | os.PathLike,
    key: str = "syncot",
    n_frames: int = 24,
    fps: int = 8,
    cells: bool = False,
    cmap: str = "viridis",
    figsize: tuple[float, float] = (4.5, 4.0),
    dpi: int = 80,
    basis: str | None = None,
) -> Path:
    """Write the reconstructed density over time as a GIF (matplotlib's Pillow writer).

    Frames are evenly spaced from the first to the last time point and drawn as the panels of
    :func:`sc_syncot.pl.density_path`, on one colour scale.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    path
        File to write, ending in ``.gif``.
    key
        The result to animate.
    n_frames, fps
        Number of frames and frames per second.
    cells
        Overlay the cells observed at the time point nearest to each frame.
    cmap
        Colormap of the density.
    figsize, dpi
        Size of a frame in inches, and its resolution.
    basis
        A graph result only: the ``.obsm`` key of a 2-D embedding to draw in (e.g. ``"X_umap"``; its first two
        columns); default: the primary basis' first two columns.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path: expected a file name ending in .gif, got {str(path)!r}")
    st = stored(adata, key, basis)
    if n_frames < 1:
        raise ValueError(f"n_frames: expected a positive integer, got {n_frames}")
    tp = st.flow.time_points
    ts = np.linspace(tp[0], tp[-1], n_frames)  # frames evenly spaced in time, unlike the panels of density_path
    vmax = max(float(projected_density(st, t).max()) for t in ts) or 1.0
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    if st.ndim > 1:  # one colorbar for every frame, outside the redrawn axes
        fig.colorbar(ScalarMappable(Normalize(0, vmax), cmap), ax=ax, label="density", shrink=0.8)

    def frame(t: float):
        ax.clear()
        draw_density(ax, st, float(t), vmax, cmap, cells)
        return []

    frame(ts[0])
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the first frame's layout: no jitter, no layout pass per frame
    try:
        anim = FuncAnimation(fig, frame, frames=np.asarray(ts), blit=False)
        anim.save(path, writer=PillowWriter(fps=fps), dpi=dpi)
    finally:
        plt.close(fig)
    return path
