"""Reading and checking what ``tl`` functions take: AnnData or MuData, a time key, primary and secondary bases.

Nothing here writes into the user's object; every problem is a ``ValueError`` that names the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._settings import warn
from ._time_labels import label_times


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


# Widest basis taken: embeddings have tens of columns (ADT panels a few hundred); a wider one is a feature matrix
# passed by mistake (sci-CAR's 52,761 ATAC peaks as a secondary stalled in the kNN predictability check)
MAX_BASIS_COLUMNS = 1000


def _stored(data, key: str, what: str):
    """``(table, .obsm[key] as stored, its number of columns)``, the key checked."""
    mod, name = _split(key, data)
    table = _table(data, mod)
    if name not in table.obsm:
        hint = ""
        if not len(table.obsm) or name == "X":  # .X, or no embedding yet: the bases are .obsm embeddings
            hint = (
                "; the bases are embeddings in .obsm, not .X: compute one first (sc_syncot.pp.embed_rna -> 'X_pca', "
                "sc_syncot.pp.embed_atac -> 'X_lsi', or scanpy's sc.pp.pca)"
            )
        raise ValueError(f"{what}={key!r}: not in .obsm (keys: {list(table.obsm)}){hint}")
    raw = table.obsm[name]
    return table, raw, raw.shape[1] if getattr(raw, "ndim", 0) == 2 else 1


def basis_width(data, key: str, what: str) -> int:
    """Columns of ``.obsm[key]``, without reading its values (a missing key is named as :func:`basis` names it)."""
    return _stored(data, key, what)[2]


def basis(data, key: str, what: str, n_columns: int | None = None) -> pd.DataFrame:
    """``.obsm[key]`` (its first ``n_columns`` columns, all by default) as a DataFrame indexed by cell names.

    Checked finite and not all at one point: NaNs in columns that are not used do not matter.
    """
    table, raw, width = _stored(data, key, what)
    if min(width, n_columns or width) > MAX_BASIS_COLUMNS:
        raise ValueError(
            f"{what}={key!r}: {width} columns; expected an embedding (at most {MAX_BASIS_COLUMNS} columns, typically "
            "10-50), not a feature matrix: embed it first (sc_syncot.pp.embed_rna -> 'X_pca', "
            "sc_syncot.pp.embed_atac -> 'X_lsi')"
        )
    if sp.issparse(raw):  # anndata stores sparse embeddings as they come; the bases are used densely
        raw = raw[:, :n_columns].toarray()
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={key!r}: expected numeric coordinates, got {type(raw).__name__}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{what}={key!r}: expected an (n_cells, n_dims) array with columns, got shape {arr.shape}")
    arr = arr[:, :n_columns]
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        names = list(table.obs_names[bad][:3]) + (["..."] if bad.sum() > 3 else [])
        raise ValueError(
            f"{what}={key!r}: {int(bad.sum())} {'cell has' if bad.sum() == 1 else 'cells have'} NaN or inf "
            f"coordinates ({', '.join(map(str, names))}); drop or impute them first"
        )
    if len(arr) and not np.any(np.ptp(arr, axis=0) > 0):
        raise ValueError(f"{what}={key!r}: all cells have the same coordinates; expected an embedding with spread")
    return pd.DataFrame(arr, index=table.obs_names)


def _warn_labels(time_key: str, what: str, labels: list[str], values: list[float], how: str) -> None:
    warn(
        f"time_key={time_key!r}: {what} {labels} read as times {[float(f'{v:.4g}') for v in values]}, {how}; "
        "velocities and growth rates are "
        "per unit of these times. Pass a numeric column to set them yourself.",
        UserWarning,
    )


def _numbers_read(unit: str | None) -> str:
    return "the numbers in its labels" + (f", in {unit}s (its labels name several units)" if unit else "")


def _ordered_labels_as_times(col: pd.Series, time_key: str) -> pd.Series:
    """Times of an ordered categorical with text labels, with a warning that says what was read.

    Labels that start with increasing numbers (``"0h" < "1h" < "3h"``, ``"day 2" < "day 5"``) give those
    numbers, so that intervals keep their lengths; otherwise the categories are taken as equally spaced steps
    (their codes). Either way the velocities and growth rates are per unit of the times read here.
    """
    cats = [str(c) for c in col.cat.categories]
    try:
        numbers, unit = label_times(cats, time_key)
    except ValueError:  # units that cannot be put in one: the order given still holds
        numbers, unit = [None], None
    if None not in numbers and all(b > a for a, b in zip(numbers, numbers[1:], strict=False)):
        values, how = numbers, _numbers_read(unit)
    else:
        values = list(range(len(cats)))
        how = "equally spaced steps in the order of the categories (the labels hold no increasing numbers in one unit)"
    _warn_labels(time_key, "ordered categories", cats, values, how)
    mapping = dict(zip(col.cat.categories, values, strict=True))
    return col.map(mapping).astype(float)


def _unordered_labels_as_times(col: pd.Series, time_key: str) -> pd.Series:
    """Times of text labels without an order (text, or an unordered categorical as ``read_h5ad`` gives them).

    Every label must hold a number (``"day0"``, ``"12h"``, ``"E8.5"``), and different labels different numbers:
    those numbers are the times, with the same warning as for ordered labels. Anything else is refused, as no
    order can be read from it.
    """
    labels = sorted({str(v) for v in col.dropna()})
    numbers, unit = label_times(labels, time_key)
    missing = [lab for lab, num in zip(labels, numbers, strict=True) if num is None]
    if missing or len(set(numbers)) < len(numbers):
        why = f"labels {missing} hold no number" if missing else "different labels hold the same number"
        raise ValueError(
            f"time_key={time_key!r}: text labels {labels} cannot be read as times ({why}); make it numeric or an "
            "ordered categorical"
        )
    order = np.argsort(numbers)
    labels_in_order, times_in_order = [labels[i] for i in order], [numbers[i] for i in order]
    _warn_labels(time_key, "text labels", labels_in_order, times_in_order, _numbers_read(unit))
    return col.astype(str).map(dict(zip(labels, numbers, strict=True))).astype(float)


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
        warn(
            f"time_key={time_key!r}: categories {unused} have no cells and are left out",
            UserWarning,
        )
        col = col.cat.remove_unused_categories()
    return col


# Times closer than this, relative to the largest |time| (or the range), are one time point read twice: float32
# storage or arithmetic moves a time by a few 1e-8 of its value (1.0 -> 0.9999999), while real sampling times
# differ by far more than a millionth of the course.
TIME_RTOL = 1e-6


def _merge_close_times(col: pd.Series, time_key: str) -> pd.Series:
    """Times that differ by float noise merged into the one most cells have, with a warning that names them."""
    values, counts = np.unique(col.to_numpy(), return_counts=True)
    if len(values) < 2:
        return col
    tol = TIME_RTOL * max(np.abs(values).max(), np.ptp(values))
    cluster = np.concatenate([[0], np.cumsum(np.diff(values) > tol)])
    if cluster[-1] == len(values) - 1:
        return col
    to, merged = {}, []
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        # most cells first; on a tie the shortest decimal (1.0 rather than 0.9999999)
        keep = min(values[members], key=lambda v: (-counts[values == v][0], len(repr(float(v)))))
        to.update({values[i]: keep for i in members})
        if len(members) > 1:
            merged.append(f"{values[members].tolist()} -> {keep!r}")
    warn(
        f"time_key={time_key!r}: times that differ by less than {TIME_RTOL:g} of the largest time (float rounding, "
        f"e.g. float32 storage) are read as one time point, the value most of their cells have (on a tie the "
        f"shortest): {'; '.join(merged)}",
        UserWarning,
    )
    return col.map(to)


def as_number(value, what: str) -> float:
    """``value`` as a float when it is a real number (not text, not a bool), else a ``ValueError`` naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what}: expected a number, got {value!r} ({type(value).__name__})")
    return float(value)


