"""Proximal map of the transport-reaction action (math.md section 3).

Per centred cell, with ``G = Q diag(g) Q^T`` and the source stored scaled (``z = sqrt(alpha) zeta``),

    f(rho, m, z) = (sum_i g_i mt_i^2 + z^2) / rho,   mt = Q^T m,

and ``prox_{gamma f}(rho_bar, m_bar, z_bar)`` is ``0`` when ``rho_bar + (1/(4 gamma)) sum_j b_j^2 / w_j <= 0``
(``b = (Q^T m_bar, z_bar)``, weights ``w = (g, 1)``), and otherwise ``rho > 0`` is the unique root of the
increasing concave function

    phi(rho) = rho - rho_bar - gamma sum_j w_j b_j^2 / (rho + 2 gamma w_j)^2,

with ``b_j -> rho b_j / (rho + 2 gamma w_j)``.

All cells are solved at once by Newton's method, without a Python loop over cells. The safeguard is the shape of
``phi``: from a point left of the root the iterates of Newton's method on a concave increasing function increase
monotonically to it, and from a point right of it one step lands left of it; a clamp at 0 holds the cells whose
answer is 0. ``G = I`` (all weights one) is the classical cubic of Papadakis et al.; it has a closed form
(Cardano), but its cube roots and arc-cosines cost more passes over memory than the four or five Newton steps
needed from a warm start.

References
----------
N. Papadakis, G. Peyre, E. Oudet, "Optimal transport with proximal splitting", SIAM J. Imaging Sci. 7 (2014);
Z. Cang, Y. Zhao, "Synchronized optimal transport for joint modeling of dynamics across multiple spaces" (2024).
"""

from __future__ import annotations

import math

import torch


