"""Loaders for the small real single-cell time courses kept beside the project (never bundled in it).

Each loader reads ``.h5ad`` files from a folder: the ``path`` argument, else the environment variable
``SC_SYNCOT_DATA``, else ``../shared/data`` relative to the current working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np

from ._mudata import build_mudata, require_mudata

if TYPE_CHECKING:
    from mudata import MuData

ENV_VAR = "SC_SYNCOT_DATA"
DEFAULT_RELATIVE_DIR = Path("..") / "shared" / "data"
SCNMT_VIEWS = ("rna", "methylation", "accessibility")


class DataNotFoundError(FileNotFoundError, ValueError):
    """A data folder or file is missing; both a FileNotFoundError and a ValueError (bad ``path`` argument)."""


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder the loaders read from.

    Parameters
    ----------
    path
        A folder. When None: the environment variable ``SC_SYNCOT_DATA``, else ``../shared/data`` relative to the
        current working directory.

    Returns
    -------
    Path
        The folder, as an absolute path.

    Raises
    ------
    DataNotFoundError
        (a FileNotFoundError and a ValueError) saying where it looked and how to point the loaders elsewhere.
    """
    hint = f"pass path=... or set the environment variable {ENV_VAR} to the folder holding the .h5ad files"
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(f"path: {str(path)!r} is not a folder; {hint}")
        return folder.resolve()
    from_env = os.environ.get(ENV_VAR)
    if from_env:  # a variable set to a wrong place is an error, not a reason to look elsewhere
        folder = Path(from_env).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(f"{ENV_VAR}={from_env!r} is not a folder; {hint}")
        return folder.resolve()
    folder = Path.cwd() / DEFAULT_RELATIVE_DIR
    if not folder.is_dir():
        raise DataNotFoundError(
            f"path: no data folder given, {ENV_VAR} is not set, and {folder} does not exist; {hint}"
        )
    return folder.resolve()


def _read(filename: str, path: str | os.PathLike | None) -> ad.AnnData:
    """Read one ``.h5ad`` from the data folder, with a clear error when it is missing."""
    file = data_dir(path) / filename
    if not file.is_file():
        raise DataNotFoundError(f"path: {file} not found; the data folder should contain {filename}")
    return ad.read_h5ad(file)


def sciCAR_A549(
    path: str | os.PathLike | None = None, paired: bool = True, as_mudata: bool = False
) -> ad.AnnData | tuple[ad.AnnData, ad.AnnData] | MuData:
    """sci-CAR A549 cells under dexamethasone (Cao et al. 2018): paired RNA + ATAC at 0, 1 and 3 h.

    2,641 cells (583 / 983 / 1,075 per time point), 1,185 genes and 52,761 peaks, both log-normalized and
    sparse; nothing is computed at load time (no PCA or LSI: embed with ``sc_syncot.pp``).

    Parameters
    ----------
    path
        Folder holding ``sciCAR_A549_rna.h5ad`` and ``sciCAR_A549_atac.h5ad`` (default: see :func:`data_dir`).
    paired
        True: one AnnData of the RNA with the ATAC attached. False: the two AnnData objects.
    as_mudata
        Return a :class:`mudata.MuData` with modalities ``"rna"`` and ``"atac"`` (needs the optional ``mudata``);
        not with ``paired=False``.

    Returns
    -------
    AnnData, tuple of AnnData, or MuData
        With ``paired=True``: AnnData with ``X`` = RNA (cells x genes, CSR float32), ``obsm["atac"]`` = ATAC (cells x
        peaks, CSR float32, rows aligned with ``obs_names``), peak names in ``uns["atac_var_names"]``, descriptions in
        ``uns["description"]`` and ``uns["atac_description"]``. Time key: ``obs["time_h"]`` (float hours).
        With ``paired=False``: ``(rna, atac)``, each with ``obs["time_h"]``, ATAC rows in the RNA's cell order.
        With ``as_mudata=True``: MuData of ``rna`` and ``atac`` with ``obs["time_h"]`` in the global ``obs`` only.

    Examples
    --------
    >>> adata = sciCAR_A549()  # doctest: +SKIP
    >>> adata.obsm["atac"].shape  # doctest: +SKIP
    (2641, 52761)
    """
    if as_mudata and not paired:
        raise ValueError("paired=False, as_mudata=True: a MuData holds both modalities paired by name; give one")
    if as_mudata:
        require_mudata()  # fail before reading anything
    rna, atac = _read("sciCAR_A549_rna.h5ad", path), _read("sciCAR_A549_atac.h5ad", path)
    if set(rna.obs_names) != set(atac.obs_names):
        raise ValueError("path: the sci-CAR RNA and ATAC files do not hold the same cells (obs_names differ)")
    atac = atac[rna.obs_names].copy()  # align rows by name, whatever the stored order
    if as_mudata:
        return build_mudata({"rna": rna, "atac": atac}, rna.obs)
    if not paired:
        return rna, atac
    rna.obsm["atac"] = atac.X
    rna.uns["atac_var_names"] = np.asarray(atac.var_names, dtype=object)
    rna.uns["atac_description"] = atac.uns.get("description", "")
    return rna


