"""The trade-off between the primary and the secondary cost over a sweep of the weight ``lambda``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figure import finish, label_axes, panels

COLUMNS = ("weight", "primary", "secondary")


def cost_table(results, key: str = "syncot", secondary: str | None = None) -> pd.DataFrame:
    """``weight``, ``primary`` and ``secondary`` costs from a table or from stored results.

    Parameters
    ----------
    results
        A DataFrame (or a mapping of columns) with ``weight``, ``primary`` and ``secondary``; or a sequence of
        results of :func:`sc_syncot.tl.syncot`, each an ``.uns[key]`` dict or an AnnData holding one (or just one
        of those). From a
        result, ``primary`` is the primary action (transport + growth) and ``secondary`` the secondary action
        without its weight (``.uns[key]["secondary_action"]``, or the stored secondary cost divided by ``lambda``),
        both summed over the intervals. Fits of either coupling store their secondary action at every weight, 0
        included (the action along the path fitted without it); a stored result without it at ``lambda = 0``
        reads NaN, and :func:`tradeoff` drops that row.
    key
        ``.uns`` key of the results given as AnnData.
    secondary
        Results fitted with several secondaries: the basis key whose weight and action are read (its
        ``.uns[key]["secondary_actions"][secondary]``, or ``.uns[key]["costs"][secondary]`` over its weight).
        Needed for such results; results of one secondary take ``None`` (or that basis' key).
    """
    if (isinstance(results, Mapping) and "costs" in results) or hasattr(results, "uns"):
        results = [results]  # one stored result, or one AnnData (which would otherwise iterate over its cells)
    tabled = isinstance(results, (pd.DataFrame, Mapping))
    results = results if tabled else list(results)  # read twice below
    if key != "syncot" and (tabled or not any(hasattr(r, "uns") for r in results)):
        raise ValueError(f"key={key!r}: names the .uns entry of AnnData results, and none is given")
    if secondary is not None and tabled:
        raise ValueError(f"secondary={secondary!r}: names a basis of stored results, and a table is given")
    if isinstance(results, pd.DataFrame):
        table = results
    elif isinstance(results, Mapping):
        table = pd.DataFrame(dict(results))
    else:
        table = pd.DataFrame([_costs_of(r, key, secondary) for r in results])
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {missing}; expected {list(COLUMNS)}")
    return table.loc[:, list(COLUMNS)].astype(float)


def _costs_of(result, key: str, secondary: str | None) -> dict[str, float]:
    uns = result.uns.get(key) if hasattr(result, "uns") else result
    if not isinstance(uns, Mapping) or "costs" not in uns or "params" not in uns:
        raise ValueError(f"results: expected .uns[{key!r}] results of sc_syncot.tl.syncot, got {type(result).__name__}")
    costs = uns["costs"]
    primary = float(np.sum(costs["primary_transport"]) + np.sum(costs["primary_growth"]))
    weight, action, stored = _secondary_of(uns, secondary)
    if action is not None:
        value = float(np.sum(action))
    else:
        value = float(np.sum(stored)) / weight if stored is not None and weight > 0 else np.nan
    return {"weight": weight, "primary": primary, "secondary": value}


def _secondary_of(uns: Mapping, secondary: str | None) -> tuple[float, object, object]:
    """The weight, the stored action (without the weight) and the stored cost of the secondary read from a result.

    A result of several secondaries stores them by basis key; ``secondary`` picks one.
    """
    params, costs = uns["params"], uns["costs"]
    if "couplings" not in uns:  # one secondary (or none): stored under "secondary"
        given = params.get("secondary")
        if secondary is not None and secondary != given:
            raise ValueError(f"secondary={secondary!r}: the result was fitted with secondary={given!r} only")
        return float(params["weight"]), uns.get("secondary_action"), costs.get("secondary")
    keys = [str(k) for k in np.atleast_1d(params["secondary"])]
    if secondary not in keys:
        raise ValueError(f"secondary={secondary!r}: the result has several secondaries {keys}; pass one of them")
    weight = float(np.atleast_1d(params["weight"])[keys.index(secondary)])
    return weight, uns.get("secondary_actions", {}).get(secondary), costs.get(secondary)


def tradeoff(
    results: pd.DataFrame | Mapping | Sequence,
    key: str = "syncot",
    secondary: str | None = None,
    annotate: bool = True,
    ax: Axes | None = None,
    show: bool | None = None,
    return_fig: bool | None = None,
    save: bool | str | None = None,
) -> Figure | Axes | None:
    """Primary cost against secondary cost over a sweep of the weight ``lambda``, each point labelled with it.

    A larger weight buys a cheaper secondary path with a costlier primary one; the curve shows how much of one is
    paid for the other.

    Parameters
    ----------
    results
        A DataFrame with columns ``weight``, ``primary``, ``secondary`` (or a mapping of such columns), or a
        sequence of ``.uns`` results (or AnnData holding them under ``key``); see :func:`cost_table`. Rows with a
        missing cost are left out.
    key
        ``.uns`` key of results given as AnnData.
    secondary
        Results of several secondaries: the basis whose cost is drawn (see :func:`cost_table`).
    annotate
        Label each point with its weight.
    ax, show, return_fig, save
        As in :func:`sc_syncot.pl.density_path` (one panel).

    Returns
    -------
    The Figure when ``return_fig``; else the axes when not shown; else ``None``.
    """
    table = cost_table(results, key, secondary).dropna().sort_values("weight")
    if table.empty:
        raise ValueError("results: no row with a weight, a primary and a secondary cost")
    fig, axes = panels(1, ax)
    a = axes[0]
    a.plot(table["primary"], table["secondary"], "-o", color="k", markersize=5)
    if annotate:
        for w, p, s in table.itertuples(index=False):
            a.annotate(f"λ = {w:g}", (p, s), textcoords="offset points", xytext=(5, 5), fontsize="small")
    label_axes(a, ["primary cost", "secondary cost (without λ)"], "cost trade-off")
    return finish(fig, axes, show, return_fig, save, "tradeoff")
