"""Small dense linear algebra on symmetric positive (semi)definite matrices, through ``numpy.linalg.eigh``.

Symmetric eigendecompositions keep square roots and geometric means symmetric and real to rounding, which a general
``scipy.linalg.sqrtm`` does not guarantee.
"""

from __future__ import annotations

import numpy as np


def symmetrize(x: np.ndarray) -> np.ndarray:
    """``(X + X^T) / 2`` on the last two axes."""
    return 0.5 * (x + np.swapaxes(x, -1, -2))


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semidefinite matrix (eigenvalues below zero by rounding become zero)."""
    w, v = np.linalg.eigh(symmetrize(s))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def pd_inv_sqrt(s: np.ndarray) -> np.ndarray:
    """``S^{-1/2}`` of a positive definite matrix."""
    w, v = np.linalg.eigh(symmetrize(s))
    return (v / np.sqrt(w)) @ v.T


def pd_inv(s: np.ndarray) -> np.ndarray:
    """Inverse of a positive definite matrix, symmetric to rounding."""
    return symmetrize(np.linalg.inv(s))


def logdet(s: np.ndarray) -> float:
    """``log det S`` of a positive definite matrix."""
    return float(np.linalg.slogdet(s)[1])


def psd_part(s: np.ndarray) -> np.ndarray:
    """Nearest positive semidefinite matrix in Frobenius norm (negative eigenvalues set to zero)."""
    w, v = np.linalg.eigh(symmetrize(s))
    return (v * np.clip(w, 0.0, None)) @ v.T


def congruence_map(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    r"""The symmetric positive definite ``T`` with ``T P T = Q``, for positive definite ``P`` and ``Q``.

    .. math:: T = P^{-1/2} (P^{1/2} Q P^{1/2})^{1/2} P^{-1/2},

    the matrix geometric mean of ``P^{-1}`` and ``Q``. With ``P = S0`` and ``Q = S1`` it is the optimal transport
    map from ``N(0, S0)`` to ``N(0, S1)``.
    """
    root = psd_sqrt(p)
    inv_root = pd_inv_sqrt(p)
    return symmetrize(inv_root @ psd_sqrt(root @ q @ root) @ inv_root)


def bures2(s0: np.ndarray, s1: np.ndarray) -> float:
    r"""Squared Bures distance ``tr S0 + tr S1 - 2 tr (S0^{1/2} S1 S0^{1/2})^{1/2}``."""
    root = psd_sqrt(s0)
    return float(np.trace(s0) + np.trace(s1) - 2.0 * np.trace(psd_sqrt(root @ s1 @ root)))
