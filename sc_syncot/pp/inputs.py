"""Reading and checking what ``tl`` functions take: AnnData or MuData, a time key, primary and secondary bases.

Nothing here writes into the user's object; every problem is a ``ValueError`` that names the key.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def is_mudata(data) -> bool:
    """MuData without importing it (mudata is optional): it has modalities in ``.mod``."""
    return isinstance(getattr(data, "mod", None), Mapping)


def _split(key: str, data) -> tuple[str | None, str]:
    if is_mudata(data):
        if ":" not in key:
            raise ValueError(f"{key!r}: with MuData, name bases as 'modality:obsm_key' (modalities: {list(data.mod)})")
        mod, name = key.split(":", 1)
        if mod not in data.mod:
            raise ValueError(f"{key!r}: no modality {mod!r} (modalities: {list(data.mod)})")
        return mod, name
    return None, key


def _table(data, mod: str | None) -> ad.AnnData:
    return data if mod is None else data.mod[mod]


def basis(data, key: str, what: str, n_columns: int | None = None) -> pd.DataFrame:
    """``.obsm[key]`` (its first ``n_columns`` columns, all by default) as a DataFrame indexed by cell names.

    Checked finite and not all at one point: NaNs in columns that are not used do not matter.
    """
    mod, name = _split(key, data)
    table = _table(data, mod)
    if name not in table.obsm:
        raise ValueError(f"{what}={key!r}: not in .obsm (keys: {list(table.obsm)})")
    raw = table.obsm[name]
    if sp.issparse(raw):  # anndata stores sparse embeddings as they come; the bases are used densely
        raw = raw.toarray()
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={key!r}: expected numeric coordinates, got {type(raw).__name__}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{what}={key!r}: expected an (n_cells, n_dims) array with columns, got shape {arr.shape}")
    arr = arr[:, :n_columns]
    bad = int(np.sum(~np.isfinite(arr).all(1)))
    if bad:
        raise ValueError(f"{what}={key!r}: {bad} cells have NaN or inf coordinates; drop or impute them first")
    if len(arr) and not np.any(np.ptp(arr, axis=0) > 0):
        raise ValueError(f"{what}={key!r}: all cells have the same coordinates; expected an embedding with spread")
    return pd.DataFrame(arr, index=table.obs_names)


def _ordered_labels_as_times(col: pd.Series, time_key: str) -> pd.Series:
    """Times of an ordered categorical with text labels, with a warning that says what was read.

    Labels that start with increasing numbers (``"0h" < "1h" < "3h"``, ``"day 2" < "day 5"``) give those
    numbers, so that intervals keep their lengths; otherwise the categories are taken as equally spaced steps
    (their codes). Either way the velocities and growth rates are per unit of the times read here.
    """
    cats = [str(c) for c in col.cat.categories]
    found = [re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", c) for c in cats]
    numbers = [float(m.group()) for m in found if m is not None]
    if len(numbers) == len(cats) and all(b > a for a, b in zip(numbers, numbers[1:], strict=False)):
        values, how = numbers, "the numbers in its labels"
    else:
        values, how = list(range(len(cats))), "equally spaced steps (the labels hold no increasing numbers)"
    warnings.warn(
        f"time_key={time_key!r}: ordered categories {cats} read as times {values}, {how}; velocities and growth "
        "rates are per unit of these times. Pass a numeric column to set them yourself.",
        UserWarning,
        stacklevel=3,
    )
    mapping = dict(zip(col.cat.categories, values, strict=True))
    return col.map(mapping).astype(float)


def obs_column(data, primary: str, key: str, what: str) -> pd.Series:
    """``.obs[key]`` over the cells of the primary table; for MuData, the modality's column or else the global one."""
    mod, _ = _split(primary, data)
    obs = _table(data, mod).obs
    if key in obs:
        return obs[key]
    if mod is not None and key in data.obs:
        return data.obs[key].reindex(obs.index)
    where = f".mod[{mod!r}].obs or the MuData's .obs" if mod is not None else ".obs"
    raise ValueError(f"{what}={key!r}: not in {where} (columns: {list(obs.columns)})")


def _drop_unused(col: pd.Series, time_key: str) -> pd.Series:
    """A categorical without the categories that no cell has, with a warning that names them.

    An unused category is a time point with no cells: it cannot be fitted, and left in an ordered categorical it
    would shift the equally spaced steps read from the codes.
    """
    unused = [c for c in col.cat.categories if c not in set(col.dropna())]
    if unused:
        warnings.warn(
            f"time_key={time_key!r}: categories {unused} have no cells and are left out",
            UserWarning,
            stacklevel=4,
        )
        col = col.cat.remove_unused_categories()
    return col


