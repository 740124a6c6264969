"""Orthonormal DCT-II along one axis of a torch tensor.

torch has no DCT. We apply the orthonormal DCT-II as a dense ``(n, n)`` cosine matrix: the axes of our grids
have at most a few hundred cells, where one matrix product is as fast as an FFT-based DCT (which needs a
reordering, a complex FFT and a twiddle product) on CPU and faster on GPU, and it is exact to rounding. The
matrix is orthogonal, so the inverse (DCT-III) is its transpose.
"""

from __future__ import annotations

import math

import torch


def dct_matrix(n: int, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``C[k, j] = s_k cos(pi k (j + 1/2) / n)``, ``s_0 = sqrt(1/n)``, else ``sqrt(2/n)``."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * k * (j + 0.5) / n) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


def neumann_eigenvalues(n: int, h: float, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Eigenvalues ``(4 / h^2) sin^2(pi k / (2 n))`` of the cell-centred Neumann ``-d^2/dx^2``, in DCT-II order."""
    k = torch.arange(n, dtype=torch.float64)
    return ((2.0 / h) * torch.sin(math.pi * k / (2 * n))).square().to(dtype=dtype, device=device)


def apply_along(x: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """``matrix`` applied to every fibre of ``x`` along ``axis`` (``y = matrix @ x`` on that axis).

    Reshapes instead of moving axes, so every case is one contiguous (batched) matrix product.
    """
    n = x.shape[axis]
    if axis in (-1, x.ndim - 1):
        return (x.reshape(-1, n) @ matrix.T).reshape(x.shape)
    return torch.matmul(matrix, x.reshape(math.prod(x.shape[:axis]), n, -1)).reshape(x.shape)
