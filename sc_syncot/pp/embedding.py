"""Embedding helpers for users who start from counts: RNA PCA (through scanpy) and ATAC LSI (TF-IDF + SVD)."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from .inputs import check_key_added, check_writes


def _fewer_components(wanted: int, most: int, name: str) -> int:
    """``wanted`` components, or (with a warning naming ``n_comps``) the most a matrix of that shape has."""
    if wanted > most:
        warnings.warn(
            f"{name}: n_comps asks for {wanted} components, the matrix has at most {most}; computing {most}",
            UserWarning,
            stacklevel=3,
        )
    return min(wanted, most)


def _matrix(adata: ad.AnnData, layer: str | None, obsm: str | None = None):
    if obsm is not None and layer is not None:
        raise ValueError(f"layer={layer!r}, obsm={obsm!r}: the counts come from one of them; give only one")
    if obsm is not None:
        if obsm not in adata.obsm:
            raise ValueError(f"obsm: key {obsm!r} not in adata.obsm (keys: {list(adata.obsm)})")
        return adata.obsm[obsm]
    if layer is not None:
        if layer not in adata.layers:
            raise ValueError(f"layer: key {layer!r} not in adata.layers (keys: {list(adata.layers)})")
        return adata.layers[layer]
    return adata.X


def _check_counts(x, name: str, n_comps) -> None:
    """Finite, nonnegative, not all zero, and enough cells and features for ``n_comps`` components."""
    if isinstance(n_comps, bool) or not isinstance(n_comps, (int, np.integer)) or n_comps < 1:
        raise ValueError(f"n_comps: expected a positive integer, got {n_comps!r}")
    if x.ndim != 2 or min(x.shape) < 2:
        raise ValueError(f"{name}: expected at least 2 cells and 2 features, got shape {x.shape}")
    values = x.data if sp.issparse(x) else np.asarray(x)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: expected finite counts, found NaN or inf")
    if np.any(values < 0):
        raise ValueError(f"{name}: expected nonnegative counts")
    if not np.any(values):
        raise ValueError(f"{name}: expected counts, found only zeros")


def _is_integer_valued(x) -> bool:
    values = x.data if sp.issparse(x) else np.asarray(x)
    return bool(np.all(values == np.round(values)))


def embed_rna(
    adata: ad.AnnData,
    n_comps: int = 30,
    n_top_genes: int = 2000,
    layer: str | None = None,
    normalized: bool | None = None,
    key_added: str = "X_pca",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """PCA of RNA counts: ``normalize_total``, ``log1p``, highly variable genes, ``pca`` (scanpy).

    Works on a copy of the counts (``adata.X`` or ``layer``), so ``adata.X`` is left as it is; writes
    ``adata.obsm[key_added]``. Data that are already normalized and log-transformed skip the first two steps.

    Parameters
    ----------
    adata
        Cells x genes counts (or log-normalized values, see ``normalized``).
    n_comps
        Principal components kept (at most one fewer than cells or genes; fewer are computed with a warning).
    n_top_genes
        Highly variable genes used (all genes when there are fewer).
    layer
        Take the counts from this layer instead of ``X``.
    normalized
        Whether the matrix is already normalized and log-transformed. ``None`` decides from the values: integers
        are counts; anything else is taken as normalized (with a warning saying so), since normalizing and
        log-transforming twice distorts the embedding.
    key_added
        ``.obsm`` key written.
    random_state
        Seed of the SVD solver.
    copy
        Return a modified copy instead of writing in place.
    """
    check_key_added(key_added)
    x = _matrix(adata, layer)
    _check_counts(x, layer or "X", n_comps)
    if normalized is None:
        normalized = not _is_integer_valued(x)
        if normalized:
            warnings.warn(
                f"embed_rna: {layer or 'X'} holds non-integer values, taken as already normalized and "
                "log-transformed (no normalize_total / log1p); pass normalized=False to normalize them anyway",
                UserWarning,
                stacklevel=2,
            )
    work = ad.AnnData(x.copy())
    if not normalized:
        sc.pp.normalize_total(work)
        sc.pp.log1p(work)
    n_comps = _fewer_components(n_comps, min(work.shape) - 1, "embed_rna")
    if work.n_vars > n_top_genes:
        sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes, subset=True)
    sc.pp.pca(work, n_comps=n_comps, random_state=random_state)
    out = adata.copy() if copy else adata
    out.obsm[key_added] = work.obsm["X_pca"]
    return out if copy else None


LSI_SCALE = 1e4


def tfidf(x, return_idf: bool = False) -> sp.csr_matrix | tuple[sp.csr_matrix, np.ndarray]:
    """``log1p(LSI_SCALE * tf * idf)`` with ``tf = x / depth`` per cell and ``idf = log(1 + n / (1 + df))``.

    ``df`` is the number of cells in which a peak is seen; empty cells stay zero rows. With ``return_idf`` the
    ``idf`` per peak is returned too.
    """
    x = sp.csr_matrix(x, dtype=float)
    depth = np.asarray(x.sum(1)).ravel()
    tf = sp.diags(1.0 / np.where(depth > 0, depth, 1.0)) @ x
    df = np.asarray((x > 0).sum(0)).ravel()
    idf = np.log1p(x.shape[0] / (1.0 + df))
    out = sp.csr_matrix(tf @ sp.diags(idf * LSI_SCALE))
    out.data = np.log1p(out.data)
    return (out, idf) if return_idf else out


def lsi(counts, n_comps: int, drop_first: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Latent semantic indexing: the truncated SVD of the TF-IDF matrix of peak counts.

    With :math:`M` the cells x peaks matrix of :func:`tfidf` and :math:`M = U S V^\top` its singular value
    decomposition (singular values decreasing), the embedding is

    .. math::

        Z = M V_{:, J} = U_{:, J} S_{J J}, \qquad J = \{2, \dots, n + 1\},

    with :math:`n` = ``n_comps`` (:math:`J = \{1, \dots, n\}` without ``drop_first``): the first component
    follows sequencing depth in most data sets and is dropped by default, as in Signac and ArchR. The SVD is
    ARPACK's (:func:`scipy.sparse.linalg.svds`, exact up to its tolerance) from a start vector drawn with
    ``seed``, and the sign of each singular vector is fixed by making its largest entry in :math:`V` positive, so
    the result does not depend on the sign the solver returns.

    Parameters
    ----------
    counts
        Cells x peaks counts (dense or sparse; finite, nonnegative, not all zero); not modified.
    n_comps
        Components kept (after dropping the first): ``n_comps + drop_first`` must be smaller than both
        dimensions of ``counts``.
    drop_first
        Drop the first singular component.
    seed
        Seed of the ARPACK start vector.

    Returns
    -------
    embedding
        Cells x ``n_comps`` coordinates :math:`Z = M V_{:, J}`.
    components
        Peaks x ``n_comps`` right singular vectors :math:`V_{:, J}`, so that ``embedding = tfidf(counts) @
        components`` for these cells and :math:`\log(1 + 10^4\, \mathrm{tf} \cdot \mathrm{idf})\, V_{:, J}`
        (with this ``idf``) for new ones.
    idf
        The inverse document frequency per peak used in the TF-IDF.

    References
    ----------
    Cusanovich, D. A. et al. (2015). Multiplex single-cell profiling of chromatin accessibility by
    combinatorial cellular indexing. *Science* 348, 910-914. Stuart, T. et al. (2021). Single-cell chromatin
    state analysis with Signac. *Nature Methods* 18, 1333-1341. Granja, J. M. et al. (2021). ArchR is a
    scalable software package for integrative single-cell chromatin accessibility analysis. *Nature Genetics*
    53, 403-411.
    """
    counts = counts if sp.issparse(counts) else np.asarray(counts)
    _check_counts(counts, "counts", n_comps)
    k = n_comps + int(drop_first)
    if k >= min(counts.shape):
        raise ValueError(
            f"n_comps: expected n_comps + drop_first < {min(counts.shape)} (counts: {counts.shape}), got {k}"
        )
    m, idf = tfidf(counts, return_idf=True)
    components = _top_right_singular_vectors(m, k, seed)[:, int(drop_first) :]
    return np.asarray(m @ components), components, idf


