"""The RNA PCA used by the datasets (the ATAC LSI is :func:`sc_syncot.pp.lsi`)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

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
