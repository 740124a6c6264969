r"""Soft endpoints: a KL penalty between each end of the path and the observed density (Mathematics page, section 4).

With ``tau`` set for an end, the end density ``rho_e`` becomes an unknown and the objective gains

.. math::

    \tau\, \mathrm{KL}(\rho_e \,|\, q_e), \qquad \mathrm{KL}(p|q) = \sum_i w_i \big(p_i \log(p_i/q_i) - p_i + q_i\big),

(``w_i`` the cell volume on a grid, 1 per node on a graph), the unbalanced marginals of Chizat, Peyre, Schmitzer
& Vialard (2018) and Sejourne et al. (2019) at the ends of a dynamic problem. ``tau -> inf`` is the hard
constraint; a small ``tau`` lets the path ignore noise and sampling in the observed densities.

How it enters the iteration (both geometries): the operator of Chambolle-Pock becomes ``K U = (I U, c E U)``,
``E`` reading the free end faces and ``c = 1/sqrt(2)`` (which keeps ``||K|| <= 1`` on the grid, where an end face
enters ``I`` with weight 1/2; on a graph the step sizes take the measured norm), and ``F`` gains the KL of the
ends, whose proximal map is :func:`kl_prox`. The projection onto the balance equation then leaves the free end faces
free, which changes only its time axis: the Neumann second difference (DCT-II) becomes a tridiagonal matrix with
2 instead of 1 in the free end's corner, diagonalized once by ``eigh`` (:func:`time_operator`).

References
----------
L. Chizat, G. Peyre, B. Schmitzer, F.-X. Vialard, "Unbalanced optimal transport: dynamic and Kantorovich
formulations", J. Funct. Anal. 274 (2018). T. Sejourne, J. Feydy, F.-X. Vialard, A. Trouve, G. Peyre, "Sinkhorn
divergences for unbalanced optimal transport" (2019).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .dct import dct_matrix, neumann_eigenvalues

END_SCALE = 1.0 / math.sqrt(2.0)  # c in K U = (I U, c E U)
KL_NEWTON_STEPS = 60  # a cap: Newton from the right of the root converges monotonically, quadratically near it
KL_RTOL = 1e-13


def time_operator(
    n_time: int, dt: float, free: tuple[bool, bool], *, dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The balance projection's time axis: an orthonormal forward transform and its eigenvalues.

    Both ends fixed: the DCT-II and the Neumann eigenvalues (exact to rounding). A free end face adds its own
    square to the normal equations, so that corner of the second difference is 2 instead of 1; the tridiagonal
    matrix (``n_time`` rows at most a few hundred) is diagonalized by ``eigh`` once.
    """
    if not any(free):
        opts = {"dtype": dtype, "device": device}
        return dct_matrix(n_time, **opts), neumann_eigenvalues(n_time, dt, **opts)
    diag = np.full(n_time, 2.0)
    diag[0] = 2.0 if free[0] else 1.0
    diag[-1] = 2.0 if free[1] else 1.0
    if n_time == 1:
        diag[0] = float(free[0]) + float(free[1])
    lap = (np.diag(diag) - np.diag(np.ones(n_time - 1), 1) - np.diag(np.ones(n_time - 1), -1)) / dt**2
    evals, evecs = np.linalg.eigh(lap)
    basis = torch.as_tensor(evecs.T.copy(), dtype=dtype, device=device)  # rows: eigenvectors (forward transform)
    return basis, torch.as_tensor(np.clip(evals, 0.0, None), dtype=dtype, device=device)


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Entrywise ``p log(p/q) - p + q`` (0 log 0 = 0; ``+inf`` where ``p > 0 = q``)."""
    safe_p = torch.where(p > 0, p, 1.0)
    term = torch.where(p > 0, p * (torch.log(safe_p) - torch.log(torch.where(q > 0, q, 1.0))), 0.0)
    term = torch.where((p > 0) & (q <= 0), math.inf, term)
    return term - p + q


def kl_prox(a: torch.Tensor, q: torch.Tensor, s: torch.Tensor | float) -> torch.Tensor:
    """``argmin_p s KL(p|q) + |p - a|^2 / 2`` entrywise: ``p = s W(q e^{a/s} / s)`` (Lambert W).

    Solved in ``u = log p`` by Newton on the increasing convex ``e^u + s u - a - s log q``, started at a point
    right of the root (``log q + min(a, 0)/s`` when ``a <= q``, else ``log a``), from where Newton decreases
    monotonically to it: no overflow of ``e^{a/s}``, and no Lambert W in torch. ``q = 0`` gives ``p = 0``.
    """
    s = torch.as_tensor(s, dtype=a.dtype, device=a.device)
    positive = q > 0
    log_q = torch.log(torch.where(positive, q, 1.0))
    target = a + s * log_q
    u = torch.where(a > q, torch.log(torch.where(a > q, a, 1.0)), log_q + torch.clamp(a, max=0.0) / s)
    for _ in range(KL_NEWTON_STEPS):
        e = torch.exp(u)
        step = (e + s * u - target) / (e + s)
        u = u - step
        if float(torch.max(torch.abs(step))) <= KL_RTOL * (1.0 + float(torch.max(torch.abs(u)))):
            break
    return torch.where(positive, torch.exp(u), 0.0)


def operator_norm(ops, x_like: list[torch.Tensor], n_iter: int = 50) -> float:
    """``||K||`` of ``ops`` by power iteration on ``K* K`` from a random point shaped like ``x_like``.

    1% is added: the Rayleigh quotient estimates the norm from below.
    """
    gen = torch.Generator(device=x_like[0].device).manual_seed(0)
    x = [torch.rand(t.shape, generator=gen, dtype=t.dtype, device=t.device) for t in x_like]
    val = 1.0
    for _ in range(n_iter):
        y = ops.adjoint(ops.apply(x))
        val = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in y])))
        x = [t / max(val, 1e-300) for t in y]
    return 1.01 * math.sqrt(val)


class SoftEndpointOperators:
    """Chambolle-Pock operators with free, KL-penalized end faces around those of a hard-ended problem.

    Parameters
    ----------
    base
        :class:`.TransportOperators` or :class:`.GraphTransportOperators`, whose projector leaves the free end
        faces free.
    observed
        ``(q_start, q_end)`` observed end densities ``(B, *S)`` in the solver's units.
    penalty
        ``(lambda_start, lambda_end)``: per problem ``(B,)`` weights of each end's KL relative to the unit-weight
        action (``tau / dt`` in the solver's units), ``None`` for a hard end.
    place
        ``place(rho_end) -> centred slice`` and its adjoint ``read(slice) -> rho_end``: where an end density sits
        in a centred (dual) tensor of the base (channel 0 on a grid; the node entries of channel 0 on a graph).
    norm
        ``||K||``, for the step sizes (1 on a grid).
    """

    def __init__(self, base, observed, penalty, place, read, norm: float = 1.0):
        self.base = base
        self.observed = observed
        self.penalty = penalty
        self.free = tuple(p is not None for p in penalty)
        self.place, self.read = place, read
        self.norm = norm
        self.compiled = False
        self.cell_weight = base.cell_weight

    def _ends(self, rho: torch.Tensor) -> list[torch.Tensor]:
        faces = (rho[:, 0], rho[:, -1])
        return [faces[e] for e in range(2) if self.free[e]]

    def apply(self, x):
        """``(I x, c E x)`` stacked along the time axis of the centred tensor."""
        ends = [self.place(END_SCALE * r).unsqueeze(2) for r in self._ends(x[0])]
        return torch.cat([self.base.apply(x), *ends], dim=2)

    def adjoint(self, y):
        """``I* y_I + c E* y_E``."""
        n_time = y.shape[2] - sum(self.free)
        out = self.base.adjoint(y[:, :, :n_time])
        k = n_time
        for e, face in ((0, 0), (1, -1)):
            if self.free[e]:
                out[0][:, face] += END_SCALE * self.read(y[:, :, k])
                k += 1
        return out

    def primal_prox_(self, x):
        """The base projection (the free end faces are free in it)."""
        self.base.primal_prox_(x)

    def dual_prox(self, z, sigma):
        """The base's on the action's slices; on the ends ``prox_{sigma h*}(z) = z - sigma prox_{h/sigma}(z/sigma)``."""
        n_time = z.shape[2] - sum(self.free)
        y_base, v_base = self.base.dual_prox(z[:, :, :n_time], sigma)
        ys, vs = [y_base], [v_base]
        k = n_time
        for e in range(2):
            if not self.free[e]:
                continue
            zk = z[:, :, k : k + 1]
            # h(p) = lambda KL(p / c | q) in p = c rho: prox_{h/sigma}(w) = c prox_{lambda KL / (sigma c^2)}(w / c)
            lam = self.penalty[e].reshape(-1, *([1] * (self.observed[e].ndim - 1)))
            rho = kl_prox(self.read(zk[:, :, 0]) / (sigma * END_SCALE), self.observed[e], lam / (sigma * END_SCALE**2))
            p = self.place(END_SCALE * rho).unsqueeze(2)
            ys.append(zk - sigma * p)
            vs.append(p)
            k += 1
        return torch.cat(ys, dim=2), torch.cat(vs, dim=2)

    def split(self, v) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The base's part of a prox point and the end densities ``(B, *S)`` (``None`` at hard ends)."""
        n_time = v.shape[2] - sum(self.free)
        ends, k = [None, None], n_time
        for e in range(2):
            if self.free[e]:
                ends[e] = self.read(v[:, :, k]) / END_SCALE
                k += 1
        return v[:, :, :n_time], ends

    def penalties(self, v) -> list[torch.Tensor | None]:
        """Each end's ``lambda KL(rho_e | q_e)`` per problem in the unit-weight action's units (``None`` if hard)."""
        _, ends = self.split(v)
        return [
            None if rho is None else self.penalty[e] * kl(rho.clamp(min=0.0), self.observed[e]).flatten(1).sum(1)
            for e, rho in enumerate(ends)
        ]

    def objective_per_problem(self, v) -> torch.Tensor:
        """Action plus the ends' KL, per problem, in the problems' units."""
        value = self.base.objective_per_problem(self.split(v)[0])
        for pen in self.penalties(v):
            if pen is not None:
                value = value + pen * self.cell_weight
        return value

    def objective(self, v) -> float:
        """Total over the batch."""
        return float(self.objective_per_problem(v).sum())
