"""Figures, panels and colouring shared by the plot functions (scanpy's ``ax``, ``show``, ``return_fig``, ``save``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .._settings import scanpy_setting, settings

# Backends that draw to files only: ``plt.show()`` there does nothing useful, so the default is not to call it.
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}
PANEL_SIZE = 3.5
NAN_COLOR = "lightgrey"
FIGURE_EXTENSIONS = (".png", ".pdf", ".svg")
logger = logging.getLogger("sc_syncot")


def panels(n: int, ax: Axes | Sequence[Axes] | None, ncols: int = 3) -> tuple[Figure, list[Axes]]:
    """``n`` axes: the ones given (one Axes for one panel, or a sequence of ``n``) or a new grid of them."""
    if ax is None:
        ncols = max(1, min(ncols, n))
        nrows = int(np.ceil(n / ncols))
        size = (PANEL_SIZE * ncols + 1.2, PANEL_SIZE * nrows)  # room for a colorbar or legend
        fig, grid = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")
        axes = list(grid.ravel())
        for extra in axes[n:]:
            fig.delaxes(extra)
        return fig, axes[:n]
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
    if len(axes) != n:
        raise ValueError(f"ax: this plot draws {n} panel(s), got {len(axes)} axes")
    return axes[0].figure, axes


def finish(fig: Figure, axes: list[Axes], show: bool | None, return_fig: bool | None, save=None, name: str = ""):
    """Save and show the figure as scanpy does; return what scanpy returns: the Figure, the axes or ``None``.

    ``save`` (see :func:`figure_path`) writes the figure to ``settings.figdir`` and closes it afterwards unless it
    is returned; the axes come back when the figure is not shown.
    """
    if save:
        path = figure_path(name, save)
        path.parent.mkdir(parents=True, exist_ok=True)
        logger.info(f"saving figure to file {path}")
        fig.savefig(path, bbox_inches="tight")
    if show is None:
        show = not return_fig and matplotlib.get_backend().lower() not in NON_INTERACTIVE
    if show:
        plt.show()
    if save and not return_fig:
        plt.close(fig)
    if return_fig:
        return fig
    if not show:
        return axes[0] if len(axes) == 1 else axes
    return None


def figure_path(name: str, save: bool | str) -> Path:
    """Scanpy's file for ``save``: ``settings.figdir / f"{name}{save}{ext}"``.

    ``save=True`` adds no suffix; the extension is the one ``save`` ends with (.png, .pdf, .svg), else scanpy's
    ``file_format_figs`` (pdf).
    """
    if not isinstance(save, (bool, str)):
        raise ValueError(f"save: expected True or a file name suffix such as '_a.png', got {save!r}")
    suffix = "" if save is True else save
    ext = next((e for e in FIGURE_EXTENSIONS if suffix.endswith(e)), None)
    if ext is None:
        ext = "." + str(scanpy_setting("file_format_figs", "pdf")).lstrip(".")
    else:
        suffix = suffix[: -len(ext)]
    return settings.figdir / f"{name}{suffix}{ext}"


def point_size(n: int) -> float:
    """Marker area that keeps a few thousand cells readable and a few dozen visible."""
    return float(np.clip(12000 / max(n, 1), 2, 30))


def category_colors(uns, key: str, categories: Sequence) -> list:
    """Scanpy's ``uns[f"{key}_colors"]`` when it matches the categories, else a matplotlib palette."""
    stored = uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(categories):
        return list(stored)
    cmap = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(len(categories))]


def scatter_obs(ax: Axes, xy: np.ndarray, obs: pd.DataFrame, uns, key: str, size: float, cmap="viridis", **norm):
    """Cells coloured by ``obs[key]``: categories get a legend, numbers a colorbar, missing values grey."""
    if key not in obs:
        raise ValueError(f"color={key!r}: not in .obs (columns: {list(obs.columns)})")
    col = obs[key]
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        col = col.astype("category")
        return _scatter_categories(ax, xy, col, category_colors(uns, key, col.cat.categories), size)
    return scatter_values(ax, xy, col.to_numpy(dtype=float), size, cmap=cmap, label=key, **norm)


def _scatter_categories(ax: Axes, xy: np.ndarray, col: pd.Series, colors: list, size: float) -> None:
    lookup = np.array(colors + [NAN_COLOR], dtype=object)
    codes = col.cat.codes.to_numpy()  # -1 (missing) picks the grey at the end
    ax.scatter(xy[:, 0], xy[:, 1], c=list(lookup[codes]), s=size, linewidths=0, rasterized=len(xy) > 5000)
    cats = col.cat.categories
    handles = [Line2D([], [], ls="", marker="o", color=c, label=str(k)) for k, c in zip(cats, colors, strict=True)]
    ax.legend(handles=handles, title=col.name, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))


def scatter_values(
    ax: Axes, xy: np.ndarray, values: np.ndarray, size: float, cmap="viridis", label=None, extend="neither", **norm
):
    """Cells coloured by numbers, with a colorbar (``extend``: its pointed ends); NaN cells drawn grey underneath."""
    nan = np.isnan(values)
    if nan.any():
        ax.scatter(xy[nan, 0], xy[nan, 1], c=NAN_COLOR, s=size, linewidths=0)
    sc = ax.scatter(xy[~nan, 0], xy[~nan, 1], c=values[~nan], s=size, cmap=cmap, linewidths=0, **norm)
    ax.figure.colorbar(sc, ax=ax, label=label, shrink=0.8, extend=extend)
    return sc


def label_axes(ax: Axes, labels: Sequence[str], title: str | None = None) -> None:
    """Axis labels (``"X_pca 1"`` ...) and an optional title."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title is not None:
        ax.set_title(title)


def check_vmax(vmax) -> None:
    """``vmax``: a positive number, or ``"pNN"`` (a percentile in ``(0, 100]``, as scanpy's ``vmax="p99"``)."""
    number = isinstance(vmax, (int, float, np.integer, np.floating)) and not isinstance(vmax, (bool, np.bool_))
    if number and np.isfinite(vmax) and vmax > 0:
        return
    if isinstance(vmax, str) and re.fullmatch(r"p(\d+(\.\d*)?)", vmax) and 0 < float(vmax[1:]) <= 100:
        return
    raise ValueError(f"vmax: expected a positive number or 'pNN' (a percentile in (0, 100]), got {vmax!r}")


def scale_top(values: np.ndarray, vmax: float | str) -> float:
    """The top of a colour scale: ``vmax`` itself, or its percentile of the finite ``values`` (0 without any)."""
    if not isinstance(vmax, str):
        return float(vmax)
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, float(vmax[1:]))) if finite.size else 0.0


def colorbar_ends(values: np.ndarray, norm) -> str:
    """The colorbar's pointed ends (``extend``): where values lie beyond the scale ``norm`` (``vmin``, ``vmax``)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "neither"
    low, high = bool(finite.min() < norm.vmin), bool(finite.max() > norm.vmax)
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get((low, high), "neither")
