"""A growth prior from proliferation and apoptosis gene scores, as Waddington-OT and moscot use.

Per cell, ``birth = b_min + (b_max - b_min) s(p)``, ``death = d_min + (d_max - d_min) s(a)`` with ``s`` the
logistic function of the standardized proliferation and apoptosis scores ``p``, ``a`` (scanpy's
``score_genes``), and the growth rate ``g = birth - death``. The ranges are per day, Waddington-OT's calibration
(0.3 to 1.7 per day for both); the rate written is per unit of the time key, converted by ``time_unit``. The
masses of the time points then follow from :func:`~sc_syncot.pp.time_point_masses` with
``masses="growth_prior"``.

References
----------
G. Schiebinger et al., "Optimal-transport analysis of single-cell gene expression identifies developmental
trajectories in reprogramming", Cell 176 (2019).
"""

from __future__ import annotations

import logging
import re

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from .._settings import warn
from ..solvers.grid import is_integer
from ._time_labels import TIME_UNITS, label_times, label_units, units_named
from .inputs import check_key_added, check_writes

logger = logging.getLogger("sc_syncot")

# Marker genes of the cell cycle (S and G2/M phases, DNA replication, mitosis) and of apoptosis (intrinsic and
# extrinsic pathways, p53 targets), human (HGNC) symbols. The mouse (MGI) symbols of their orthologs are the same
# names in title case ("Mki67"), except those in MOUSE_SYMBOLS; CASP10 has no mouse ortholog.
PROLIFERATION_GENES = (
    "MKI67 TOP2A PCNA MCM2 MCM3 MCM4 MCM5 MCM6 MCM7 MCM10 CCNA2 CCNB1 CCNB2 CCNE1 CCNE2 CDK1 CDC20 CDC6 CDC45 CDT1 "
    "AURKA AURKB BUB1 BUB1B PLK1 CENPA CENPE CENPF TYMS RRM1 RRM2 TK1 E2F1 E2F8 FOXM1 UBE2C BIRC5 KIF11 KIF20A "
    "KIF2C KIF23 NUSAP1 PRC1 SMC4 HMGB2 TPX2 CKS2 CKS1B CDKN3 MAD2L1 ZWINT GINS2 UHRF1 CLSPN DTL FEN1 RFC4 "
    "POLA1 PRIM1 GMNN SLBP HELLS RAD51 RAD51AP1 CHAF1B DHFR NASP USP1 EXO1 BRIP1 DSCC1 BLM CDCA3 CDCA8 CDCA2 "
    "NDC80 NUF2 TTK KIF4A HJURP DLGAP5 ECT2 ANLN CKAP2L GTSE1 TACC3 HMMR CDC25C G2E3 PSRC1 LBR CTCF NEK2"
).split()
APOPTOSIS_GENES = (
    "BAX BAK1 BID BAD BCL2L11 BBC3 PMAIP1 BIK HRK CASP2 CASP3 CASP6 CASP7 CASP8 CASP9 CASP10 CYCS APAF1 DIABLO "
    "FAS FASLG TNF TNFRSF1A TNFRSF10B TNFSF10 TRADD FADD DAP DAPK1 DAPK2 PERP SESN1 TP53 TP53I3 CDKN1A GADD45A "
    "GADD45B MDM2 AIFM1 ENDOG HTRA2 BNIP3 BNIP3L PDCD4 PDCD5 TIMP3 IER3 GSN LMNA CD44 EMP1 SQSTM1 IGFBP3 "
    "TXNIP CLU DDIT3 ATF3 PPP1R15A XIAP BIRC2 BIRC3 CFLAR"
).split()


MOUSE_SYMBOLS = {"TP53": "Trp53", "TP53I3": "Trp53i3", "FASLG": "Fasl"}
NOT_IN_MOUSE = ("CASP10",)
ORGANISMS = ("human", "mouse")

# The bundled sets are picked from how the symbols are written, when at least this share of at least this many
# symbols is written one way: upper case as human (HGNC) symbols, mixed case as mouse (MGI) ones.
SYMBOL_CASE_SHARE = 0.8
SYMBOL_CASE_MIN = 20
ENSEMBL_ID = re.compile(r"ENS[A-Z]*G\d{6,}")  # ENSG..., ENSMUSG...: identifiers, not symbols
SET_NAMES = ("proliferation", "apoptosis")


