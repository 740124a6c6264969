"""The Chambolle-Pock iteration of :mod:`.solve` as ``torch.compile`` graphs.

The eager iteration is a few dozen element-wise passes over the fields (interpolation, its adjoint, the
projection's updates, four Newton steps of the proximal map), each a separate kernel that reads and writes whole
arrays. Compiled, they fuse into a handful of loops around the DCT products of the projection. The graphs are
pure functions of tensors, cached per static setting (dimension, steps, Newton count), so that a second solve
with the same shapes reuses them instead of compiling again.
"""

from __future__ import annotations

import functools

import torch

from .projection import project_balance_
from .prox import prox_action_fixed
from .staggered import Staggered, interpolate, interpolate_adjoint

_GRAPHS: dict[tuple, object] = {}


def primal_step(x, y, tau, bases, inverse_eigenvalues, rho0, rho1, *, ndim, dt, spacing, zeta_scale):
    """``x+ = P_C(x - tau I* y)`` and the extrapolated ``2 x+ - x``."""
    x_new = [xi - tau * gi for xi, gi in zip(x, interpolate_adjoint(y, ndim).tensors(), strict=True)]
    u = Staggered.from_tensors(x_new, ndim)
    project_balance_(u, bases, inverse_eigenvalues, rho0, rho1, dt, spacing, zeta_scale)
    return x_new, [2.0 * xn - xi for xn, xi in zip(x_new, x, strict=True)]


def dual_step(y, x_bar, sigma, guess, weights, rotation, shift, *, ndim, n_newton):
    """``y+ = z - prox_F(z - c)`` at ``z = y + sigma I x_bar``, ``prox_F(z - c) / sigma``, and Newton's acceptance test.

    ``c`` is a growth prior's linear term (``shift``, see :class:`.TransportOperators`), or ``None``.
    """
    z = y + sigma * interpolate(Staggered.from_tensors(x_bar, ndim))
    p, residual, scale = prox_action_fixed(z if shift is None else z - shift, 1.0, weights, rotation, guess, n_newton)
    return z - p, p / sigma, residual, scale


def graph(kind: str, **static):
    """The compiled :func:`primal_step` or :func:`dual_step` for these static arguments (built once)."""
    key = (kind, *sorted(static.items()))
    if key not in _GRAPHS:
        func = {"primal": primal_step, "dual": dual_step}[kind]
        _GRAPHS[key] = torch.compile(functools.partial(func, **static), dynamic=False)
    return _GRAPHS[key]
