"""Paired AnnData -> MuData, for users who ask for ``as_mudata=True`` (``mudata`` stays an optional dependency).

Convention shared by the datasets: a paired second modality is a matrix in ``adata.obsm[key]`` whose feature
names are in ``adata.uns[f"{key}_var_names"]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import anndata as ad
import pandas as pd

if TYPE_CHECKING:
    from mudata import MuData


def require_mudata() -> ModuleType:
    """Import ``mudata`` or say how to install it."""
    try:
        import mudata
    except ImportError as err:
        raise ImportError("as_mudata=True needs the optional package `mudata`: pip install mudata") from err
    return mudata


def build_mudata(mods: Mapping[str, ad.AnnData], obs: pd.DataFrame) -> MuData:
    """A MuData of ``mods`` whose global ``obs`` is ``obs`` (the modalities share its cells, in its order).

    The modalities' own ``obs`` columns are dropped (``mods`` are modified): kept, mudata would copy them into the
    global ``obs`` again under ``"mod:column"`` names whenever it updates, e.g. on writing.
    """
    mudata = require_mudata()
    for mod in mods.values():
        mod.obs = pd.DataFrame(index=mod.obs_names)
    with warnings.catch_warnings():
        # mudata 0.3 announces a change of its default column pulling; the global obs is set explicitly below.
        warnings.simplefilter("ignore", FutureWarning)
        mdata = mudata.MuData(dict(mods))
    mdata.obs = obs.copy()
    return mdata


def paired_to_mudata(
    adata: ad.AnnData,
    secondary_key: str,
    *,
    names: tuple[str, str],
    primary_obsm: Sequence[str] = (),
    secondary_obsm: Sequence[str] = (),
) -> MuData:
    """Split ``adata`` into a MuData with modalities ``names = (primary, secondary)``.

    ``adata.X`` and ``adata.var`` make the primary modality, ``adata.obsm[secondary_key]`` the secondary one.
    The ``primary_obsm`` / ``secondary_obsm`` embeddings move into their modality; ``obs``, ``uns`` and every
    other ``obsm`` entry stay global.
    """
    var_key = f"{secondary_key}_var_names"
    obs = pd.DataFrame(index=adata.obs_names)
    primary = ad.AnnData(adata.X, obs=obs, var=adata.var.copy())
    secondary = ad.AnnData(adata.obsm[secondary_key], obs=obs, var=pd.DataFrame(index=pd.Index(adata.uns[var_key])))
    for mod, keys in ((primary, primary_obsm), (secondary, secondary_obsm)):
        for key in keys:
            mod.obsm[key] = adata.obsm[key]
    mdata = build_mudata({names[0]: primary, names[1]: secondary}, adata.obs)
    moved = {secondary_key, *primary_obsm, *secondary_obsm}
    for key, value in adata.obsm.items():
        if key not in moved:
            mdata.obsm[key] = value
    mdata.uns.update({key: value for key, value in adata.uns.items() if key != var_key})
    return mdata
