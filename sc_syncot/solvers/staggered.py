"""Staggered space-time variables and the operators between them (Mathematics page, section 3).

Layout (``B`` problems in a batch, ``Nt`` time steps, ``S = (N_1, ..., N_d)`` space cells):

- ``rho``: ``(B, Nt + 1, *S)`` on time faces; the first and last are the fixed endpoints;
- ``m[i]``: ``(B, Nt, ..., N_i + 1, ...)`` on the faces of axis ``i``; boundary faces are fixed at 0;
- ``zeta``: ``(B, Nt, *S)`` at centres, stored scaled by ``sqrt(alpha)`` (see :mod:`.projection`), or ``None``
  for balanced transport.

Centred variables are one tensor ``(C, B, Nt, *S)`` with channels ``rho, m_1 .. m_d[, zeta]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Staggered:
    """The primal unknowns ``U = (rho, m, zeta)`` on the staggered grid."""

    rho: torch.Tensor
    m: list[torch.Tensor]
    zeta: torch.Tensor | None

    def tensors(self) -> list[torch.Tensor]:
        """The fields as one flat list (for ``torch._foreach_*`` arithmetic)."""
        return [self.rho, *self.m] + ([] if self.zeta is None else [self.zeta])

    @classmethod
    def from_tensors(cls, tensors: list[torch.Tensor], ndim: int) -> Staggered:
        """Inverse of :meth:`tensors`."""
        zeta = tensors[ndim + 1] if len(tensors) > ndim + 1 else None
        return cls(tensors[0], list(tensors[1 : ndim + 1]), zeta)

    def clone(self) -> Staggered:
        """A deep copy."""
        return Staggered.from_tensors([t.clone() for t in self.tensors()], len(self.m))


def average(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean of neighbours along ``axis``: ``n + 1`` faces -> ``n`` centres."""
    n = x.shape[axis] - 1
    return torch.lerp(x.narrow(axis, 0, n), x.narrow(axis, 1, n), 0.5)


def average_adjoint(y: torch.Tensor, axis: int) -> torch.Tensor:
    """Adjoint of :func:`average`: ``n`` centres -> ``n + 1`` faces."""
    n = y.shape[axis]
    inner = torch.lerp(y.narrow(axis, 0, n - 1), y.narrow(axis, 1, n - 1), 0.5)
    return torch.cat([0.5 * y.narrow(axis, 0, 1), inner, 0.5 * y.narrow(axis, n - 1, 1)], axis)


def difference(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Forward difference along ``axis``: ``n + 1`` values -> ``n``."""
    n = x.shape[axis] - 1
    return x.narrow(axis, 1, n) - x.narrow(axis, 0, n)


def interpolate(u: Staggered) -> torch.Tensor:
    """Interpolation ``I``: staggered -> centred ``(C, B, Nt, *S)`` (``zeta`` passes through); ``||I|| <= 1``.

    Written without ``out=`` arguments (one ``stack``), so that ``torch.compile`` traces it into one kernel.
    """
    channels = [average(u.rho, 1)] + [average(mi, 2 + i) for i, mi in enumerate(u.m)]
    return torch.stack(channels + ([] if u.zeta is None else [u.zeta]))


def interpolate_adjoint(v: torch.Tensor, ndim: int) -> Staggered:
    """Adjoint ``I*``: centred ``(C, B, Nt, *S)`` -> staggered."""
    rho = average_adjoint(v[0], 1)
    m = [average_adjoint(v[1 + i], 2 + i) for i in range(ndim)]
    zeta = v[ndim + 1].clone() if v.shape[0] > ndim + 1 else None
    return Staggered(rho, m, zeta)


def divergence(u: Staggered, dt: float, spacing: tuple[float, ...], zeta_scale: float = 1.0) -> torch.Tensor:
    """Centred space-time divergence ``(rho_{k+1} - rho_k)/dt + sum_i (m_i+ - m_i-)/h_i - zeta / zeta_scale``."""
    out = difference(u.rho, 1).div_(dt)
    for i, (mi, h) in enumerate(zip(u.m, spacing, strict=True)):
        out.add_(difference(mi, 2 + i), alpha=1.0 / h)
    if u.zeta is not None:
        out.sub_(u.zeta, alpha=1.0 / zeta_scale)
    return out
