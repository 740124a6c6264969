"""Embeddings of count matrices used by the datasets: RNA PCA and ATAC LSI.

Kept private and small so that the public embedding helpers of ``sc_syncot.pp`` can take them over.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

from ..pp.embedding import tfidf

RNA_TARGET_SUM = 1e4


def _rna_pca(counts: sparse.spmatrix, n_comps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of RNA counts after ``normalize_total`` (to ``RNA_TARGET_SUM``) and ``log1p``, through scanpy.

    Parameters
    ----------
    counts
        Cells x genes counts; not modified.
    n_comps
        Number of principal components.
    seed
        Random state of the (iterative) PCA solver.

    Returns
    -------
    embedding
        Cells x ``n_comps`` coordinates.
    loadings
        Genes x ``n_comps`` principal axes, so that a change ``dx`` of log-normalized expression moves the
        embedding by ``dx @ loadings``.
    """
    import anndata as ad
    import scanpy as sc  # imported here: scanpy is slow to import and only this helper needs it

    tmp = ad.AnnData(sparse.csr_matrix(counts, dtype=np.float32, copy=True))
    # A fixed target (not scanpy's default median) so that the noise-free expression map is known exactly.
    sc.pp.normalize_total(tmp, target_sum=RNA_TARGET_SUM)
    sc.pp.log1p(tmp)
    sc.pp.pca(tmp, n_comps=n_comps, random_state=seed)
    return np.asarray(tmp.obsm["X_pca"]), np.asarray(tmp.varm["PCs"])


def _lsi(counts: sparse.spmatrix, n_comps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent semantic indexing of ATAC counts: TF-IDF, truncated SVD, first component dropped.

    The first singular direction of a TF-IDF matrix follows sequencing depth rather than biology, so
    ``n_comps + 1`` components are computed and the first is discarded, as is customary for scATAC-seq.

    Parameters
    ----------
    counts
        Cells x peaks counts; not modified.
    n_comps
        Number of components kept.
    seed
        Seed of the start vector of the (ARPACK) truncated SVD.

    Returns
    -------
    embedding
        Cells x ``n_comps`` coordinates ``tfidf @ components`` (= ``U S`` of the SVD; float32).
    components
        Peaks x ``n_comps`` right singular vectors, so that ``embedding = tfidf @ components``.
    idf
        The inverse document frequency per peak used in the TF-IDF.
    """
    tfidf_matrix, idf = tfidf(counts, return_idf=True)
    components = _top_right_singular_vectors(tfidf_matrix, n_comps + 1, seed)[:, 1:]
    return np.asarray(tfidf_matrix @ components, dtype=np.float32), components, idf


def _top_right_singular_vectors(x: sparse.spmatrix, k: int, seed: int) -> np.ndarray:
    """The ``k`` leading right singular vectors (columns, by decreasing singular value) with a fixed sign.

    ARPACK from a seeded start vector; each vector's largest entry is made positive so that the result does not
    depend on the sign the solver happens to return.
    """
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, min(x.shape))
    _, values, vt = svds(x, k=k, v0=start)
    vt = vt[np.argsort(values)[::-1]]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    return (vt * signs[:, None]).T
