r"""Soft endpoints: a KL penalty between each end of the path and the observed density (Mathematics page, section 4).

With ``tau`` set for an end, the end density ``rho_e`` becomes an unknown and the objective gains

.. math::

    \tau\, \mathrm{KL}(\rho_e \,|\, q_e), \qquad \mathrm{KL}(p|q) = \sum_i w_i \big(p_i \log(p_i/q_i) - p_i + q_i\big),

(``w_i`` the cell volume on a grid, 1 per node on a graph), the unbalanced marginals of Chizat, Peyre, Schmitzer
& Vialard (2018) and Sejourne et al. (2019) at the ends of a dynamic problem. ``tau -> inf`` is the hard
constraint; a small ``tau`` lets the path ignore noise and sampling in the observed densities.

How it enters the iteration (both geometries, with or without Kantorovich secondaries): the operator of
Chambolle-Pock gains the block ``c E U`` (:class:`EndBlock`), ``E`` reading the free end faces and ``c = 1/sqrt(2)``
(which keeps ``||K|| <= 1`` on the grid, where an end face enters ``I`` with weight 1/2; the step sizes take the
measured norm or a bound), and ``F`` gains the KL of the ends, whose proximal map is :func:`kl_prox`. The
projection onto the balance equation then leaves the free end faces free, which changes only its time axis: the
Neumann second difference (DCT-II) becomes a tridiagonal matrix with 2 instead of 1 in the free end's corner,
diagonalized once by ``eigh`` (:func:`time_operator`).

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

from .chambolle_pock import primal_dual_step
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


class EndBlock:
    """The soft ends as a block of Chambolle-Pock's operator: ``E rho = c (rho_0, rho_Nt)`` on the free ends.

    Parameters
    ----------
    observed
        ``(q_start, q_end)`` observed end densities ``(B, *S)`` in the solver's units.
    penalty
        ``(lambda_start, lambda_end)``: per problem ``(B,)`` weights of each end's KL relative to the unit-weight
        action (``tau / dt`` in the solver's units), ``None`` for a hard end.
    """

    def __init__(self, observed, penalty):
        self.observed = observed
        self.penalty = penalty
        self.faces = [face for e, face in enumerate((0, -1)) if penalty[e] is not None]
        self.ends = [e for e in range(2) if penalty[e] is not None]

    def apply(self, rho: torch.Tensor) -> torch.Tensor:
        """``c rho`` at the free end faces, ``(B, n_free, *S)``."""
        return END_SCALE * torch.stack([rho[:, face] for face in self.faces], 1)

    def adjoint(self, y: torch.Tensor, shape) -> torch.Tensor:
        """``E* y``: a density-shaped ``(B, Nt + 1, *S)`` tensor, nonzero on the free end faces."""
        out = y.new_zeros(shape)
        for j, face in enumerate(self.faces):
            out[:, face] = END_SCALE * y[:, j]
        return out

    def _weight(self, e: int, like: torch.Tensor) -> torch.Tensor:
        return self.penalty[e].reshape(-1, *([1] * (like.ndim - 1)))

    def dual_prox(self, z: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``prox_{sigma h*}(z) = z - sigma prox_{h/sigma}(z/sigma)`` and the primal point ``prox_{h/sigma}(z/sigma)``.

        ``h(p) = lambda KL(p / c | q)`` in ``p = c rho``, so
        ``prox_{h/sigma}(w) = c prox_{lambda KL / (sigma c^2)}(w / c)``.
        """
        points = []
        for j, e in enumerate(self.ends):
            q = self.observed[e]
            rho = kl_prox(z[:, j] / (sigma * END_SCALE), q, self._weight(e, q) / (sigma * END_SCALE**2))
            points.append(END_SCALE * rho)
        p = torch.stack(points, 1)
        return z - sigma * p, p

    def penalties(self, v: torch.Tensor) -> list[torch.Tensor | None]:
        """Each end's ``lambda KL(rho_e | q_e)`` per problem at the block's prox point ``v`` (``None`` if hard)."""
        out = [None, None]
        for j, e in enumerate(self.ends):
            q = self.observed[e]
            out[e] = self.penalty[e] * kl((v[:, j] / END_SCALE).clamp(min=0.0), q).flatten(1).sum(1)
        return out


class SoftEndpointOperators:
    """Chambolle-Pock operators with an :class:`EndBlock` stacked under those of a hard-ended problem.

    The dual point is one flat vector: the base's (reshaped to its own shape for the base's maps) and the end
    block's. ``base`` is :class:`.TransportOperators`, :class:`.GraphTransportOperators` or their synchronized
    (Kantorovich) versions; its projector must leave the free end faces free. Other attributes are the base's.
    """

    def __init__(self, base, block: EndBlock, norm: float = 1.0):
        self.base = base
        self.block = block
        self.norm = norm
        self.compiled = False
        self._shapes = None

    def __getattr__(self, name):
        return getattr(self.__dict__["base"], name)

    def _split(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base_shape, end_shape = self._shapes
        n = math.prod(base_shape)
        return y[:n].reshape(base_shape), y[n:].reshape(end_shape)

    def apply(self, x):
        """``(K_base x, E x[0])`` as one flat vector."""
        base, ends = self.base.apply(x), self.block.apply(x[0])
        self._shapes = (base.shape, ends.shape)
        return torch.cat([base.reshape(-1), ends.reshape(-1)])

    def adjoint(self, y):
        """``K_base* y_base + E* y_ends``."""
        y_base, y_ends = self._split(y)
        out = self.base.adjoint(y_base)
        out[0] = out[0] + self.block.adjoint(y_ends, out[0].shape)
        return out

    def primal_prox_(self, x):
        """The base projection (the free end faces are free in it)."""
        self.base.primal_prox_(x)

    def dual_prox(self, z, sigma):
        """The base's proximal step and the end block's."""
        z_base, z_ends = self._split(z)
        y_base, v_base = self.base.dual_prox(z_base, sigma)
        y_ends, v_ends = self.block.dual_prox(z_ends, sigma)
        return torch.cat([y_base.reshape(-1), y_ends.reshape(-1)]), torch.cat([v_base.reshape(-1), v_ends.reshape(-1)])

    def step(self, x, y, tau, sigma):
        """One Chambolle-Pock step, after the base's preparation (a synchronized base relinearizes its blocks)."""
        prepare = getattr(self.base, "prepare_step", None)
        if prepare is not None:
            prepare(x)
        return primal_dual_step(self, x, y, tau, sigma)

    def split(self, v) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The base's part of a prox point and each end's penalty per problem (unit-weight action's units)."""
        v_base, v_ends = self._split(v)
        return v_base, self.block.penalties(v_ends)

    def objective_per_problem(self, v) -> torch.Tensor:
        """Action plus the ends' KL, per problem, in the problems' units."""
        v_base, pens = self.split(v)
        value = self.base.objective_per_problem(v_base)
        return value + sum(p for p in pens if p is not None) * self.base.cell_weight

    def objective(self, v) -> float:
        """The base's objective (for the stopping rule) plus the ends' penalties."""
        v_base, pens = self.split(v)
        extra = sum(float((p * self.base.cell_weight).sum()) for p in pens if p is not None)
        return self.base.objective(v_base) + extra