def observed_time(value, time_points: np.ndarray, what: str = "time", which: str = "the observed time points") -> int:
    """Index of the observed time point ``value`` names (within float rounding, as :func:`times` merges them)."""
    value = as_number(value, what)
    tp = np.asarray(time_points, dtype=float)
    tol = TIME_RTOL * max(np.abs(tp).max(), np.ptp(tp))
    hit = np.flatnonzero(np.abs(tp - float(value)) <= tol)
    if len(hit) == 0:
        raise ValueError(f"{what}: expected one of {which} {tp.tolist()}, got {value!r}")
    return int(hit[0])


def times(data, time_key: str, primary: str) -> pd.Series:
    """Numeric times per cell of the primary table.

    Numbers as they are; an ordered categorical by the numbers in its labels or else its order; text or an
    unordered categorical by the numbers in its labels (``"day0"``, ``"12h"``; as ``read_h5ad`` returns text
    columns). Labels in different units (``"8h"``, ``"1d"``) are read in one (:func:`._time_labels.one_unit`), or
    refused where that is unclear. Categories that no cell has are left out, and times that differ by float
    rounding merged, each with a warning.
    """
    col = obs_column(data, primary, time_key, "time_key")
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = _drop_unused(col, time_key)
        if pd.api.types.is_numeric_dtype(col.cat.categories):
            col = col.astype(float)
        elif col.cat.ordered:
            col = _ordered_labels_as_times(col, time_key)
        else:
            col = _unordered_labels_as_times(col, time_key)
    elif pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
        col = _unordered_labels_as_times(col, time_key)
    elif not pd.api.types.is_numeric_dtype(col):
        raise ValueError(f"time_key={time_key!r}: expected numeric times or labels holding numbers, got {col.dtype}")
    col = col.astype(float)
    bad = int(col.isna().sum() + np.isinf(col).sum())
    if bad:
        raise ValueError(f"time_key={time_key!r}: {bad} cells have no time (NaN or inf)")
    return _merge_close_times(col, time_key)


