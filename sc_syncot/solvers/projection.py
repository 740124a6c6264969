"""Projection onto the discrete balance equation (Mathematics page, section 3).

The constraint set is

    C = { U : (rho_{k+1} - rho_k)/dt + sum_i (m_i+ - m_i-)/h_i - zeta/s = 0,
          rho_0 = rho0, rho_Nt = rho1, m = 0 on boundary faces },

with ``zeta`` stored scaled, ``zeta_stored = s * zeta`` and ``s = sqrt(alpha)``, so that the action's proximal map
is isotropic when ``G = I`` (see :mod:`.prox`). Writing the constraint on the free entries as ``A u = b``, the
Euclidean projection is ``u - A^T (A A^T)^{-1} (A u - b)`` with

    A A^T = -Delta_N + I / s^2     (balanced: -Delta_N, constant mode removed),

``Delta_N`` the space-time Neumann Laplacian (time step ``dt``, cell sizes ``h_i``), diagonal in the DCT-II basis
along every axis. One projection costs two separable DCTs and one division.

References
----------
N. Papadakis, G. Peyre, E. Oudet, "Optimal transport with proximal splitting", SIAM J. Imaging Sci. 7 (2014).
"""

from __future__ import annotations

import torch

from .dct import apply_along, dct_matrix, neumann_eigenvalues
from .endpoints import time_operator
from .staggered import Staggered, difference, divergence