def _top_right_singular_vectors(x: sp.spmatrix, k: int, seed: int) -> np.ndarray:
    """The ``k`` leading right singular vectors (columns, by decreasing singular value) with a fixed sign.

    ARPACK from a seeded start vector; each vector's largest entry is made positive so that the result does not
    depend on the sign the solver happens to return.
    """
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, min(x.shape))
    _, values, vt = svds(x, k=k, v0=start)
    vt = vt[np.argsort(values)[::-1]]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    return (vt * signs[:, None]).T


def embed_atac(
    adata: ad.AnnData,
    n_comps: int = 30,
    layer: str | None = None,
    obsm: str | None = None,
    drop_first: bool = True,
    key_added: str = "X_lsi",
    random_state: int = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Latent semantic indexing of ATAC peak counts (:func:`lsi`): TF-IDF, truncated SVD, ``U S``.

    The first component follows sequencing depth in most data sets and is dropped by default (as in Signac and
    ArchR). Writes ``adata.obsm[key_added]`` with ``n_comps`` columns.

    Parameters
    ----------
    adata
        Cells x peaks counts in ``X``, ``layer`` or ``obsm[obsm]`` (e.g. the ATAC of a paired RNA object).
        Non-integer values (already normalized data) are weighted by TF-IDF as they are, with a warning.
    n_comps
        Components kept (after dropping the first; at most the matrix's rank allows, with a warning).
    layer, obsm
        Where the peak counts are, when not in ``X`` (one of them).
    drop_first
        Drop the first SVD component.
    key_added
        ``.obsm`` key written.
    random_state
        Seed of the ARPACK start vector of the SVD (the result is exact, so it hardly depends on it).
    copy
        Return a modified copy instead of writing in place.
    """
    check_key_added(key_added)
    if obsm is not None:
        check_writes(adata, [("obsm", key_added)], {("obsm", obsm): f"the counts obsm={obsm!r}"}, key_added)
    x = _matrix(adata, layer, obsm)
    _check_counts(x, obsm or layer or "X", n_comps)
    if not _is_integer_valued(x):
        warnings.warn(
            f"embed_atac: {obsm or layer or 'X'} holds non-integer values, not peak counts; TF-IDF weights them "
            "as they are",
            UserWarning,
            stacklevel=2,
        )
    k = _fewer_components(n_comps + int(drop_first), min(x.shape) - 1, "embed_atac")
    if k <= int(drop_first):
        raise ValueError(
            f"{obsm or layer or 'X'}: a matrix of shape {x.shape} has a single component, the one drop_first "
            "drops; pass drop_first=False"
        )
    z = lsi(x, k - int(drop_first), drop_first=drop_first, seed=random_state)[0]
    out = adata.copy() if copy else adata
    out.obsm[key_added] = z
    return out if copy else None