@dataclass
class CellData:
    """Arrays a solve needs, aligned over the primary table's cells."""

    names: pd.Index  # cells of the primary table
    time: np.ndarray  # (n,)
    x: np.ndarray  # (n, d) primary coordinates used
    y: np.ndarray | None  # (n, dY) secondary coordinates, NaN for unpaired cells
    paired: np.ndarray  # (n,) bool
    time_points: np.ndarray  # (K,) sorted distinct times
    # several secondaries: each basis key and its columns of ``y`` (side by side); empty for one or none
    blocks: tuple[tuple[str, slice], ...] = ()


def secondary_keys(secondary) -> list[str]:
    """The secondary bases as a list of keys: ``[]`` for ``None``, ``[key]`` for one, the keys of a sequence."""
    if secondary is None:
        return []
    if isinstance(secondary, str):
        return [secondary]
    if isinstance(secondary, (list, tuple, np.ndarray, pd.Index)):
        keys = list(secondary)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"secondary: expected an .obsm key or a non-empty list of keys, got {secondary!r}")
        return keys
    raise ValueError(f"secondary: expected an .obsm key, a list of keys or None, got {secondary!r}")


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
    keys = secondary_keys(secondary)
    ys = [_paired_secondary(data, key, x.index, primary) for key in keys]
    y = np.hstack(ys) if ys else None
    blocks = ()
    if len(keys) > 1:  # each basis' columns of y, for the write-back and the scores per space
        ends = np.cumsum([0] + [b.shape[1] for b in ys])
        blocks = tuple((k, slice(int(a), int(b))) for k, a, b in zip(keys, ends[:-1], ends[1:], strict=True))
    return CellData(x.index, t, x.to_numpy(), y, np.ones(len(x), bool), points, blocks)