def gene_sets(organism: str = "human") -> dict[str, list[str]]:
    """The bundled proliferation and apoptosis gene sets.

    Parameters
    ----------
    organism
        ``"human"`` (HGNC symbols, ``"MKI67"``) or ``"mouse"`` (MGI symbols, ``"Mki67"``: the human ones in title
        case but ``Trp53``, ``Trp53i3`` and ``Fasl``; no ``Casp10``, which mouse lacks).

    Returns
    -------
    dict
        ``{"proliferation": [...], "apoptosis": [...]}``, 93 and 62 human genes, 93 and 61 mouse genes.
    """
    if organism == "human":
        return {"proliferation": list(PROLIFERATION_GENES), "apoptosis": list(APOPTOSIS_GENES)}
    if organism == "mouse":
        return {
            name: [MOUSE_SYMBOLS.get(g, g.capitalize()) for g in genes if g not in NOT_IN_MOUSE]
            for name, genes in (("proliferation", PROLIFERATION_GENES), ("apoptosis", APOPTOSIS_GENES))
        }
    raise ValueError(f"organism: expected 'human' or 'mouse', got {organism!r}")


def _logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _standardized(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


# --- the time unit ---------------------------------------------------------------------------------------------------

UNIT_CHOICES = "'day', 'hour', 'minute', 'week' or a number of days per unit of the time key (e.g. 1/24 for hours)"


def _days_per_unit(time_unit) -> float:
    """Days in one unit of the time key, for a ``time_unit`` given."""
    if isinstance(time_unit, str):
        if time_unit in TIME_UNITS:
            return TIME_UNITS[time_unit]
    elif isinstance(time_unit, (int, float, np.integer, np.floating)) and not isinstance(time_unit, (bool, np.bool_)):
        if np.isfinite(time_unit) and time_unit > 0:
            return float(time_unit)
    raise ValueError(f"time_unit: expected {UNIT_CHOICES}, got {time_unit!r}")


def _time_labels(col: pd.Series, time_key: str) -> tuple[list[str] | None | str, str | None]:
    """The labels whose numbers :func:`sc_syncot.pp.inputs.times` reads as times, and the unit it converts them to.

    ``None`` for numeric times; ``"steps"`` when it reads no numbers (the order of the categories, or labels it
    refuses). The unit is ``None`` unless the labels name several units (:func:`._time_labels.one_unit`).
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        if pd.api.types.is_numeric_dtype(col.cat.categories):
            return None, None
        labels = [str(c) for c in col.cat.categories]
        try:
            numbers, unit = label_times(labels, time_key)
        except ValueError:  # read as steps when ordered, refused by the times otherwise
            return "steps", None
        if col.cat.ordered:
            increasing = None not in numbers and all(b > a for a, b in zip(numbers, numbers[1:], strict=False))
            return (labels, unit) if increasing else ("steps", None)
    elif pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col):
        labels = sorted({str(v) for v in col.dropna()})
        try:
            numbers, unit = label_times(labels, time_key)
        except ValueError:  # refused by the times, which say why
            return "steps", None
    else:
        return None, None
    return (labels, unit) if None not in numbers and len(set(numbers)) == len(numbers) else ("steps", None)


def infer_time_unit(adata: ad.AnnData, time_key: str) -> tuple[str | None, str]:
    """The unit that the name or the labels of ``adata.obs[time_key]`` name, and where it was read (or why none).

    A unit is read from the column's name (``"time_h"``, ``"day"``, ``"hours_post_treatment"``) and, for labels
    whose numbers are the times (``"12h"``, ``"day3"``: every label must name a unit), from the labels; labels in
    several units (``"8h"``, ``"1d"``) are read in the one that :func:`sc_syncot.pp.inputs.times` converts them to. It
    is inferred only when these name exactly one unit, and never when the times are the steps of an ordered
    categorical (labels without increasing numbers), which have no unit.

    Returns
    -------
    tuple
        ``("day" | "hour" | "minute" | "week", where)`` or ``(None, why not)``.
    """
    labels, converted = _time_labels(adata.obs[time_key], time_key)  # converted: labels in several units, read in it
    if isinstance(labels, str):
        return None, "its times are not read from numbers in its labels (steps of ordered categories have no unit)"
    from_name = units_named(time_key)
    per_label = label_units(labels or [])
    from_labels = {converted} if converted else set().union(*per_label) if per_label and all(per_label) else set()
    found = from_name | from_labels
    if len(found) > 1:
        return None, f"its name and labels name several units ({sorted(found)})"
    if not found:
        return None, "its name names no unit" + ("" if labels is None else ", nor do all its labels")
    where = [w for w, units in (("its name", from_name), ("its labels", from_labels)) if units]
    shown = f" {labels[:3]}" if from_labels else ""
    return found.pop(), f"time_key={time_key!r}: {' and '.join(where)}{shown}"


def _time_unit(adata: ad.AnnData, time_unit, time_key) -> tuple[object, float, str]:
    """``(time_unit, days per unit, where it came from)``; a ``ValueError`` naming ``time_unit`` when unknown."""
    if time_key is not None:
        if not isinstance(time_key, str):
            raise ValueError(f"time_key: expected the name of a .obs column, got {time_key!r}")
        if time_key not in adata.obs:
            raise ValueError(f"time_key={time_key!r}: not in .obs (columns: {list(adata.obs.columns)})")
    inferred, where = infer_time_unit(adata, time_key) if time_key is not None else (None, "")
    if time_unit is None:
        if inferred is None:
            source = (
                f"nothing in time_key={time_key!r} says its unit ({where})"
                if time_key is not None
                else "the unit of the time key is not known (pass time_key= to read it from the column's name or "
                "labels, as 'time_h', 'day' or '12h', 'day3')"
            )
            raise ValueError(
                f"time_unit: required: the rates are calibrated per day and written per unit of the time key, and "
                f"{source}; pass time_unit={UNIT_CHOICES}"
            )
        return inferred, TIME_UNITS[inferred], f"inferred from {where}"
    days = _days_per_unit(time_unit)
    if inferred is not None and not np.isclose(days, TIME_UNITS[inferred], rtol=1e-9, atol=0):
        warn(
            f"time_unit={time_unit!r} ({days:.6g} days per unit), but {where} reads as {inferred}s; the rates are "
            f"written per unit of {days:.6g} days, as time_unit says",
            UserWarning,
        )
    return (time_unit if isinstance(time_unit, str) else float(time_unit)), days, "given"


# --- genes -----------------------------------------------------------------------------------------------------------


def _symbols(adata: ad.AnnData, gene_symbols) -> tuple[list[str], str]:
    """The gene symbols (``""`` where there is none) and where they were read."""
    if gene_symbols is None:
        return [str(s) for s in adata.var_names], "adata.var_names"
    if not isinstance(gene_symbols, str) or gene_symbols not in adata.var.columns:
        raise ValueError(
            f"gene_symbols={gene_symbols!r}: expected the .var column of gene symbols (columns: "
            f"{list(adata.var.columns)})"
        )
    return ["" if pd.isna(s) else str(s) for s in adata.var[gene_symbols]], f"adata.var[{gene_symbols!r}]"


def _symbol_case(symbols: list[str]) -> tuple[str | None, str]:
    """``"human"`` (upper case), ``"mouse"`` (mixed case) or ``None`` from how the symbols are written, and why."""
    named = [s for s in symbols if re.search("[A-Za-z]", s) and not ENSEMBL_ID.match(s)]
    if len(named) < SYMBOL_CASE_MIN:
        return None, f"{len(named)} symbols are too few to tell"
    upper = float(np.mean([not re.search("[a-z]", s) for s in named]))
    mixed = float(np.mean([bool(re.search("[a-z]", s) and re.search("[A-Z]", s)) for s in named]))
    if upper >= SYMBOL_CASE_SHARE:
        return "human", f"{upper:.0%} of {len(named)} symbols in upper case, as human ones ('MKI67')"
    if mixed >= SYMBOL_CASE_SHARE:
        return "mouse", f"{mixed:.0%} of {len(named)} symbols in mixed case, as mouse ones ('Mki67')"
    return None, f"{upper:.0%} of {len(named)} symbols in upper case, {mixed:.0%} in mixed case"


def _organism(organism, own: dict, symbols: list[str], where: str) -> tuple[str | None, str]:
    """The organism of the bundled sets (``None`` when both sets are the user's) and how it was chosen."""
    if all(v is not None for v in own.values()):
        if organism is not None:
            raise ValueError(f"organism={organism!r}: picks bundled gene sets, and both gene sets are given")
        return None, "both gene sets given"
    if organism is not None and organism not in ORGANISMS:
        raise ValueError(f"organism: expected 'human' or 'mouse', got {organism!r}")
    case, why = _symbol_case(symbols)
    if organism is None:
        if case is None:
            return "human", f"human by default: the symbols' case does not tell ({why})"
        return case, f"inferred from the symbols: {why}"
    if case is not None and case != organism:
        example = gene_sets(organism)["proliferation"][0]
        raise ValueError(
            f"organism={organism!r}: the symbols in {where} look {case} ({why}), while the bundled {organism} sets "
            f"are written as {example!r}; pass organism={case!r} (or leave it out: it is inferred from the symbols), "
            f"or your own gene sets (proliferation_genes=, apoptosis_genes=; e.g. "
            f"sc_syncot.pp.gene_sets({organism!r})['proliferation']), which are matched without this check"
        )
    return organism, "given"


def _gene_list(genes, name: str) -> list[str]:
    """A gene set given by the user as a list of symbols, without repeats (ignoring case)."""
    if isinstance(genes, str):
        raise ValueError(f"{name}_genes: expected a list of gene symbols, got the string {genes!r}")
    try:
        given = [str(g) for g in genes]
    except TypeError:
        raise ValueError(f"{name}_genes: expected a list of gene symbols, got {genes!r}") from None
    unique: dict[str, str] = {}
    for g in given:
        unique.setdefault(g.upper(), g)
    return list(unique.values())


def _match(genes: list[str], symbols: list[str]) -> tuple[list[str], list[int]]:
    """The genes of a set found among ``symbols`` (as the data spells them) and their positions.

    A gene matches the symbols spelled exactly as it is or, when there is none, the symbols equal to it ignoring
    case ("MKI67" matches "Mki67" or "mki67"; with both "CDK7" and "Cdk7" present, "CDK7" matches the first only).
    """
    exact: dict[str, list[int]] = {}
    folded: dict[str, list[int]] = {}
    for i, s in enumerate(symbols):
        if s:
            exact.setdefault(s, []).append(i)
            folded.setdefault(s.upper(), []).append(i)
    found, positions = [], set()
    for g in genes:
        hit = exact.get(g) or folded.get(g.upper())
        if hit:
            found.append(symbols[hit[0]])
            positions.update(hit)
    return found, sorted(positions)


def _listed(genes: list[str], most: int = 20) -> str:
    if not genes:
        return "none"
    return ", ".join(genes[:most]) + (f", ... ({len(genes) - most} more)" if len(genes) > most else "")


def _refusal(sets, found, min_genes, where, gene_symbols, symbols, columns, organism, how) -> str:
    """The message of a refusal for too few genes: what was found, and what to try."""
    short = [k for k in SET_NAMES if len(found[k]) < min_genes]
    parts = [
        f"{k}_genes: only {len(found[k])} of {len(sets[k])} genes found (need min_genes={min_genes}): "
        f"{_listed(found[k])}"
        for k in short
    ]
    enough = [f"{k}_genes: {len(found[k])} of {len(sets[k])} found" for k in SET_NAMES if k not in short]
    text = "; ".join(parts) + (f" ({'; '.join(enough)})" if enough else "")
    text += f". Symbols are matched ignoring case in {where} ({len(symbols)} genes). "
    if gene_symbols is None:
        ids = [s for s in symbols if ENSEMBL_ID.match(s)]
        looks = f" (they look like Ensembl IDs, e.g. {ids[0]!r})" if len(ids) > len(symbols) / 2 else ""
        text += (
            f"If adata.var_names are not gene symbols{looks}, name the .var column that holds the symbols with "
            f"gene_symbols= ({f'.var columns: {columns}' if columns else 'adata.var has no columns'}); "
        )
    else:
        text += f"Check that adata.var[{gene_symbols!r}] holds gene symbols; "
    if organism is not None:
        other = "mouse" if organism == "human" else "human"
        text += f"the bundled {organism} sets were used (organism {how}; organism={other!r} picks the {other} ones); "
    return text + "or pass your own gene sets (proliferation_genes=, apoptosis_genes=) or a smaller min_genes"


# --- the prior -------------------------------------------------------------------------------------------------------


def growth_prior(
    adata: ad.AnnData,
    organism: str | None = None,
    proliferation_genes: list[str] | None = None,
    apoptosis_genes: list[str] | None = None,
    birth: tuple[float, float] = (0.3, 1.7),
    death: tuple[float, float] = (0.3, 1.7),
    min_genes: int = 5,
    key_added: str = "growth_prior",
    copy: bool = False,
    *,
    time_unit: str | float | None = None,
    time_key: str | None = None,
    gene_symbols: str | None = None,
) -> ad.AnnData | None:
    """Score proliferation and apoptosis per cell and turn the scores into a growth rate per unit of the time key.

    Expects log-normalized expression in ``adata.X`` (as ``scanpy.tl.score_genes``). The rates are calibrated per
    day, as Waddington-OT's; :func:`sc_syncot.tl.syncot` reads them per unit of its time key (its velocities and
    growth rates are per unit of the time key, Mathematics page, section 4), so they are written per unit of the
    time key: ``rate per day x days per unit`` (``time_unit="hour"``: 1/24 of the daily rate).

    Parameters
    ----------
    adata
        Cells x genes, log-normalized.
    organism
        ``"human"`` or ``"mouse"``: which bundled gene sets (:func:`gene_sets`) to use for a set not given. Left
        out, it is inferred from how the symbols are written: ``"human"`` when at least 80% of them (of at least
        20) are in upper case (``"MKI67"``), ``"mouse"`` when at least 80% are in mixed case (``"Mki67"``),
        otherwise ``"human"``. An organism given whose symbols are clearly written the other way is refused.
        Symbols are matched ignoring case (an exact spelling first), so the two sets differ only in the genes
        whose mouse symbols are not the human ones in title case (``Trp53``, ``Trp53i3``, ``Fasl``; no ``Casp10``).
    proliferation_genes, apoptosis_genes
        Own gene sets instead of the bundled ones (matched ignoring case, never checked against ``organism``).
    birth, death
        ``(min, max)`` rates per day reached at very low and very high scores (Waddington-OT's calibration).
    min_genes
        Fewest genes of each set that must be found; fewer is refused, listing the genes that were found.
    key_added
        ``.obs[key_added]``: the growth rate per unit of the time key; ``.obs[f"{key_added}_proliferation"]``,
        ``.obs[f"{key_added}_apoptosis"]``: the scores; ``.uns[key_added]``: the parameters, with the unit
        (``"time_unit"``, ``"days_per_unit"``, ``"time_unit_source"``, and ``"time_key"`` when given), the ranges
        (``"birth_per_day"``, ``"death_per_day"``), the organism and how it was chosen, and per set the genes found
        (``"found"``, ``"n_found"``, ``"n_genes"``), which :func:`sc_syncot.tl.syncot` reads to check the unit.
    copy
        Return a modified copy instead of writing in place.
    time_unit
        The unit of the time key that the rates are written in: ``"day"``, ``"hour"``, ``"minute"``, ``"week"``, or
        a number, the days in one unit (``1 / 24`` for hours; ``1`` when the course's time has no physical unit
        and the daily ranges are meant per unit of it). Required unless ``time_key`` names it.
    time_key
        ``.obs`` column of times, read only to infer ``time_unit`` when it is not given: from the column's name
        (``"time_h"``, ``"day"``, ``"hours_post_treatment"``) or, for text or categorical times read from the
        numbers in their labels, from the labels (``"12h"``, ``"day3"``, ``"48 hours"``: all naming one unit);
        never from the steps of an ordered categorical without numbers, nor from numbers alone. A unit it names
        that differs from a ``time_unit`` given is warned about.
    gene_symbols
        ``.var`` column holding gene symbols, when ``adata.var_names`` are not symbols (Ensembl IDs, say).

    Returns
    -------
    AnnData or None
        The modified copy with ``copy=True``, else ``None``.

    Examples
    --------
    sci-CAR's RNA holds 1,185 selected genes, among them 3 of the 93 proliferation genes (RRM2, HJURP, ECT2): the
    default ``min_genes=5`` refuses it, listing them; with three genes the score is coarse, but it runs. Its time
    key is in hours, read from the column's name:

    >>> import sc_syncot as so
    >>> adata = so.datasets.sciCAR_A549()  # doctest: +SKIP
    >>> so.pp.growth_prior(adata, time_key="time_h", min_genes=3)  # doctest: +SKIP
    >>> adata.uns["growth_prior"]["time_unit"], adata.uns["growth_prior"]["proliferation"]["n_found"]  # doctest: +SKIP
    ('hour', 3)
    """
    check_key_added(key_added)
    if not is_integer(min_genes) or min_genes < 1:
        raise ValueError(f"min_genes: expected an integer >= 1, got {min_genes!r}")
    unit, days_per_unit, unit_source = _time_unit(adata, time_unit, time_key)
    writes = [("obs", key_added), ("obs", f"{key_added}_proliferation"), ("obs", f"{key_added}_apoptosis")]
    reads = {} if time_key is None else {("obs", time_key): f"the times time_key={time_key!r}"}
    check_writes(adata, [*writes, ("uns", key_added)], reads, key_added)
    symbols, where = _symbols(adata, gene_symbols)
    own = {"proliferation": proliferation_genes, "apoptosis": apoptosis_genes}
    own = {k: None if v is None else _gene_list(v, k) for k, v in own.items()}
    organism, how = _organism(organism, own, symbols, where)
    bundled = gene_sets(organism) if organism is not None else {}
    sets = {k: bundled[k] if own[k] is None else own[k] for k in SET_NAMES}
    matched = {k: _match(sets[k], symbols) for k in SET_NAMES}
    found = {k: matched[k][0] for k in SET_NAMES}
    if any(len(found[k]) < min_genes for k in SET_NAMES):
        columns = list(adata.var.columns)
        raise ValueError(_refusal(sets, found, min_genes, where, gene_symbols, symbols, columns, organism, how))
    # score on positions: var_names need not be unique, and symbols may repeat (several IDs for one gene)
    work = ad.AnnData(adata.X, obs=adata.obs[[]].copy(), var=pd.DataFrame(index=[str(i) for i in range(adata.n_vars)]))
    scores = {}
    for name in SET_NAMES:
        sc.tl.score_genes(work, [str(i) for i in matched[name][1]], score_name=name, random_state=0)
        scores[name] = work.obs[name].to_numpy()
    per_day = birth[0] + (birth[1] - birth[0]) * _logistic(_standardized(scores["proliferation"]))
    per_day -= death[0] + (death[1] - death[0]) * _logistic(_standardized(scores["apoptosis"]))
    coverage = "; ".join(f"{k} {len(found[k])} of {len(sets[k])} genes" for k in SET_NAMES)
    origin = "own gene sets" if organism is None else f"bundled {organism} sets, organism {how}"
    unit_text = unit if isinstance(unit, str) else f"{days_per_unit:.6g} days"
    logger.info(
        "sc_syncot: growth_prior found %s in %s (%s); rates per %s of the time key (time_unit %s)",
        coverage, where, origin, unit_text, unit_source,
    )  # fmt: skip
    out = adata.copy() if copy else adata
    out.obs[f"{key_added}_proliferation"] = scores["proliferation"]
    out.obs[f"{key_added}_apoptosis"] = scores["apoptosis"]
    out.obs[key_added] = per_day * days_per_unit
    params = {
        "time_unit": unit,
        "days_per_unit": days_per_unit,
        "time_unit_source": unit_source,
        "birth_per_day": np.asarray(birth, dtype=float),
        "death_per_day": np.asarray(death, dtype=float),
        "organism": "none" if organism is None else organism,
        "organism_source": how,
        "gene_symbols": "var_names" if gene_symbols is None else gene_symbols,
        "min_genes": int(min_genes),
    }
    if time_key is not None:
        params["time_key"] = time_key
    for k in SET_NAMES:
        params[k] = {
            "source": "given" if own[k] is not None else f"bundled {organism}",
            "found": np.asarray(found[k], dtype=object),
            "n_found": len(found[k]),
            "n_genes": len(sets[k]),
        }
    out.uns[key_added] = params
    return out if copy else None
