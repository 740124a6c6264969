"""A growth prior from proliferation and apoptosis gene scores, as Waddington-OT and moscot use.

Per cell, ``birth = b_min + (b_max - b_min) s(p)``, ``death = d_min + (d_max - d_min) s(a)`` with ``s`` the
logistic function of the standardized proliferation and apoptosis scores ``p``, ``a`` (scanpy's
``score_genes``), and the growth rate ``g = birth - death`` per unit of the time key. Default rates follow
Waddington-OT (0.3 to 1.7 per day for both). The masses of the time points then follow from
:func:`~sc_syncot.pp.time_point_masses` with ``masses="growth_prior"``.

References
----------
G. Schiebinger et al., "Optimal-transport analysis of single-cell gene expression identifies developmental
trajectories in reprogramming", Cell 176 (2019).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc

from .inputs import check_key_added

# Marker genes of the cell cycle (S and G2/M phases, DNA replication, mitosis) and of apoptosis (intrinsic and
# extrinsic pathways, p53 targets), human symbols. Mouse symbols are the same names in title case, which holds
# for these genes' mouse orthologs.
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


def gene_sets(organism: str = "human") -> dict[str, list[str]]:
    """The bundled proliferation and apoptosis gene sets for ``"human"`` or ``"mouse"``."""
    if organism == "human":
        return {"proliferation": list(PROLIFERATION_GENES), "apoptosis": list(APOPTOSIS_GENES)}
    if organism == "mouse":
        return {
            "proliferation": [g.capitalize() for g in PROLIFERATION_GENES],
            "apoptosis": [g.capitalize() for g in APOPTOSIS_GENES],
        }
    raise ValueError(f"organism: expected 'human' or 'mouse', got {organism!r}")


def _logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _standardized(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


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
) -> ad.AnnData | None:
    """Score proliferation and apoptosis per cell and turn the scores into a growth rate.

    Expects log-normalized expression in ``adata.X`` (as ``scanpy.tl.score_genes``). Writes
    ``adata.obs[f"{key_added}_proliferation"]``, ``adata.obs[f"{key_added}_apoptosis"]`` (the scores) and
    ``adata.obs[key_added]`` (the growth rate, per unit of the time key).

    Parameters
    ----------
    adata
        Cells x genes, log-normalized.
    organism
        ``"human"`` (``None``) or ``"mouse"``: which bundled gene sets to use for a set not given.
    proliferation_genes, apoptosis_genes
        Own gene sets instead of the bundled ones.
    birth, death
        ``(min, max)`` rates reached at very low and very high scores.
    min_genes
        Fewest genes of a set that must be in ``adata.var_names``.
    key_added
        ``.obs`` key of the growth rate.
    copy
        Return a modified copy instead of writing in place.
    """
    check_key_added(key_added)
    own = {"proliferation": proliferation_genes, "apoptosis": apoptosis_genes}
    if organism is not None and all(v is not None for v in own.values()):
        raise ValueError(f"organism={organism!r}: picks bundled gene sets, and both gene sets are given")
    sets = gene_sets("human" if organism is None else organism)
    genes = {k: sets[k] if v is None else list(v) for k, v in own.items()}
    present = {k: [g for g in v if g in adata.var_names] for k, v in genes.items()}
    for name, found in present.items():
        if len(found) < min_genes:
            raise ValueError(
                f"{name}_genes: only {len(found)} of {len(genes[name])} genes are in adata.var_names (need "
                f"{min_genes}); check organism={organism!r} or pass your own gene set"
            )
    work = ad.AnnData(adata.X, obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    scores = {}
    for name, found in present.items():
        sc.tl.score_genes(work, found, score_name=name, random_state=0)
        scores[name] = work.obs[name].to_numpy()
    rate = birth[0] + (birth[1] - birth[0]) * _logistic(_standardized(scores["proliferation"]))
    rate -= death[0] + (death[1] - death[0]) * _logistic(_standardized(scores["apoptosis"]))
    out = adata.copy() if copy else adata
    out.obs[f"{key_added}_proliferation"] = scores["proliferation"]
    out.obs[f"{key_added}_apoptosis"] = scores["apoptosis"]
    out.obs[key_added] = rate
    return out if copy else None