def _paired_secondary(data, key: str, names: pd.Index, primary: str) -> np.ndarray:
    """A secondary basis over the primary table's cells, refusing cells it does not have."""
    sec = basis(data, key, "secondary")
    _check_unique_names(sec.index, key)
    paired = names.isin(sec.index)
    if not paired.all():
        raise ValueError(
            f"secondary={key!r}: {int((~paired).sum())} of the {len(names)} cells of primary={primary!r} "
            "have no secondary coordinates (cells are matched by name); subset the data to the paired cells, "
            "or for unpaired views use sc_syncot.pp.couple_views first"
        )
    return sec.reindex(names).to_numpy()


def check_key_added(key, what: str = "key_added") -> str:
    """``key`` if an .h5ad file can hold it as a key: a non-empty string without ``"/"``.

    anndata accepts other keys in memory, but ``"/"`` splits HDF5 groups (``read_h5ad`` then fails on the whole
    file), an empty name replaces the group it is written in, and non-strings cannot be written at all.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what}: expected a non-empty string (a key of the AnnData), got {key!r}")
    if "/" in key:
        raise ValueError(f"{what}={key!r}: '/' cannot be in a key of an .h5ad file (it separates groups there)")
    return key


def is_fit(value) -> bool:
    """Whether an ``.uns`` entry is a result of :func:`sc_syncot.tl.syncot` (which the flow tools read back)."""
    return isinstance(value, Mapping) and "params" in value and "velocity" in value


def check_writes(
    table: ad.AnnData,
    writes: list[tuple[str, str]],
    reads: Mapping[tuple[str, str], str],
    key: str,
    what: str = "key_added",
    fit: bool = False,
) -> None:
    """Refuse names that would overwrite what the call reads, a stored fit, or (for a fit) data of other origin.

    Parameters
    ----------
    table
        The AnnData written into.
    writes
        ``(part, name)`` pairs the call writes, such as ``("obsm", "syncot_velocity")``.
    reads
        ``(part, name) -> description`` of what must survive the call: its inputs (bases, the time column, ...)
        and the fit it reads.
    key
        The value of ``what`` that set the names.
    what
        The argument that set the names.
    fit
        For :func:`sc_syncot.tl.syncot` (``key`` is its ``key_added``): every name written must be new, or belong
        to an earlier fit under the same key (``.uns[key]`` is one), so that a fit never replaces data it did
        not write, while a repeated fit replaces its own results. Otherwise ``.uns`` entries holding a fit are
        refused.
    """
    ours = fit and is_fit(table.uns.get(key))
    for part, name in writes:
        where, present = f".{part}[{name!r}]", name in getattr(table, part)
        if (part, name) in reads:
            raise ValueError(f"{what}={key!r}: would overwrite {where}, {reads[part, name]}; choose another {what}")
        if not fit and part == "uns" and present and is_fit(table.uns[name]):
            raise ValueError(
                f"{what}={key!r}: would overwrite {where}, an sc_syncot result (what tl.push, tl.pull, "
                f"tl.trajectories and the plots read); choose another {what}"
            )
        if fit and present and not ours:
            raise ValueError(
                f"{what}={key!r}: would overwrite {where}, which holds data of another origin (no earlier sc_syncot "
                f"result is stored under {key!r}); choose another {what}, or delete {where} first"
            )


def located(data, key: str) -> tuple[ad.AnnData, str]:
    """The AnnData that holds a basis named ``key`` (a modality of a MuData) and its ``.obsm`` name there."""
    mod, name = _split(key, data)
    return _table(data, mod), name


def primary_table(data, primary: str) -> ad.AnnData:
    """The AnnData that per-cell results go to (the primary modality of a MuData)."""
    mod, _ = _split(primary, data)
    return _table(data, mod)