def times(data, time_key: str, primary: str) -> pd.Series:
    """Numeric times per cell of the primary table (ordered categoricals map to their codes).

    Categories that no cell has are left out, with a warning.
    """
    col = obs_column(data, primary, time_key, "time_key")
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = _drop_unused(col, time_key)
        cats = col.cat.categories
        if pd.api.types.is_numeric_dtype(cats):
            col = col.astype(float)
        elif col.cat.ordered:
            col = _ordered_labels_as_times(col, time_key)
        else:
            raise ValueError(
                f"time_key={time_key!r}: categories {list(cats)} are neither numbers nor ordered; make it an "
                "ordered categorical or numeric"
            )
    elif not pd.api.types.is_numeric_dtype(col):
        raise ValueError(
            f"time_key={time_key!r}: expected numeric times or an ordered categorical, got {col.dtype} (text "
            "labels: make them an ordered categorical, or numbers with pd.to_numeric)"
        )
    col = col.astype(float)
    bad = int(col.isna().sum() + np.isinf(col).sum())
    if bad:
        raise ValueError(f"time_key={time_key!r}: {bad} cells have no time (NaN or inf)")
    return col


@dataclass
class CellData:
    """Arrays a solve needs, aligned over the primary table's cells."""

    names: pd.Index  # cells of the primary table
    time: np.ndarray  # (n,)
    x: np.ndarray  # (n, d) primary coordinates used
    y: np.ndarray | None  # (n, dY) secondary coordinates, NaN for unpaired cells
    paired: np.ndarray  # (n,) bool
    time_points: np.ndarray  # (K,) sorted distinct times


def _check_unique_names(names: pd.Index, key: str) -> None:
    """Cells are matched by name (bases, modalities, results read back): duplicated names would mix them up."""
    if names.has_duplicates:
        dup = names[names.duplicated()].unique()
        raise ValueError(
            f"obs_names: {len(dup)} cell name(s) of the table of {key!r} are duplicated (e.g. {str(dup[0])!r}); "
            "expected unique names: call .obs_names_make_unique() first"
        )


def read_cells(
    data, time_key: str, primary: str, secondary: str | None, n_dims: int | None, min_cells: int = 3
) -> CellData:
    """Collect and check times, primary coordinates (first ``n_dims`` columns; ``None``: all) and secondary ones."""
    if not isinstance(data, ad.AnnData) and not is_mudata(data):
        raise ValueError(f"data: expected an AnnData or a MuData, got {type(data).__name__}")
    if n_dims is not None and (not isinstance(n_dims, (int, np.integer)) or not 1 <= n_dims <= 3):
        raise ValueError(f"n_dims: the primary grid has 1 to 3 dimensions, got {n_dims!r}")
    x = basis(data, primary, "primary", n_dims)
    if len(x) == 0:
        raise ValueError(f"data: expected cells, got an empty {type(data).__name__} (0 cells in primary={primary!r})")
    _check_unique_names(x.index, primary)
    if n_dims is not None and x.shape[1] < n_dims:
        raise ValueError(f"primary={primary!r}: has {x.shape[1]} columns, n_dims={n_dims} needs at least that many")
    t = times(data, time_key, primary).to_numpy()
    points, counts = np.unique(t, return_counts=True)
    if len(points) < 2:
        raise ValueError(f"time_key={time_key!r}: expected at least two time points, found {points.tolist()}")
    few = points[counts < min_cells]
    if len(few):
        raise ValueError(
            f"time_key={time_key!r}: time point(s) {few.tolist()} have fewer than {min_cells} cells; drop or merge them"
        )
    y, paired = None, np.ones(len(x), bool)
    if secondary is not None:
        sec = basis(data, secondary, "secondary")
        _check_unique_names(sec.index, secondary)
        paired = x.index.isin(sec.index)
        if not paired.all():
            raise ValueError(
                f"secondary={secondary!r}: {int((~paired).sum())} of the {len(x)} cells of primary={primary!r} "
                "have no secondary coordinates (cells are matched by name); subset the data to the paired cells, "
                "or for unpaired views use sc_syncot.pp.couple_views first"
            )
        y = sec.reindex(x.index).to_numpy()
    return CellData(x.index, t, x.to_numpy(), y, paired, points)


def primary_table(data, primary: str) -> ad.AnnData:
    """The AnnData that per-cell results go to (the primary modality of a MuData)."""
    mod, _ = _split(primary, data)
    return _table(data, mod)