class BalanceProjector:
    """Euclidean projection onto the balance equation with fixed endpoints and no-flux boundary.

    Parameters
    ----------
    n_time, spacing
        Time steps on unit time and cell sizes.
    shape
        Space cells per axis.
    rho0, rho1
        Endpoint densities ``(B, *shape)``, already on the solver's device and dtype.
    zeta_scale
        ``s = sqrt(alpha)`` for unbalanced transport, ``None`` for balanced transport.
    free
        Whether the start and end faces are free (soft endpoints, :mod:`.endpoints`) instead of fixed to
        ``rho0`` / ``rho1``.
    """

    def __init__(
        self,
        n_time: int,
        spacing: tuple[float, ...],
        shape: tuple[int, ...],
        rho0: torch.Tensor,
        rho1: torch.Tensor,
        zeta_scale: float | None,
        free: tuple[bool, bool] = (False, False),
    ):
        opts = {"dtype": rho0.dtype, "device": rho0.device}
        self.dt = 1.0 / n_time
        self.spacing = tuple(spacing)
        self.zeta_scale = zeta_scale
        self.rho0, self.rho1 = rho0, rho1
        self.free = tuple(bool(f) for f in free)
        sizes = (n_time, *shape)
        time_basis, time_eig = time_operator(n_time, self.dt, self.free, **opts)
        self.time_basis, self.time_eigenvalues = time_basis, time_eig
        self.bases = [time_basis] + [dct_matrix(n, **opts) for n in shape]
        eig = time_eig.reshape(-1, *([1] * len(shape))).expand(sizes)
        for axis, (n, h) in enumerate(zip(shape, self.spacing, strict=True), start=1):
            view = [1] * len(sizes)
            view[axis] = n
            eig = eig + neumann_eigenvalues(n, h, **opts).reshape(view)
        if zeta_scale is None:
            inv = torch.where(eig > 0, 1.0 / torch.where(eig > 0, eig, 1.0), 0.0)  # constant mode -> 0
        else:
            inv = 1.0 / (eig + 1.0 / zeta_scale**2)
        self.inverse_eigenvalues = inv  # (Nt, *S), broadcast over the batch

    def solve(self, r: torch.Tensor) -> torch.Tensor:
        """Solve ``(A A^T) phi = r`` for ``r`` of shape ``(B, Nt, *S)``."""
        return solve_poisson(r, self.bases, self.inverse_eigenvalues)

    def residual(self, u: Staggered) -> torch.Tensor:
        """Balance residual of ``u`` (its fixed entries as they are)."""
        return divergence(u, self.dt, self.spacing, 1.0 if self.zeta_scale is None else self.zeta_scale)

    def parts(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """The tensors of :func:`project_balance_`: bases, inverse eigenvalues, endpoints."""
        return self.bases, self.inverse_eigenvalues, self.rho0, self.rho1

    def project_(self, u: Staggered) -> Staggered:
        """Project ``u`` onto ``C`` in place and return it."""
        return project_balance_(u, *self.parts(), self.dt, self.spacing, self.zeta_scale, self.free)

    # -- the pieces of the projection, for projections coupled to other spaces (:mod:`.dynamic_secondary`) --

    def set_ends_(self, x: list[torch.Tensor]) -> None:
        """Fix the end faces and the no-flux boundary of ``x = [rho, m_1, ..., m_d(, zeta)]`` in place."""
        _set_ends_(Staggered.from_tensors(x, len(self.spacing)), self.rho0, self.rho1, self.free)

    def residual_of(self, x: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`residual` of the unknowns as a list."""
        return self.residual(Staggered.from_tensors(x, len(self.spacing)))

    def apply_potential_(self, x: list[torch.Tensor], phi: torch.Tensor) -> None:
        """``x -= A^T phi`` in place (``phi`` at the time centres, ``(B, Nt, *S)``)."""
        _apply_potential_(Staggered.from_tensors(x, len(self.spacing)), phi, self.dt, self.spacing, self.zeta_scale,
                          self.free)  # fmt: skip

    def space_transform(self, v: torch.Tensor) -> torch.Tensor:
        """The spatial DCT-II of ``v`` ``(..., *S)`` along its last axes (the basis of :attr:`inverse_eigenvalues`)."""
        return transform(v, self.bases[1:], v.ndim - len(self.spacing))

    def spectral(self, r: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """``r`` ``(B, Nt, *S)`` in the basis that diagonalizes ``A A^T`` (or back from it, ``inverse=True``)."""
        return transform(r, self.bases, 1, inverse)


def solve_poisson(r: torch.Tensor, bases: list[torch.Tensor], inverse_eigenvalues: torch.Tensor) -> torch.Tensor:
    """``(A A^T)^{-1} r`` for ``r`` of shape ``(B, Nt, *S)``: DCT along every axis, divide, inverse DCT."""
    return transform(transform(r, bases, 1) * inverse_eigenvalues, bases, 1, inverse=True)


def transform(r: torch.Tensor, bases: list[torch.Tensor], first: int, inverse: bool = False) -> torch.Tensor:
    """``r`` with ``bases[i]`` (orthonormal, forward) applied along axis ``first + i``, or their transposes."""
    for axis, c in enumerate(bases, start=first):
        r = apply_along(r, c.T if inverse else c, axis)
    return r


def project_balance_(
    u: Staggered,
    bases: list[torch.Tensor],
    inverse_eigenvalues: torch.Tensor,
    rho0: torch.Tensor,
    rho1: torch.Tensor,
    dt: float,
    spacing: tuple[float, ...],
    zeta_scale: float | None,
    free: tuple[bool, bool] = (False, False),
) -> Staggered:
    """:meth:`BalanceProjector.project_` on explicit tensors (what a compiled graph takes as inputs)."""
    _set_ends_(u, rho0, rho1, free)
    residual = divergence(u, dt, spacing, 1.0 if zeta_scale is None else zeta_scale)
    phi = solve_poisson(residual, bases, inverse_eigenvalues)
    return _apply_potential_(u, phi, dt, spacing, zeta_scale, free)


def _set_ends_(u: Staggered, rho0: torch.Tensor, rho1: torch.Tensor, free: tuple[bool, bool]) -> None:
    """The fixed end faces and the no-flux boundary faces, in place."""
    if not free[0]:
        u.rho[:, 0].copy_(rho0)
    if not free[1]:
        u.rho[:, -1].copy_(rho1)
    for i, mi in enumerate(u.m):
        mi.select(2 + i, 0).zero_()
        mi.select(2 + i, -1).zero_()


def _apply_potential_(u: Staggered, phi: torch.Tensor, dt: float, spacing, zeta_scale, free) -> Staggered:
    """``u -= A^T phi`` in place, on the free faces only."""
    nt = phi.shape[1]
    u.rho.narrow(1, 1, nt - 1).add_(difference(phi, 1), alpha=1.0 / dt)
    if free[0]:  # -A^T phi on a free end face: the face enters one cell's balance, with -1/dt at the start
        u.rho[:, 0].add_(phi[:, 0], alpha=1.0 / dt)
    if free[1]:
        u.rho[:, -1].sub_(phi[:, -1], alpha=1.0 / dt)
    for i, (mi, h) in enumerate(zip(u.m, spacing, strict=True)):
        n = phi.shape[2 + i]
        mi.narrow(2 + i, 1, n - 1).add_(difference(phi, 2 + i), alpha=1.0 / h)
    if u.zeta is not None:
        u.zeta.add_(phi, alpha=1.0 / zeta_scale)
    return u