def _rotate(
    b: torch.Tensor, rotation: torch.Tensor | None, inverse: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``Q^T m`` (or ``Q mt`` when ``inverse``) on the momentum channels of ``b``; other channels pass through.

    Written as ``d^2`` fused multiply-adds: with ``d <= 3`` this moves less memory than ``einsum``, which
    permutes the broadcast operands into a batched matrix product.
    """
    if rotation is None:
        return b if out is None else out.copy_(b)
    d = rotation.shape[0]
    out = torch.empty_like(b) if out is None else out
    for j in range(d):
        coeff = [rotation[j, i] if inverse else rotation[i, j] for i in range(d)]
        torch.mul(b[0], coeff[0], out=out[j])
        for i in range(1, d):
            out[j].addcmul_(b[i], coeff[i])
    out[d:].copy_(b[d:])
    return out


def prox_action(
    v: torch.Tensor,
    gamma: float = 1.0,
    weights: torch.Tensor | None = None,
    rotation: torch.Tensor | None = None,
    *,
    start: torch.Tensor | None = None,
    rtol: float = 1e-12,
    max_newton: int = 60,
) -> torch.Tensor:
    """Proximal map of ``gamma * f`` at every centred cell.

    Parameters
    ----------
    v
        Centred variables ``(C, ...)``: channel 0 is ``rho_bar``, channels ``1..`` are the momentum components
        and, if present, the scaled source.
    gamma
        Step of the proximal map.
    weights
        ``(C - 1, ...)`` broadcastable weights ``w_j`` (metric eigenvalues, then 1 for the source); ``None``
        means all ones (``G = I``), which takes a cheaper path (one weight, no channel sums).
    rotation
        ``(d, d, ...)`` eigenvectors ``Q`` of the metric (``Q[:, j]`` the ``j``-th), broadcast over cells, or
        ``None`` when the metric is diagonal.
    start
        Optional guess of ``rho`` (e.g. the previous iteration's); Newton starts at the larger of it and the
        guaranteed left point. From the right of the root, one Newton step on a concave increasing function
        lands left of it, so any guess is safe; a close one saves iterations.
    rtol
        Newton takes its last step once ``|phi| <= sqrt(rtol) * (1 + max rho)`` in every cell; as ``phi' >= 1``
        that bounds the distance to the root, which the quadratic last step brings to about ``rtol``.
    max_newton
        Safety cap on Newton iterations.

    Returns
    -------
    torch.Tensor
        ``prox_{gamma f}(v)``, same shape as ``v``.
    """
    rho_bar = v[0]
    b = _rotate(v[1:], rotation)
    b2 = b.square()
    w = 1.0 if weights is None else weights
    if weights is None:
        wb2 = b2
        s_w = b2.sum(0)
        zero = rho_bar + s_w / (4.0 * gamma) <= 0
    else:
        wb2 = w * b2
        s_w = wb2.sum(0)
        zero = rho_bar + (b2 / w).sum(0) / (4.0 * gamma) <= 0
    rho = _newton(rho_bar, wb2, s_w, weights, gamma, rtol, max_newton, start)
    rho = torch.where(zero, 0.0, rho)
    shrink = rho / (rho + 2.0 * gamma * w)
    b_out = b * shrink if rotation is None else b.mul_(shrink)  # b is a view of v only without rotation
    out = torch.empty_like(v)
    out[0].copy_(rho)
    _rotate(b_out, rotation, inverse=True, out=out[1:])
    return out


def _newton(rho_bar, wb2, s_w, weights, gamma, rtol, max_newton, start=None):
    """Safeguarded Newton for the root of ``phi`` (see the module docstring); ``wb2 = w * b^2`` per channel."""
    w_max = 1.0 if weights is None else float(weights.max())
    # Left of the root when rho_bar >= -2 gamma w_max: there rho - rho_bar <= rho + 2 gamma w_max and every
    # rho + 2 gamma w_j <= rho + 2 gamma w_max, so phi((gamma S_w)^(1/3) - 2 gamma w_max) <= 0.
    cube = torch.pow(gamma * s_w, 1.0 / 3.0).sub_(2.0 * gamma * w_max)
    rho = torch.maximum(rho_bar.clamp(min=0.0), torch.where(rho_bar >= -2.0 * gamma * w_max, cube, 0.0))
    if start is not None:
        rho = torch.maximum(rho, start)
    scale = 1.0 + float(rho.max())
    two_gw = None if weights is None else 2.0 * gamma * weights
    for it in range(max_newton):
        if weights is None:  # G = I: one weight, fewer passes over memory
            inv = (rho + 2.0 * gamma).reciprocal_()
            t = s_w * inv.square()
            dphi = (t * inv).mul_(2.0 * gamma).add_(1.0)
            phi = (rho - rho_bar).sub_(t, alpha=gamma)
        else:
            inv = (rho + two_gw).reciprocal_()
            t = wb2 * inv.square()
            dphi = (t * inv).sum(0).mul_(2.0 * gamma).add_(1.0)
            phi = (rho - rho_bar).sub_(t.sum(0), alpha=gamma)
        # phi' >= 1, so |phi(rho)| bounds the distance to the root; the step taken next squares it (Newton).
        # Checks start at the third step (each one synchronizes the device); cells held at 0 are excluded.
        done = it >= 2 and float(torch.where(rho > 0, phi, 0.0).abs().max()) <= math.sqrt(rtol) * scale
        rho = rho.sub(phi.div_(dphi)).clamp_(min=0.0)
        if done:
            break
    return rho


def action_density(
    v: torch.Tensor, weights: torch.Tensor | None = None, rotation: torch.Tensor | None = None
) -> torch.Tensor:
    """``f(v)`` per centred cell for ``v`` in the domain of ``f`` (``rho >= 0``; ``0`` where ``rho = 0``)."""
    rho = v[0]
    b2 = _rotate(v[1:], rotation).square()
    num = (b2 if weights is None else weights * b2).sum(0)
    return torch.where(rho > 0, num / torch.where(rho > 0, rho, 1.0), 0.0)