def tigon_emt(path: str | os.PathLike | None = None) -> ad.AnnData:
    """A549 TGFB1-induced EMT (Cook & Vanderhyden 2020) as the 3-D embedding used by TIGON.

    Parameters
    ----------
    path
        Folder holding ``TIGON_EMT.h5ad`` (default: see :func:`data_dir`).

    Returns
    -------
    AnnData
        AnnData of 3,133 cells: ``X`` and ``obsm["X_tigon"]`` = the 3-D embedding (float64). Time key:
        ``obs["time_days"]`` (0, 1/3, 1, 3, 7 days: 577 / 885 / 788 / 754 / 129 cells); ``obs["time_index"]`` 0-4.
    """
    adata = _read("TIGON_EMT.h5ad", path)
    adata.obsm["X_tigon"] = np.asarray(adata.X, dtype=np.float64)
    return adata


def tigon_bifurcation(path: str | os.PathLike | None = None) -> ad.AnnData:
    """Single-cell qPCR of iPSC to cardiomyocyte differentiation (Bargaje et al. 2017), 4-D embedding used by TIGON.

    Parameters
    ----------
    path
        Folder holding ``TIGON_Bifurcation.h5ad`` (default: see :func:`data_dir`).

    Returns
    -------
    AnnData
        AnnData of 1,896 cells: ``X`` and ``obsm["X_tigon"]`` = the 4-D embedding (float64; project to at most 3
        dimensions for a grid). Time key: ``obs["time_index"]`` (integers 0-7, in order; day values are not given).
    """
    adata = _read("TIGON_Bifurcation.h5ad", path)
    adata.obsm["X_tigon"] = np.asarray(adata.X, dtype=np.float64)
    return adata


def scgem(path: str | os.PathLike | None = None) -> ad.AnnData:
    """The scGEM data (Cheow et al. 2016): expression and DNA methylation of the same cells in reprogramming.

    Parameters
    ----------
    path
        Folder holding ``scGEM.h5ad`` (default: see :func:`data_dir`).

    Returns
    -------
    AnnData
        AnnData of 177 cells: ``X`` = expression of 34 genes (dense float32), ``obsm["methylation"]`` = 27 loci
        (paired with ``X`` cell by cell; locus names in ``uns["methylation_loci"]``). Time key: ``obs["time"]``
        (0-4, float) with the stage names BJ, day8, day16, day24, iPSC in ``obs["stage"]``.
    """
    return _read("scGEM.h5ad", path)


def scnmt(path: str | os.PathLike | None = None) -> dict[str, ad.AnnData]:
    """scNMT-seq mouse gastrulation (Argelaguet et al. 2019): three views whose cells are not paired.

    Parameters
    ----------
    path
        Folder holding ``scNMT_rna.h5ad``, ``scNMT_methylation.h5ad`` and ``scNMT_accessibility.h5ad``
        (default: see :func:`data_dir`).

    Returns
    -------
    dict of str to AnnData
        ``{"rna": ..., "methylation": ..., "accessibility": ...}``: AnnData of 597, 725 and 647 cells, each with a
        30-D embedding in ``X`` and in ``obsm[f"X_{view}"]`` (e.g. ``obsm["X_rna"]``, float32). Time key:
        ``obs["time"]`` (embryonic day 4.5-7.5, float) with ``obs["stage"]`` E4.5-E7.5. Cells differ across views, so
        couple them with an unpaired method (Gromov-Wasserstein).
    """
    views = {}
    for view in SCNMT_VIEWS:
        adata = _read(f"scNMT_{view}.h5ad", path)
        adata.obsm[f"X_{view}"] = np.asarray(adata.X)
        views[view] = adata
    return views


def moscot_temporal(path: str | os.PathLike | None = None) -> ad.AnnData:
    """Reprogramming subset (Schiebinger et al. 2019) with Waddington-OT reference results, from moscot's tests.

    Parameters
    ----------
    path
        Folder holding ``moscot_temporal_tests.h5ad`` (default: see :func:`data_dir`).

    Returns
    -------
    AnnData
        AnnData of 250 cells x 1,479 genes (sparse float32). Time key: ``obs["day"]`` (10, 10.5, 11: 85 / 81 / 84
        cells), converted from the file's categorical to float so it can serve as a numeric time key; also
        ``obs["cell_type"]`` and ``obs["batch"]``. No embedding is stored: compute one (the reference used a
        50-component PCA, ``uns["local_pca"]``). ``uns`` keeps the reference results: transport maps
        ``tmap_10_105`` (85 x 81), ``tmap_105_11`` (81 x 84), ``tmap_10_11`` (85 x 84), whose rows and columns are
        the cells of the source and target day in ``obs`` order, computed with ``eps`` 0.5 and
        ``tau_a = lam1 / (lam1 + eps)``, ``tau_b = lam2 / (lam2 + eps)`` (``lam1`` 1, ``lam2`` 10) and agreeing with
        Waddington-OT at those settings (a large entropy: their rows spread over most target cells, so they are
        checks of that computation, not the plans a default fit of moscot or of this package gives);
        interpolation distances ``interpolated_distance_10_105_11``, ``random_distance_10_105_11``,
        ``time_point_distances_10_105_11``, ``batch_distances_10``; cell-type transition tables; and
        ``uns["description"]`` (added here, the file has none).
    """
    adata = _read("moscot_temporal_tests.h5ad", path)
    adata.obs["day"] = adata.obs["day"].astype(np.float64)
    adata.uns.setdefault(
        "description",
        "Schiebinger et al. 2019 reprogramming subset with Waddington-OT reference transport maps, from moscot's tests",
    )
    return adata
